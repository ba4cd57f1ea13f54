import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { executeOverHttp } from './test-support/http-execute.ts';
import type { ExecuteBody } from './test-support/http-execute.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { connectMcpClient } from './test-support/mcp-client.ts';
import { SPEND_WHILE_TAILING, createTailingUser } from './test-support/tailing-user.ts';
import type { AuditEventView } from './test-support/audit-event-view.ts';

/**
 * Findings of the outsider attack on `tail.worker` (issue 16), end to end over real HTTP and MCP
 * against the fake Cloudflare's tail sessions and WebSocket, with the real sandbox pool: where
 * the tail socket may go, what its events are scrubbed of, what the trail holds of a tail started
 * as the code returns, and a caller that goes away.
 */
describe('tail.worker under attack', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let apiKey: string;
  let accountId: string;
  let connectedId: string;
  let tokenValue: string;
  /** A host inside the network the connector must never be pointed at. */
  let internal: Server;
  let internalPort: number;
  let internalConnections = 0;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
    internal = createServer((socket) => {
      internalConnections++;
      socket.destroy();
    });
    internalPort = await freePort();
    await new Promise<void>((resolve) => internal.listen(internalPort, '127.0.0.1', resolve));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base, SANDBOX_TIMEOUT_MS: '2000' });
    await t.app.listen({ host: '127.0.0.1', port });
    ({ apiKey } = await t.createTenant('Tail attack'));
    ({ accountId, token: tokenValue } = createTailingUser(cf, {
      email: 'alice@example.com',
      accountName: 'Acme',
      scripts: ['api', 'leaky'],
    }));
    cf.tails.script(accountId, 'api', [{ outcome: 'ok', logs: [{ message: ['hello'] }] }]);
    connectedId = await t.connect(apiKey, 'alice', tokenValue);
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
    await new Promise((resolve) => internal?.close(resolve));
  });

  async function execute(
    code: string,
    options: { identifier?: string; signal?: AbortSignal } = {},
  ): Promise<ExecuteBody> {
    const { identifier = 'alice', signal } = options;
    return (await executeOverHttp({ base, apiKey, identifier }, code, { expectStatus: 200, signal })).body;
  }

  async function trail(executionId: string): Promise<AuditEventView[]> {
    const res = await fetch(`${base}/api/v1/audit/events?execution_id=${executionId}`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(res.status).toBe(200);
    const { events } = (await res.json()) as { events: AuditEventView[] };
    return events.sort((a, b) => a.seq - b.seq);
  }

  const tailRecords = (events: AuditEventView[]) =>
    events
      .filter((e) => e.action.startsWith('cloudflare.tail_'))
      .map((e) => [e.action, e.outcome, e.intent_id ? 'after intent' : 'no intent']);

  const newSessions = (before: number) => cf.tails.sessions().slice(before);

  /** Execute children still holding an execution. */
  const busyExecuteChildren = () =>
    t.container.codeMode
      .pool()!
      .stats()
      .children.filter((c) => c.kind === 'execute' && c.executions > 0).length;

  describe('the tail WebSocket URL Cloudflare answers (SSRF)', () => {
    it('is connected to only on an allowed tail origin: anything else is refused, nothing connects, the tail is deleted and the trail says so', async () => {
      const cfPort = new URL(cf.url).port;
      const hostile = [
        // Another port of the same host, plain and over TLS.
        `ws://127.0.0.1:${internalPort}`,
        `wss://127.0.0.1:${internalPort}`,
        // Not a WebSocket scheme, credentials in the URL, a look-alike of Cloudflare's tail host.
        `http://127.0.0.1:${cfPort}`,
        `ws://user:secret@127.0.0.1:${cfPort}`,
        'wss://tail.developers.workers.dev.evil.test',
      ];
      const allowed = cf.state.tailSocketBase;
      try {
        for (const socketBase of hostile) {
          cf.state.tailSocketBase = socketBase;
          const before = cf.tails.sessions().length;
          const res = await execute(
            `async () => { try { await tail.worker({ script: 'api', seconds: 2 }); return 'connected'; } catch (e) { return e.code + ': ' + e.message; } }`,
          );
          expect(res.data, socketBase).toMatch(
            /^upstream_error: tail\.worker: Cloudflare answered a tail WebSocket URL .*which is not an allowed tail host \(wss:\/\/tail\.developers\.workers\.dev, ws:\/\/127\.0\.0\.1:\d+\); nothing was connected and the tail is deleted$/,
          );
          const [session] = newSessions(before);
          expect(session?.connections, socketBase).toBe(0);
          expect(session?.deletedAt, socketBase).not.toBeNull();
          expect(tailRecords(await trail(res.execution_id)), socketBase).toEqual([
            ['cloudflare.tail_create', 'pending', 'no intent'],
            ['cloudflare.tail_create', 'success', 'after intent'],
            ['cloudflare.tail_session', 'error', 'no intent'],
            ['cloudflare.tail_delete', 'pending', 'no intent'],
            ['cloudflare.tail_delete', 'success', 'after intent'],
          ]);
        }
        expect(internalConnections).toBe(0);
      } finally {
        cf.state.tailSocketBase = allowed;
      }
      // The fake's own origin (the configured API's) still works.
      const res = await execute(`async () => (await tail.worker({ script: 'api', seconds: 1 })).events`);
      expect(res.data).toEqual([{ outcome: 'ok', logs: [{ message: ['hello'] }] }]);
    });
  });

  it('scrubs tail events of the R2 secrets too: the vaulted access key pair and the one derived from the token, in every encoding', async () => {
    const pair = { access_key_id: 'a'.repeat(32), secret_access_key: 'S3cr3t/R2+key=' + 'x'.repeat(50) };
    const derived = createHash('sha256').update(tokenValue).digest('hex');
    t.secrets.add(pair.secret_access_key);
    t.secrets.add(derived);
    const set = await fetch(`${base}/api/v1/connected_accounts/${connectedId}/r2_access_key`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(pair),
    });
    expect(set.status).toBe(200);
    const leaks = [
      pair.secret_access_key,
      Buffer.from(pair.secret_access_key).toString('base64'),
      Buffer.from(pair.secret_access_key).toString('base64url'),
      encodeURIComponent(pair.secret_access_key),
      derived,
      Buffer.from(derived).toString('base64'),
      tokenValue,
    ];
    // A Worker that logs every secret Warden holds for the account.
    cf.tails.script(accountId, 'leaky', [{ outcome: 'ok', logs: [{ message: leaks }] }]);
    const res = await execute(`async () => (await tail.worker({ script: 'leaky', seconds: 1 })).events`);
    expect(res.error).toBeUndefined();
    expect(res.data).toEqual([{ outcome: 'ok', logs: [{ message: leaks.map(() => '[REDACTED]') }] }]);
    const recorded = JSON.stringify(await trail(res.execution_id));
    for (const secret of [...leaks, derived]) {
      expect(JSON.stringify(res)).not.toContain(secret);
      expect(recorded).not.toContain(secret);
    }
  });

  describe('a tail started as the execution ends', () => {
    it('is refused or deleted, and recorded before the execution record closes the trail', async () => {
      await t.connect(apiKey, 'racer', tokenValue);
      const before = cf.tails.sessions().length;
      // The code asks for a tail and returns at once, while the call has to read its context
      // again before any upstream request (its identity's policy changed while the code ran).
      const pending = execute(
        `async () => { const end = Date.now() + 800; while (Date.now() < end) {} tail.worker({ script: 'api', seconds: 5 }).catch(() => {}); return 'done'; }`,
        { identifier: 'racer' },
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      const changed = await fetch(`${base}/api/v1/identities/racer/policy`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ read_only: true }),
      });
      expect(changed.status).toBe(200);
      const res = await pending;
      expect(res.data).toBe('done');
      // Taken at once: whatever the tail did is over by the time the call answers.
      const sessions = newSessions(before).map((s) => s.deletedAt !== null);
      const events = await trail(res.execution_id);
      const call = events.find((e) => e.kind === 'tool_call');
      const tail = events.filter((e) => e.action.startsWith('cloudflare.tail_'));
      try {
        expect(sessions.every(Boolean)).toBe(true);
        expect(call).toBeDefined();
        expect(tail.length).toBeGreaterThan(0);
        // The execution's own record is the last of its trail.
        expect(events.at(-1)).toBe(call);
        // Every intent has its outcome in the trail.
        for (const intent of events.filter((e) => e.outcome === 'pending'))
          expect(events.some((e) => e.intent_id === intent.id)).toBe(true);
        // Either no tail was created (refused, nothing sent) or it was created and deleted.
        const created = tail.some((e) => e.action === 'cloudflare.tail_create' && e.outcome === 'success');
        if (created) expect(tail.some((e) => e.action === 'cloudflare.tail_delete')).toBe(true);
        else
          expect(tail.map((e) => [e.action, e.outcome, e.error?.code])).toEqual([
            ['cloudflare.tail_create', 'error', 'conflict'],
          ]);
      } finally {
        // On a failure, let the late tail finish before the next test.
        await expect
          .poll(() => newSessions(before).every((s) => s.deletedAt !== null), { timeout: 10_000 })
          .toBe(true);
      }
    });

    it('whose create was already sent is deleted once Cloudflare answers, with no session, create and delete on the trail', async () => {
      cf.faults.setLatencyMs(400);
      const before = cf.tails.sessions().length;
      let res: ExecuteBody;
      try {
        // The create goes out at once and is answered after 400 ms; the code returns after 150.
        res = await execute(
          `async () => { tail.worker({ script: 'api', seconds: 5 }).catch(() => {}); const end = Date.now() + 150; while (Date.now() < end) {} return 'done'; }`,
        );
      } finally {
        cf.faults.setLatencyMs(0);
      }
      expect(res.data).toBe('done');
      const [session] = newSessions(before);
      expect(session?.connections).toBe(0);
      expect(session?.deletedAt).not.toBeNull();
      const events = await trail(res.execution_id);
      expect(events.at(-1)?.kind).toBe('tool_call');
      expect(tailRecords(events)).toEqual([
        ['cloudflare.tail_create', 'pending', 'no intent'],
        ['cloudflare.tail_create', 'success', 'after intent'],
        ['cloudflare.tail_delete', 'pending', 'no intent'],
        ['cloudflare.tail_delete', 'success', 'after intent'],
      ]);
    });
  });

  /** A tenant of its own with a tight API budget, connected as a Cloudflare user of its own. */
  async function tightTenant(name: string, budget: string) {
    const { apiKey: key } = await t.createTenant(name);
    const patched = await fetch(`${base}/api/v1/settings`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ budget }),
    });
    expect(patched.status).toBe(200);
    const { accountId: account, token } = createTailingUser(cf, {
      email: `${name.replace(/\W/g, '-').toLowerCase()}@example.com`,
      accountName: name,
    });
    await t.connect(key, 'bob', token);
    cf.tails.script(account, 'api', [{ outcome: 'ok', logs: [{ message: ['hello'] }] }]);
    const run = async (code: string): Promise<ExecuteBody> =>
      (await executeOverHttp({ base, apiKey: key, identifier: 'bob' }, code, { expectStatus: 200 })).body;
    const records = async (executionId: string): Promise<AuditEventView[]> => {
      const res = await fetch(`${base}/api/v1/audit/events?execution_id=${executionId}`, {
        headers: { authorization: `Bearer ${key}` },
      });
      const { events } = (await res.json()) as { events: AuditEventView[] };
      return events.sort((a, b) => a.seq - b.seq);
    };
    return { run, records };
  }

  describe("the tail's delete and the API budget", () => {
    it('is admitted on the place reserved when the tail started, although the code spent the rest of the budget while the tail ran', async () => {
      const { run, records } = await tightTenant('Tail spender', '12/300');
      const before = cf.tails.sessions().length;
      // The tail starts first (the code waits 700 ms so that it has), then the code sends GETs
      // until the budget refuses one, and only then waits for the tail.
      const res = await run(SPEND_WHILE_TAILING);
      const data = res.data as { sent: number; refused: string; deleted: boolean; tailId: string };
      expect(res.error).toBeUndefined();
      expect(data.refused).toBe('rate_limited');
      expect(data.sent).toBeGreaterThan(0);
      expect(data.deleted).toBe(true);
      const [session] = newSessions(before);
      expect(session?.id).toBe(data.tailId);
      expect(session?.deletedAt).not.toBeNull();
      const events = await records(res.execution_id);
      expect(tailRecords(events).filter(([action]) => action === 'cloudflare.tail_delete')).toEqual([
        ['cloudflare.tail_delete', 'pending', 'no intent'],
        ['cloudflare.tail_delete', 'success', 'after intent'],
      ]);
      expect(
        events.some(
          (e) => e.upstream?.method === 'DELETE' && e.upstream.path.endsWith(`/tails/${data.tailId}`),
        ),
      ).toBe(true);
    });

    it('is sent once more when Cloudflare answers it 429 with a short Retry-After, and both are on the trail', async () => {
      const { run, records } = await tightTenant('Tail throttled', '50/300');
      const before = cf.tails.sessions().length;
      const pending = run(`async () => tail.worker({ script: 'api', seconds: 2 })`);
      await expect
        .poll(() => newSessions(before)[0]?.connections ?? 0, { timeout: 5_000, interval: 20 })
        .toBe(1);
      // The next request the fake sees is the delete.
      cf.faults.failNext(1, 429, { retryAfterSeconds: 1 });
      const res = await pending;
      expect(res.data).toMatchObject({ deleted: true });
      expect(newSessions(before)[0]?.deletedAt).not.toBeNull();
      const deletes = tailRecords(await records(res.execution_id)).filter(
        ([action, outcome]) => action === 'cloudflare.tail_delete' && outcome !== 'pending',
      );
      expect(deletes).toEqual([
        ['cloudflare.tail_delete', 'rate_limited', 'after intent'],
        ['cloudflare.tail_delete', 'success', 'after intent'],
      ]);
    });
    it("is refused with the wait the budget blocks for when Cloudflare answers the create 429: the API-wide limit's without Retry-After is Cloudflare's five-minute lockout", async () => {
      const { run } = await tightTenant('Tail locked out', '50/300');
      const before = cf.tails.sessions().length;
      // The next request the fake sees is the create.
      cf.faults.failNext(1, 429, { code: 971 });
      const res = await run(`async () => tail.worker({ script: 'api', seconds: 2 })`);
      expect(res.error).toEqual({
        code: 'rate_limited',
        message: 'tail.worker: Cloudflare rate-limited this user; retry after 300 s',
      });
      expect(newSessions(before)).toEqual([]);
      // The code was told what the budget does: the user is blocked, nothing more is sent.
      const seen = cf.requests().length;
      const again = await run(`async () => cloudflare.request({ method: 'GET', path: '/zones' })`);
      expect(again.error?.code).toBe('rate_limited');
      expect(cf.requests().length).toBe(seen);
    });
  });

  describe('a caller that goes away', () => {
    it('over HTTP: aborting the request ends the sandbox run, deletes the tail at once and records the execution as aborted by the caller', async () => {
      const before = cf.tails.sessions().length;
      const controller = new AbortController();
      const started = Date.now();
      const pending = execute(`async () => tail.worker({ script: 'api', seconds: 20 })`, {
        signal: controller.signal,
      });
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(newSessions(before)[0]?.connections).toBe(1);
      controller.abort();
      await expect(pending).rejects.toThrow();
      await expect
        .poll(() => newSessions(before)[0]?.deletedAt ?? null, { timeout: 2_000, interval: 50 })
        .not.toBeNull();
      expect(Date.now() - started).toBeLessThan(4_000);
      // The sandbox child is free again, and serves the next execution.
      await expect.poll(busyExecuteChildren, { timeout: 2_000, interval: 50 }).toBe(0);
      expect((await execute('async () => 1 + 1')).data).toBe(2);

      const tailId = newSessions(before)[0]!.id;
      const calls = await fetch(`${base}/api/v1/audit/events?kind=tool_call&page_size=100`, {
        headers: { authorization: `Bearer ${apiKey}` },
      });
      const { events } = (await calls.json()) as { events: AuditEventView[] };
      const aborted = events.findLast((e) => e.error?.code === 'aborted');
      expect(aborted).toMatchObject({
        outcome: 'error',
        error: { code: 'aborted', message: expect.stringContaining('cancelled by the caller') },
      });
      const records = await trail(aborted!.execution_id!);
      expect(records.at(-1)?.kind).toBe('tool_call');
      expect(tailRecords(records).filter(([, outcome]) => outcome !== 'pending')).toEqual([
        ['cloudflare.tail_create', 'success', 'after intent'],
        ['cloudflare.tail_session', 'success', 'after intent'],
        ['cloudflare.tail_delete', 'success', 'after intent'],
      ]);
      expect(records.some((e) => e.upstream?.path.endsWith(`/tails/${tailId}`))).toBe(true);
    });

    it('over MCP: a client that drops the connection of its tool call does the same', async () => {
      const client = await connectMcpClient({
        base,
        apiKey,
        identifier: 'alice',
        name: 'tail-abort-test',
        secrets: t.secrets,
      });
      const before = cf.tails.sessions().length;
      const pending = client.callTool({
        name: 'cloudflare_execute',
        arguments: { code: `async () => tail.worker({ script: 'api', seconds: 20 })` },
      });
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(newSessions(before)[0]?.connections).toBe(1);
      // Closing the transport aborts its request in flight: the server sees the connection go.
      await client.close();
      await expect(pending).rejects.toThrow();
      await expect
        .poll(() => newSessions(before)[0]?.deletedAt ?? null, { timeout: 2_000, interval: 50 })
        .not.toBeNull();
      await expect.poll(busyExecuteChildren, { timeout: 2_000, interval: 50 }).toBe(0);
    });

    // The official client's `callTool(…, {signal})` sends notifications/cancelled on abort. On
    // the stateless transport it comes as a POST of its own, which Warden routes to the call.
    for (const transport of ['sse', 'streamable'] as const) {
      it(`over MCP (${transport}): a tool call the client cancels is stopped the same way`, async () => {
        const client = await connectMcpClient({
          base,
          apiKey,
          identifier: 'alice',
          name: `tail-cancel-${transport}`,
          secrets: t.secrets,
          transport,
        });
        try {
          const toolCalls = async () => {
            const res = await fetch(`${base}/api/v1/audit/events?kind=tool_call&page_size=100`, {
              headers: { authorization: `Bearer ${apiKey}` },
            });
            const { events } = (await res.json()) as { events: AuditEventView[] };
            return events.sort((a, b) => a.seq - b.seq);
          };
          const callsBefore = (await toolCalls()).length;
          const before = cf.tails.sessions().length;
          const controller = new AbortController();
          const started = Date.now();
          const pending = client.callTool(
            {
              name: 'cloudflare_execute',
              arguments: { code: `async () => tail.worker({ script: 'api', seconds: 3 })` },
            },
            undefined,
            { signal: controller.signal },
          );
          await expect
            .poll(() => newSessions(before)[0]?.connections ?? 0, { timeout: 5_000, interval: 20 })
            .toBe(1);
          controller.abort('the engineer pressed stop');
          await expect(pending).rejects.toThrow();
          await expect
            .poll(() => newSessions(before)[0]?.deletedAt ?? null, { timeout: 5_000, interval: 50 })
            .not.toBeNull();
          const tookMs = newSessions(before)[0]!.deletedAt!.getTime() - started;
          expect(tookMs).toBeLessThan(2_500);
          // The call's own record, once written (after the tail's delete).
          await expect
            .poll(async () => (await toolCalls()).length, { timeout: 5_000, interval: 50 })
            .toBe(callsBefore + 1);
          const last = (await toolCalls()).at(-1);
          expect(last).toMatchObject({ outcome: 'error', error: { code: 'aborted' } });
          await expect.poll(busyExecuteChildren, { timeout: 2_000, interval: 50 }).toBe(0);
        } finally {
          await client.close();
        }
      });
    }
  });
});
