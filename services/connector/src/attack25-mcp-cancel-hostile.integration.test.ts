import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { createTailingUser } from './test-support/tailing-user.ts';
import type { AuditEventView } from './test-support/audit-event-view.ts';

/**
 * attack25: outsider attack on commit 70d06dc, `notifications/cancelled` read by Warden on the
 * stateless `POST /mcp` transport and fanned out to every replica over the `mcp:cancel` bus
 * channel. Three replicas share the database and Redis: a and b as in production, c with a short
 * sandbox deadline (4 s) for the timeout path and the shutdown attack. The fake Cloudflare's tail
 * keeps a call running for a few seconds (`tail.worker({ seconds })`).
 *
 * The map of running calls is private to StatelessCalls (mcp/stateless-calls.ts); the test observes
 * it in process through Map.prototype.set (maps keyed `<tokenId>\0<type>:<id>` holding sets of
 * controllers).
 */
describe('attack25: hostile notifications/cancelled on the stateless MCP transport', () => {
  let cf: FakeCloudflare;
  let a: TestApp;
  let b: TestApp;
  let c: TestApp;
  let cClosed = false;
  let base: string;
  let baseB: string;
  let baseC: string;
  let victimKey: string;
  let attackerKey: string;
  let cfToken: string;

  // Maps of running stateless calls, found as the route fills them.
  const tracked = new Set<Map<unknown, unknown>>();
  const originalSet = Map.prototype.set;
  const running = () => [...tracked].reduce((n, m) => n + m.size, 0);

  beforeAll(async () => {
    Map.prototype.set = function set(this: Map<unknown, unknown>, key: unknown, value: unknown) {
      if (
        typeof key === 'string' &&
        (key.includes('\u0000number:') || key.includes('\u0000string:')) &&
        value instanceof Set
      ) {
        tracked.add(this);
      }
      return originalSet.call(this, key, value);
    };
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
    const [port, portB, portC] = [await freePort(), await freePort(), await freePort()];
    base = `http://127.0.0.1:${port}`;
    baseB = `http://127.0.0.1:${portB}`;
    baseC = `http://127.0.0.1:${portC}`;
    const env = { CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base };
    a = await startTestApp(env);
    await a.app.listen({ host: '127.0.0.1', port });
    // Replicas of a (its database and local key file): b and c decrypt what a vaulted, so calls
    // run on any replica.
    b = await startTestApp(env, { replicaOf: a });
    await b.app.listen({ host: '127.0.0.1', port: portB });
    c = await startTestApp({ ...env, SANDBOX_TIMEOUT_MS: '4000' }, { replicaOf: a });
    await c.app.listen({ host: '127.0.0.1', port: portC });
    ({ apiKey: victimKey } = await a.createTenant('Victim'));
    ({ apiKey: attackerKey } = await a.createTenant('Attacker'));
    let accountId: string;
    ({ accountId, token: cfToken } = createTailingUser(cf, {
      email: 'victim@example.com',
      accountName: 'Victim Co',
    }));
    cf.tails.script(accountId, 'api', [{ outcome: 'ok', logs: [{ message: ['hello'] }] }]);
    await a.connect(victimKey, 'alice', cfToken);
    await a.connect(victimKey, 'eve', cfToken);
    await a.connect(attackerKey, 'mallory', cfToken);
  });
  afterAll(async () => {
    Map.prototype.set = originalSet;
    if (!cClosed) await c?.close();
    await b?.close();
    await a?.close();
    await cf?.close();
  });

  async function mint(apiKey: string, identifier: string): Promise<{ token: string; tokenId: string }> {
    const res = await fetch(`${base}/api/v1/mcp/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier, expiry: '3600s' }),
    });
    expect(res.status).toBe(201);
    const { token, token_id: tokenId } = (await res.json()) as { token: string; token_id: string };
    for (const app of [a, b, c]) app.secrets.add(token);
    return { token, tokenId };
  }

  /** A raw `POST /mcp` (stateless, no initialize needed). */
  function post(
    on: string,
    token: string | null,
    body: unknown,
    extra: { headers?: Record<string, string>; signal?: AbortSignal; path?: string } = {},
  ): Promise<Response> {
    return fetch(`${on}${extra.path ?? '/mcp'}`, {
      method: 'POST',
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...extra.headers,
      },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...(extra.signal ? { signal: extra.signal } : {}),
    });
  }

  const tailCode = (seconds: number) =>
    `async () => (await tail.worker({ script: 'api', seconds: ${seconds} })).ended`;

  const toolCall = (id: unknown, code: string) => ({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: { name: 'cloudflare_execute', arguments: { code } },
  });

  const cancel = (requestId: unknown) => ({
    jsonrpc: '2.0',
    method: 'notifications/cancelled',
    params: { requestId, reason: 'attack25' },
  });

  /** Starts a tool call; resolves with its JSON-RPC answer (null if the connection was cut). */
  function startCall(
    on: string,
    token: string,
    id: unknown,
    code: string,
    signal?: AbortSignal,
  ): Promise<{ status: number; body: unknown } | null> {
    return post(on, token, toolCall(id, code), signal ? { signal } : {}).then(
      async (res) => {
        return { status: res.status, body: (await res.json()) as unknown };
      },
      () => null,
    );
  }

  async function toolCalls(apiKey = victimKey): Promise<AuditEventView[]> {
    const res = await fetch(`${base}/api/v1/audit/events?kind=tool_call&page_size=100`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    const { events } = (await res.json()) as { events: AuditEventView[] };
    return events.sort((x, y) => x.seq - y.seq);
  }

  const newSessions = (before: number) => cf.tails.sessions().slice(before);
  const tailConnected = (before: number, n = 1) =>
    expect
      .poll(() => newSessions(before).filter((s) => s.connections > 0).length, {
        timeout: 8_000,
        interval: 20,
      })
      .toBeGreaterThanOrEqual(n);

  it("HELD: another tenant's or a colleague's cancellations with every odd id (type twins, NUL, separators, the key's own shape, huge, negative, arrays, objects), alone or batched with requests, on both replicas, and unauthenticated or off-origin ones from the victim's own token, reach nothing; the victim's string \"7\" does not cancel its numeric 7, its 7 does (audit: error, aborted)", async () => {
    const victim = await mint(victimKey, 'alice');
    const attacker = await mint(attackerKey, 'mallory');
    const colleague = await mint(victimKey, 'eve');
    const revoked = await mint(victimKey, 'alice');
    const revoke = await fetch(`${base}/api/v1/mcp/tokens/${revoked.tokenId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${victimKey}` },
    });
    expect(revoke.status).toBeLessThan(300);

    const callsBefore = (await toolCalls()).length;
    const before = cf.tails.sessions().length;
    const started = Date.now();
    const pending = startCall(base, victim.token, 7, tailCode(3));
    await tailConnected(before);
    expect(running()).toBe(1);

    const ids: unknown[] = [
      7,
      '7',
      7.0,
      -7,
      0,
      1,
      -0,
      1e21,
      // 2^53 + 1: the same double as 2^53 once parsed.
      2 ** 53 + 1,
      '',
      '\u0000',
      'number:7',
      '\u0000number:7',
      `${victim.tokenId}\u0000number:7`,
      `${victim.tokenId}`,
      'x'.repeat(200),
      [7],
      { id: 7 },
      null,
      true,
    ];
    const statuses: number[] = [];
    for (const token of [attacker.token, colleague.token]) {
      for (const on of [base, baseB]) {
        for (const id of ids) {
          const res = await post(on, token, cancel(id));
          statuses.push(res.status);
          await res.text();
        }
        // Batched: all of them, with a request (answered) beside them. (Its id is none of the
        // cancelled ones: the SDK would abort a request of the batch that a later notification
        // cancels, and the JSON answer would then never come; SDK behaviour, not this change.)
        const batch = await post(on, token, [
          ...ids.map(cancel),
          { jsonrpc: '2.0', id: 'list-1', method: 'tools/list' },
        ]);
        expect(batch.status).toBe(200);
        await batch.text();
      }
    }
    expect(new Set(statuses)).toEqual(new Set([202]));

    // Before authentication succeeds: no token, a wrong one, a revoked one of the same identity,
    // the victim's own token from a foreign origin or in the URL.
    const refusals: number[] = [];
    for (const [token, extra] of [
      [null, {}],
      ['garbage', {}],
      ['wdn_mcp_garbage', {}],
      [revoked.token, {}],
      [victim.token, { headers: { origin: 'https://evil.example' } }],
      [null, { path: `/mcp?access_token=${encodeURIComponent(victim.token)}` }],
    ] as const) {
      const res = await post(base, token, [cancel(7), cancel('7')], extra);
      refusals.push(res.status);
      await res.text();
    }
    expect(refusals).toEqual([401, 401, 401, 401, 403, 400]);

    // The victim's own token, with the wrong type of id: the numeric call runs on.
    const wrongType = await post(baseB, victim.token, cancel('7'));
    expect(wrongType.status).toBe(202);
    const answer = await pending;
    expect(answer?.status).toBe(200);
    expect(JSON.stringify(answer?.body)).not.toContain('aborted');
    expect(newSessions(before)[0]!.deletedAt!.getTime() - started).toBeGreaterThanOrEqual(3_000);
    await expect
      .poll(async () => (await toolCalls()).length, { timeout: 5_000, interval: 50 })
      .toBe(callsBefore + 1);
    expect((await toolCalls()).at(-1)).toMatchObject({ outcome: 'success' });
    expect(await toolCalls(attackerKey)).toEqual([]);

    // Control: the victim's own numeric id, through the other replica, stops it at once.
    const again = cf.tails.sessions().length;
    const startedAgain = Date.now();
    const stopped = startCall(base, victim.token, 7, tailCode(10));
    await tailConnected(again);
    const hit = await post(baseB, victim.token, cancel(7));
    expect(hit.status).toBe(202);
    await expect
      .poll(() => newSessions(again)[0]?.deletedAt ?? null, { timeout: 5_000, interval: 50 })
      .not.toBeNull();
    expect(newSessions(again)[0]!.deletedAt!.getTime() - startedAgain).toBeLessThan(5_000);
    expect((await stopped)?.status).toBe(200);
    await expect
      .poll(async () => (await toolCalls()).at(-1) ?? null, { timeout: 5_000, interval: 50 })
      .toMatchObject({ outcome: 'error', error: { code: 'aborted' } });
    expect(running()).toBe(0);
  });

  // FIXED (was FINDING, low-medium, amplification): Warden published one bus message per
  // cancellation of a batch the SDK then refused (15,000 from one 1 MB request, each fanned out to
  // every replica), even for objects that are not JSON-RPC at all. A batch over the SDK's limit is
  // now refused before anything is done with it, and one request publishes one message at most.
  it('FIXED: a batch far over the SDK’s 100-message limit is refused with 400 before any cancellation is published', async () => {
    const attacker = await mint(attackerKey, 'mallory');
    const prefix = a.container.config.redisKeyPrefix;
    const listener = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    let published = 0;
    listener.on('message', (_channel: string, payload: string) => {
      if ((JSON.parse(payload) as { tokenId?: string }).tokenId === attacker.tokenId) published++;
    });
    await listener.subscribe(`${prefix}:mcp:cancel`);
    try {
      // No `jsonrpc` member: Warden does not ask; 62 bytes a cancellation.
      const body = JSON.stringify(
        Array.from({ length: 15_000 }, (_, i) => ({
          method: 'notifications/cancelled',
          params: { requestId: i },
        })),
      );
      expect(body.length).toBeLessThan(1024 * 1024);
      const res = await post(base, attacker.token, body);
      // Refused as a whole, as the SDK would ...
      expect(res.status).toBe(400);
      expect(await res.text()).toContain('Batch must not exceed 100');
      await new Promise((r) => setTimeout(r, 300));
      // ... before Warden published anything.
      expect(published).toBe(0);
      // A batch the SDK takes (100 cancellations, 50 ids each twice) goes out as one message.
      const batch = Array.from({ length: 100 }, (_, i) => cancel(i % 2 ? i % 50 : `s${i % 50}`));
      const taken = await post(base, attacker.token, JSON.stringify(batch));
      expect(taken.status).toBe(202);
      await expect.poll(() => published, { timeout: 2_000, interval: 50 }).toBe(1);
      // One the SDK refuses (a message in it is not JSON-RPC) sends nothing.
      const refused = await post(
        base,
        attacker.token,
        JSON.stringify([cancel(1), { method: 'notifications/cancelled', params: { requestId: 2 } }]),
      );
      expect(refused.status).toBe(400);
      await new Promise((r) => setTimeout(r, 300));
      expect(published).toBe(1);
    } finally {
      listener.disconnect();
    }
  });

  it('HELD: the running-call map is emptied however a call ends: success, thrown error, invalid arguments, duplicate ids in one batch, client disconnect, sandbox timeout (replica c), cancellation', async () => {
    const victim = await mint(victimKey, 'alice');
    const keys = () => [...tracked].flatMap((m) => [...m.keys()].map((k) => JSON.stringify(k)));
    expect(keys()).toEqual([]);

    const ok = await startCall(base, victim.token, 'ok-1', 'async () => 1');
    expect(ok?.status).toBe(200);
    const thrown = await startCall(base, victim.token, 12, 'async () => { throw new Error("boom") }');
    expect(JSON.stringify(thrown?.body)).toContain('boom');
    const invalid = await post(base, victim.token, {
      jsonrpc: '2.0',
      id: 13,
      method: 'tools/call',
      params: { name: 'cloudflare_execute', arguments: { code: 5 } },
    });
    await invalid.text();
    const dup = await post(base, victim.token, [
      toolCall(14, 'async () => 1'),
      toolCall(14, 'async () => { throw new Error("two") }'),
    ]);
    await dup.text();
    await expect.poll(running, { timeout: 5_000, interval: 50 }).toBe(0);

    // Client disconnect in the middle of a tail.
    let before = cf.tails.sessions().length;
    const abort = new AbortController();
    const cut = startCall(base, victim.token, 15, tailCode(10), abort.signal);
    await tailConnected(before);
    expect(running()).toBe(1);
    abort.abort();
    expect(await cut).toBeNull();
    await expect.poll(running, { timeout: 5_000, interval: 50 }).toBe(0);
    await expect
      .poll(() => newSessions(before)[0]?.deletedAt ?? null, { timeout: 5_000, interval: 50 })
      .not.toBeNull();

    // The sandbox deadline (4 s on c) ends a 10 s tail.
    before = cf.tails.sessions().length;
    const timedOut = startCall(baseC, victim.token, 16, tailCode(10));
    await tailConnected(before);
    expect(running()).toBe(1);
    expect((await timedOut)?.status).toBe(200);
    await expect.poll(running, { timeout: 5_000, interval: 50 }).toBe(0);
  });

  async function sseClient(token: string): Promise<{ client: Client; sessionId: string }> {
    const headers = { Authorization: `Bearer ${token}` };
    const transport = new SSEClientTransport(new URL(`${base}/sse`), {
      requestInit: { headers },
      eventSourceInit: {
        fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }),
      },
    });
    const client = new Client({ name: 'attack25', version: '1.0.0' });
    await client.connect(transport);
    const endpoint = (transport as unknown as { _endpoint: URL })._endpoint;
    const sessionId = endpoint.searchParams.get('sessionId');
    if (!sessionId) throw new Error('no SSE session id');
    return { client, sessionId };
  }

  it('HELD: the two transports do not cross: stateless cancellations of the same token do not stop its SSE call, and SSE cancellations (POST /messages) do not stop its stateless call of that id', async () => {
    const victim = await mint(victimKey, 'alice');
    const sse = await sseClient(victim.token);
    try {
      const callsBefore = (await toolCalls()).length;
      const before = cf.tails.sessions().length;
      const started = Date.now();
      const sseCall = sse.client.callTool({
        name: 'cloudflare_execute',
        arguments: { code: tailCode(3) },
      });
      await tailConnected(before);
      // The SSE client's ids are small integers: cancel them, and their string twins, statelessly.
      for (const on of [base, baseB]) {
        const res = await post(on, victim.token, [
          ...[0, 1, 2, 3, 4, 5].map(cancel),
          ...['0', '1', '2'].map(cancel),
        ]);
        expect(res.status).toBe(202);
        await res.text();
      }
      const sseResult = (await sseCall) as { isError?: boolean };
      expect(sseResult.isError ?? false).toBe(false);
      expect(newSessions(before)[0]!.deletedAt!.getTime() - started).toBeGreaterThanOrEqual(3_000);
      await expect
        .poll(async () => (await toolCalls()).length, { timeout: 5_000, interval: 50 })
        .toBe(callsBefore + 1);
      expect((await toolCalls()).at(-1)?.outcome).toBe('success');

      // SSE -> stateless: the SSE session is idle; its cancellation of id 42 must not reach the
      // same token's stateless call 42.
      const again = cf.tails.sessions().length;
      const startedAgain = Date.now();
      const stateless42 = startCall(baseB, victim.token, 42, tailCode(3));
      await tailConnected(again);
      for (const on of [base, baseB]) {
        const res = await fetch(`${on}/messages?sessionId=${encodeURIComponent(sse.sessionId)}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${victim.token}`, 'content-type': 'application/json' },
          body: JSON.stringify(cancel(42)),
        });
        expect(res.status).toBe(202);
        await res.text();
      }
      expect((await stateless42)?.status).toBe(200);
      expect(newSessions(again)[0]!.deletedAt!.getTime() - startedAgain).toBeGreaterThanOrEqual(3_000);
      await expect
        .poll(async () => (await toolCalls()).at(-1)?.outcome ?? null, { timeout: 5_000, interval: 50 })
        .toBe('success');
    } finally {
      await sse.client.close();
    }
  });

  it('HELD: malformed and oversized bodies: a 1 MB deeply nested array, nesting in requestId, a 2 MB body; the replica answers 4xx/202 and still serves', async () => {
    const attacker = await mint(attackerKey, 'mallory');
    const depth = 400_000;
    const nested = '['.repeat(depth) + ']'.repeat(depth);
    const deep = await post(base, attacker.token, nested);
    expect(deep.status).toBeLessThan(500);
    await deep.text();
    const inId = await post(
      base,
      attacker.token,
      `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":${nested}}}`,
    );
    expect(inId.status).toBeLessThan(500);
    await inId.text();
    const big = await post(base, attacker.token, JSON.stringify([cancel('x'.repeat(2 * 1024 * 1024))]));
    expect(big.status).toBe(413);
    await big.text();
    const alive = await post(base, attacker.token, { jsonrpc: '2.0', id: 1, method: 'tools/list' });
    expect(alive.status).toBe(200);
    await alive.text();
  });

  it('HELD: a call running on a replica that is shutting down (c) is still cancelled by its token through another replica (the bus lives until c has drained), and c then closes at once', async () => {
    const victim = await mint(victimKey, 'alice');
    const before = cf.tails.sessions().length;
    const started = Date.now();
    const pending = startCall(baseC, victim.token, 'drain-1', tailCode(10));
    await tailConnected(before);
    const closing = c.close().then(() => Date.now());
    cClosed = true;
    await new Promise((r) => setTimeout(r, 200));
    // Directly to c: refused or unreachable while it drains (not asserted: either is fine).
    await post(baseC, victim.token, cancel('drain-1')).catch(() => undefined);
    const res = await post(base, victim.token, cancel('drain-1'));
    expect(res.status).toBe(202);
    const answer = await pending;
    expect(answer?.status).toBe(200);
    expect(JSON.stringify(answer?.body)).toContain('abort');
    expect(newSessions(before)[0]!.deletedAt!.getTime() - started).toBeLessThan(4_000);
    // Test artefact: the test's own keep-alive socket to c (Fastify keeps it 72 s) is dropped.
    c.app.server.closeIdleConnections();
    await closing;
    await expect
      .poll(async () => (await toolCalls()).at(-1) ?? null, { timeout: 5_000, interval: 50 })
      .toMatchObject({ outcome: 'error', error: { code: 'aborted' } });
  });
});
