/**
 * attack22 — 31d91f2: a POST /messages for an SSE stream held by another replica is 202 only once
 * that replica acknowledges it on the bus (`mcp:sse-ack`), else 404 after 1 s. Two replicas (A, B)
 * share the database and Redis. A raw SSE reader shows what reaches a stream: a `ping` request
 * delivered to a session is answered on that session's stream with the same id.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startListeningReplicas } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';
import { connectTailingVictim, createTailingUser } from '../test-support/tailing-user.ts';
import { answered, ping, postMessage, rawSse } from '../test-support/raw-sse.ts';

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('attack22/22b: SSE /messages forwarded across replicas and acknowledged on the bus', () => {
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

  it('HELD?: another tenant’s token and a colleague’s token posting to the victim’s session get 404 on both replicas, and nothing reaches the victim’s stream', async () => {
    const victim = await mint(victimKey, 'alice');
    const colleague = await mint(victimKey, 'eve');
    const { apiKey: otherKey } = await a.createTenant('Attacker');
    await a.connect(
      otherKey,
      'mallory',
      createTailingUser(cf, { email: 'm@example.com', accountName: 'M' }).token,
    );
    const attacker = await mint(otherKey, 'mallory');
    const stream = await rawSse(baseA, victim.token);
    try {
      const statuses: number[] = [];
      for (const [n, token] of [attacker.token, colleague.token].entries()) {
        for (const on of [baseA, baseB]) {
          statuses.push(
            (await postMessage(on, stream.sessionId, token, ping(`atk-${n}-${on.slice(-5)}`))).status,
          );
        }
      }
      expect(statuses).toEqual([404, 404, 404, 404]);
      // Control: the owner through B is acknowledged, and its ping is answered on the stream.
      expect((await postMessage(baseB, stream.sessionId, victim.token, ping('own'))).status).toBe(202);
      await expect.poll(() => answered(stream, 'own'), { timeout: 3_000 }).toBe(true);
      expect(stream.messages.filter((m) => m.includes('atk-'))).toEqual([]);
    } finally {
      stream.close();
    }
  });

  it('fidelity: a message the stream’s own replica refuses (400) is refused the same through the other replica, not 202 and dropped', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      const cases: Array<[string, unknown, string?]> = [
        ['not JSON-RPC', { hello: 'world' }],
        ['a batch', [ping('b1'), ping('b2')]],
        ['text/plain', JSON.stringify(ping('t1')), 'text/plain'],
      ];
      const seen: string[] = [];
      const expected: string[] = [];
      for (const [name, body, type] of cases) {
        const onA = await postMessage(baseA, stream.sessionId, victim.token, body, type);
        const onB = await postMessage(baseB, stream.sessionId, victim.token, body, type);
        expect(onA.status).toBeGreaterThanOrEqual(400);
        seen.push(`${name}: A ${onA.status} / B ${onB.status}`);
        expected.push(`${name}: A ${onA.status} / B ${onA.status}`);
      }
      // Observed (B): 202, the holder's handleMessage throws, the rejection is swallowed and the ack still sent.
      expect(seen.join('; ')).toBe(expected.join('; '));
    } finally {
      stream.close();
    }
  });

  it('no oracle: on the replica holding a stream, another token’s post to that live session answers like a post to a session that does not exist (same status, same delay)', async () => {
    const victim = await mint(victimKey, 'alice');
    const colleague = await mint(victimKey, 'eve');
    const stream = await rawSse(baseA, victim.token);
    try {
      const live = await postMessage(baseA, stream.sessionId, colleague.token, ping('o1'));
      const none = await postMessage(baseA, randomBytes(16).toString('hex'), colleague.token, ping('o2'));
      expect([live.status, none.status]).toEqual([404, 404]);
      // Observed: the live session is refused at once, the unknown one after the 1 s wait for an ack.
      expect({ liveMs: Math.round(live.ms / 500) * 500, noneMs: Math.round(none.ms / 500) * 500 }).toEqual({
        liveMs: Math.round(none.ms / 500) * 500,
        noneMs: Math.round(none.ms / 500) * 500,
      });
    } finally {
      stream.close();
    }
  });

  it('HELD?: odd or colliding session ids are 400/404, never 5xx, and never reach another session', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      const ids = [
        '',
        '__proto__',
        'constructor',
        'hasOwnProperty',
        '\u0000',
        '../sse',
        'é'.repeat(50),
        'x'.repeat(100),
        stream.sessionId.toUpperCase(),
        ` ${stream.sessionId}`,
        `${stream.sessionId}\n`,
      ];
      const statuses = await Promise.all(
        ids.map((id, i) => postMessage(baseB, id, victim.token, ping(`odd-${i}`)).then((r) => r.status)),
      );
      expect(statuses).toEqual(ids.map(() => 404));
      expect((await postMessage(baseB, 'x'.repeat(101), victim.token, ping('long'))).status).toBe(400);
      const res = await fetch(`${baseB}/messages?sessionId=a&sessionId=b`, {
        method: 'POST',
        headers: { authorization: `Bearer ${victim.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(ping('dup')),
      });
      expect(res.status).toBe(400);
      await new Promise((r) => setTimeout(r, 300));
      expect(stream.messages.filter((m) => m.includes('odd-') || m.includes('dup'))).toEqual([]);
    } finally {
      stream.close();
    }
  });

  it('HELD?: many concurrent posts: each owner message acknowledged exactly once, unknown ones 404 in ~1 s, and no timer is left behind', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      const N = 150;
      const round = (tag: string) =>
        Promise.all([
          Promise.all(
            Array.from({ length: N }, (_, i) =>
              postMessage(baseB, stream.sessionId, victim.token, ping(`${tag}-${i}`)),
            ),
          ),
          Promise.all(
            Array.from({ length: N }, (_, i) =>
              postMessage(baseB, `gone-${i}-${randomBytes(4).toString('hex')}`, victim.token, ping(`u-${i}`)),
            ),
          ),
        ]);
      await round('w'); // warm-up: sockets, pools
      await new Promise((r) => setTimeout(r, 200));
      const baseline = timeouts();
      const started = performance.now();
      const [own, unknown] = await round('c');
      const elapsed = performance.now() - started;
      expect(own.map((r) => r.status)).toEqual(Array(N).fill(202));
      expect(unknown.map((r) => r.status)).toEqual(Array(N).fill(404));
      expect(elapsed).toBeLessThan(5_000);
      await expect
        .poll(() => stream.messages.filter((m) => /"id":"c-\d+"/.test(m)).length, { timeout: 5_000 })
        .toBe(N);
      // Each answered once: the forward was taken once.
      const ids = stream.messages.map((m) => /"id":"(c-\d+)"/.exec(m)?.[1]).filter(Boolean);
      expect(new Set(ids).size).toBe(ids.length);
      await new Promise((r) => setTimeout(r, 200));
      expect(timeouts()).toBeLessThanOrEqual(baseline + 2);
    } finally {
      stream.close();
    }
  });

  it('HELD?: a revoked token’s stream ends on its replica; the revoked token is refused 401 and another token 404 through the other replica', async () => {
    const victim = await mint(victimKey, 'alice');
    const colleague = await mint(victimKey, 'eve');
    const stream = await rawSse(baseA, victim.token);
    const res = await fetch(`${baseB}/api/v1/mcp/tokens/${victim.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${victimKey}` },
    });
    expect(res.status).toBe(204);
    await expect.poll(() => stream.closed, { timeout: 3_000 }).toBe(true);
    expect((await postMessage(baseB, stream.sessionId, victim.token, ping('r1'))).status).toBe(401);
    expect((await postMessage(baseB, stream.sessionId, colleague.token, ping('r2'))).status).toBe(404);
    expect((await postMessage(baseA, stream.sessionId, colleague.token, ping('r3'))).status).toBe(404);
  });

  it('a stream closed just before the forward arrives: 404, not 202', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    stream.close();
    await new Promise((r) => setTimeout(r, 100));
    expect((await postMessage(baseB, stream.sessionId, victim.token, ping('late'))).status).toBe(404);
  });

  it('a 404 means not delivered: with the replicas 1.5 s late on the bus (event-loop lag), a message answered 404 never reaches the stream', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      let stall = true;
      // Every replica hears the forward; this handler stands for a replica's event loop stalled 1.5 s
      // (GC, a busy sandbox pool) while the forward and its ack are on their way.
      await b.container.bus.subscribe('mcp:sse', () => {
        if (!stall) return;
        stall = false;
        const until = Date.now() + 1_500;
        while (Date.now() < until) {
          // busy
        }
      });
      const r = await postMessage(baseB, stream.sessionId, victim.token, ping('lag'));
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      // Observed: 404 ("its /sse stream has ended; open a new one") although the holder took the
      // message and answered it on the stream: a client that re-sends on a new stream runs it twice.
      expect(`${r.status} ${answered(stream, 'lag') ? 'delivered' : 'not delivered'}`).toMatch(
        /^202 delivered$|^404 not delivered$/,
      );
    } finally {
      stream.close();
    }
  });

  // attack22b: the fixes of the findings above, attacked again.
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

  // Last: it closes replica A.
  it('a replica that is closing (its own POST /messages are 503) does not take new tool calls forwarded from another replica', async () => {
    const victim = await mint(victimKey, 'alice');
    const stream = await rawSse(baseA, victim.token);
    try {
      const init = {
        jsonrpc: '2.0',
        id: 'init',
        method: 'initialize',
        params: {
          protocolVersion: '2024-11-05',
          capabilities: {},
          clientInfo: { name: 'atk22', version: '1' },
        },
      };
      expect((await postMessage(baseA, stream.sessionId, victim.token, init)).status).toBe(202);
      await expect.poll(() => answered(stream, 'init'), { timeout: 3_000 }).toBe(true);
      expect(
        (
          await postMessage(baseA, stream.sessionId, victim.token, {
            jsonrpc: '2.0',
            method: 'notifications/initialized',
          })
        ).status,
      ).toBe(202);
      const call = (id: string, seconds: number) => ({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: {
          name: 'cloudflare_execute',
          arguments: {
            code: `async () => (await tail.worker({ script: 'api', seconds: ${seconds} })).ended`,
          },
        },
      });
      const before = cf.tails.sessions().length;
      expect((await postMessage(baseA, stream.sessionId, victim.token, call('first', 3))).status).toBe(202);
      await expect.poll(() => cf.tails.sessions().length, { timeout: 5_000 }).toBe(before + 1);
      // A starts closing: its stream stays open until the call in flight answers.
      const closing = a.app.close();
      await new Promise((r) => setTimeout(r, 100));
      const direct = await postMessage(baseA, stream.sessionId, victim.token, ping('direct')).catch(() => ({
        status: 0,
        ms: 0,
      }));
      const viaB = await postMessage(baseB, stream.sessionId, victim.token, call('second', 3));
      await new Promise((r) => setTimeout(r, 1_000));
      const started = cf.tails.sessions().length - before;
      await closing;
      // Expected: refused like a direct post (503) or as an ended stream (404); no new call on A.
      expect(`direct ${direct.status}, via B ${viaB.status}, tails started ${started}`).toMatch(
        /via B (404|503), tails started 1$/,
      );
    } finally {
      stream.close();
    }
  });
});
