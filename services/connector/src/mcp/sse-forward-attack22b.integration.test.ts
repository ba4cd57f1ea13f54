/**
 * attack22b — eb75430: attacks on the fix of SSE POST /messages forwarded across replicas
 * that replica acknowledges it on the bus (`mcp:sse-ack`), else 404 after 1 s. Two replicas (A, B)
 * share the database and Redis. A raw SSE reader shows what reaches a stream: a `ping` request
 * delivered to a session is answered on that session's stream with the same id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startListeningReplicas } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';
import { connectTailingVictim } from '../test-support/tailing-user.ts';
import { answered, ping, postMessage, rawSse } from '../test-support/raw-sse.ts';

describe('attack22b: SSE /messages forwarding after eb75430', () => {
  let cf: FakeCloudflare;
  let a: TestApp;
  let b: TestApp;
  let baseA: string;
  let baseB: string;
  let victimKey: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
    ({ a, b, baseA, baseB } = await startListeningReplicas({ CLOUDFLARE_API_BASE: cf.url }));
    ({ apiKey: victimKey } = await connectTailingVictim(cf, a, {
      name: 'Victim',
      email: 'v@example.com',
      accountName: 'V Co',
      identifiers: ['alice', 'eve'],
    }));
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await cf?.close();
  });

  async function mint(apiKey: string, identifier: string): Promise<{ token: string; id: string }> {
    const res = await fetch(`${baseA}/api/v1/mcp/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier, expiry: '3600s' }),
    });
    expect(res.status).toBe(201);
    const { token, token_id } = (await res.json()) as { token: string; token_id: string };
    a.secrets.add(token);
    b.secrets.add(token);
    return { token, id: token_id };
  }

  it('fidelity: a JSON-RPC message sent as a JSON string (double-encoded) is answered alike by the holding replica and by another', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      // The SDK's handlePostMessage JSON.parses a string body a second time; the forward path checks
      // the schema on the string as Fastify parsed it.
      const onA = await postMessage(
        baseA,
        stream.sessionId,
        victim.token,
        JSON.stringify(JSON.stringify(ping('dbl-a'))),
      );
      const onB = await postMessage(
        baseB,
        stream.sessionId,
        victim.token,
        JSON.stringify(JSON.stringify(ping('dbl-b'))),
      );
      await new Promise((r) => setTimeout(r, 300));
      expect(
        `A ${onA.status} ${answered(stream, 'dbl-a') ? 'delivered' : 'dropped'}; B ${onB.status} ${answered(stream, 'dbl-b') ? 'delivered' : 'dropped'}`,
      ).toMatch(/^A (\d+) (\w+); B \1 \2$/);
    } finally {
      stream.close();
    }
  });

  it('fidelity: odd Content-Type parameters are answered alike by the holding replica and by another', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      const results: string[] = [];
      for (const [i, ct] of [
        'application/json; charset',
        'application/json;;',
        'application/json; a=b=c',
        'APPLICATION/JSON',
        'application/json; charset=latin1',
      ].entries()) {
        const onA = await postMessage(baseA, stream.sessionId, victim.token, ping(`ct-a${i}`), ct);
        const onB = await postMessage(baseB, stream.sessionId, victim.token, ping(`ct-b${i}`), ct);
        await new Promise((r) => setTimeout(r, 200));
        results.push(
          `${ct}: A ${onA.status} ${answered(stream, `ct-a${i}`) ? 'delivered' : 'dropped'}; B ${onB.status} ${answered(stream, `ct-b${i}`) ? 'delivered' : 'dropped'}`,
        );
      }
      expect(results.filter((line) => !/: A (\d+) (\w+); B \1 \2$/.test(line))).toEqual([]);
    } finally {
      stream.close();
    }
  });

  it('HELD? (in one process only): a 404 means not delivered: the holding replica stalls (GC, CPU) right after it took the forward, before its ack', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      let stall = false;
      // Registered after the route's own handler: it runs once A has taken the message
      // (handleMessage is synchronous up to onmessage) and before the ack is published.
      await a.container.bus.subscribe('mcp:sse', () => {
        if (!stall) return;
        stall = false;
        const until = Date.now() + 1_600;
        while (Date.now() < until) {
          // busy
        }
      });
      stall = true;
      const r = await postMessage(baseB, stream.sessionId, victim.token, ping('stall-after-take'));
      await new Promise((resolve) => setTimeout(resolve, 800));
      expect(`${r.status} ${answered(stream, 'stall-after-take') ? 'delivered' : 'not delivered'}`).toMatch(
        /^202 delivered$|^404 not delivered$/,
      );
    } finally {
      stream.close();
    }
  });

  it('HELD?: forwards crafted on the bus: a takeBy in the past is not taken; another token id is not taken', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      await b.container.bus.publish('mcp:sse', {
        sessionId: stream.sessionId,
        tokenId: victim.id,
        message: ping('past'),
        takeBy: Date.now() - 1,
      });
      await b.container.bus.publish('mcp:sse', {
        sessionId: stream.sessionId,
        tokenId: 'mtk_other',
        message: ping('other-token'),
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(answered(stream, 'past')).toBe(false);
      expect(answered(stream, 'other-token')).toBe(false);
    } finally {
      stream.close();
    }
  });

  it('design: a forward without takeBy (an older replica during a rolling deploy) is taken whenever it arrives', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      await b.container.bus.publish('mcp:sse', {
        sessionId: stream.sessionId,
        tokenId: victim.id,
        message: ping('no-takeby'),
        ackId: 'x',
      });
      await new Promise((r) => setTimeout(r, 300));
      // Documented as accepted: recorded only.
      expect(answered(stream, 'no-takeby')).toBe(true);
    } finally {
      stream.close();
    }
  });
});
