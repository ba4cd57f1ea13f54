import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAKE_CF_PERMISSION_GROUPS, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { executeOverHttp } from './test-support/http-execute.ts';
import type { ExecuteBody } from './test-support/http-execute.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { connectMcpClient } from './test-support/mcp-client.ts';
import type { AuditEventView } from './test-support/audit-event-view.ts';

interface TailResult {
  script: string;
  tailId: string;
  events: unknown[];
  truncated?: true;
  ended: string;
  durationMs: number;
  deleted: boolean;
}

const BASE_PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read'];

/** How the fake's scripted events look: Cloudflare's trace event JSON. */
function traceEvent(n: number, outcome: string, method: string, message: string) {
  return {
    outcome,
    scriptName: 'api',
    exceptions: [],
    logs: [{ message: [message], level: 'log', timestamp: 1_700_000_000_000 + n }],
    eventTimestamp: 1_700_000_000_000 + n,
    event: { request: { url: `https://api.example.com/${n}`, method, headers: {} } },
  };
}

/**
 * `tail.worker` in cloudflare_execute end to end: the REST API and MCP over real HTTP, the real
 * sandbox pool (a 2 s wall-clock and CPU limit, shorter than the tails), policy, budget and
 * audit, and the fake Cloudflare's tail sessions and `trace-v1` WebSocket.
 */
describe('tail.worker in cloudflare_execute', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let apiKey: string;
  let accountId: string;
  let tokenValue: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base, SANDBOX_TIMEOUT_MS: '2000' });
    await t.app.listen({ host: '127.0.0.1', port });
    ({ apiKey } = await t.createTenant('Tails'));
    const alice = cf.state.createUser({ email: 'alice@example.com' });
    accountId = cf.state.createAccount({ name: 'Acme', members: [alice.id] }).id;
    cf.state.putWorkerScript({ accountId, name: 'api', content: 'export default {}' });
    const token = cf.state.createUserToken({
      userId: alice.id,
      permissions: [...BASE_PERMISSIONS, ...FAKE_CF_PERMISSION_GROUPS['Workers Scripts Read']!],
    });
    tokenValue = token.value;
    cf.tails.script(accountId, 'api', [
      traceEvent(1, 'ok', 'GET', 'hello'),
      // A Worker that logs the very token Warden holds: the event comes back scrubbed.
      traceEvent(2, 'exception', 'POST', `authorization: Bearer ${token.value}`),
      traceEvent(3, 'ok', 'GET', 'x'.repeat(10_000)),
    ]);
    await t.connect(apiKey, 'alice', token.value);
    for (const [identifier, policy] of [
      ['alice-read', { read_only: true }],
      [
        'alice-no-tail',
        { rules: [{ effect: 'deny', methods: ['POST'], path: '/accounts/*/workers/scripts/*/tails' }] },
      ],
    ] as const) {
      const res = await fetch(`${base}/api/v1/identities/${identifier}/policy`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(policy),
      });
      expect(res.status).toBe(200);
      await t.connect(apiKey, identifier, token.value);
    }
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  async function execute(code: string, identifier = 'alice'): Promise<ExecuteBody> {
    return (await executeOverHttp({ base, apiKey, identifier }, code, { expectStatus: 200 })).body;
  }

  async function tailEvents(executionId: string): Promise<AuditEventView[]> {
    const res = await fetch(`${base}/api/v1/audit/events?execution_id=${executionId}`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(res.status).toBe(200);
    const { events } = (await res.json()) as { events: AuditEventView[] };
    return events.filter((e) => e.kind === 'upstream_request' && e.action.startsWith('cloudflare.tail_'));
  }

  function newSessions(before: number) {
    return cf.tails.sessions().slice(before);
  }

  it('collects a 3 s tail past a 2 s execution limit, scrubbed and bounded, deletes it and records create, session and delete', async () => {
    const before = cf.tails.sessions().length;
    const started = Date.now();
    const res = await execute(
      `async () => tail.worker({ script: 'api', seconds: 3, filters: { method: ['GET', 'POST'], sample_rate: 0.5 } })`,
    );
    expect(res.error).toBeUndefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
    const data = res.data as TailResult;
    expect(data).toMatchObject({ script: 'api', ended: 'time', deleted: true });
    expect(data.events).toHaveLength(3);
    expect(data.events[0]).toMatchObject({ outcome: 'ok', logs: [{ message: ['hello'] }] });
    expect(data.events[1]).toMatchObject({
      outcome: 'exception',
      logs: [{ message: ['authorization: Bearer [REDACTED]'] }],
    });
    expect(data.events[2]).toMatchObject({
      truncated: true,
      bytes: expect.any(Number),
      preview: expect.any(String),
    });
    expect((data.events[2] as { preview: string }).preview.length).toBeLessThanOrEqual(4096);
    expect(JSON.stringify(res)).not.toContain(tokenValue);

    const [session] = newSessions(before);
    expect(session).toMatchObject({ id: data.tailId, script: 'api', connections: 1, eventsSent: 3 });
    expect(session!.deletedAt).not.toBeNull();
    // The filters went with the create and again as the first message on the socket (trace-v1).
    const filters = { filters: [{ sampling_rate: 0.5 }, { method: ['GET', 'POST'] }] };
    expect(session!.createBody).toEqual(filters);
    expect(session!.filters).toEqual(filters);

    const trail = await tailEvents(res.execution_id);
    expect(trail.map((e) => [e.action, e.upstream?.method, e.outcome])).toEqual([
      ['cloudflare.tail_create', 'POST', 'pending'],
      ['cloudflare.tail_create', 'POST', 'success'],
      ['cloudflare.tail_session', 'GET', 'pending'],
      ['cloudflare.tail_session', 'GET', 'success'],
      ['cloudflare.tail_delete', 'DELETE', 'pending'],
      ['cloudflare.tail_delete', 'DELETE', 'success'],
    ]);
    const sessionOutcome = trail[3]!;
    expect(sessionOutcome.details).toMatchObject({
      tail_id: data.tailId,
      events: 3,
      cut_events: 1,
      ended: 'time',
    });
    expect(sessionOutcome.duration_ms).toBeGreaterThanOrEqual(2900);
    expect(sessionOutcome.upstream?.path).toBe(
      `/accounts/${accountId}/workers/scripts/api/tails/${data.tailId}`,
    );
    expect(JSON.stringify(trail)).not.toContain(tokenValue);
  });

  it('stops at maxEvents with truncated, and deletes the tail', async () => {
    const before = cf.tails.sessions().length;
    const res = await execute(`async () => tail.worker({ script: 'api', seconds: 10, maxEvents: 2 })`);
    const data = res.data as TailResult;
    expect(data).toMatchObject({ truncated: true, ended: 'max_events', deleted: true });
    expect(data.events).toHaveLength(2);
    expect(newSessions(before)[0]!.deletedAt).not.toBeNull();
  });

  it('deletes the tail when the execution is killed mid-tail', async () => {
    const before = cf.tails.sessions().length;
    const res = await execute(`async () => { tail.worker({ script: 'api', seconds: 20 }); for (;;) {} }`);
    expect(res.error?.code).toBe('timeout');
    const [session] = newSessions(before);
    expect(session).toBeDefined();
    expect(session!.deletedAt).not.toBeNull();
    const trail = await tailEvents(res.execution_id);
    expect(trail.filter((e) => e.outcome !== 'pending').map((e) => [e.action, e.outcome])).toEqual([
      ['cloudflare.tail_create', 'success'],
      ['cloudflare.tail_session', 'success'],
      ['cloudflare.tail_delete', 'success'],
    ]);
    expect(
      trail.find((e) => e.action === 'cloudflare.tail_session' && e.outcome === 'success')?.details,
    ).toMatchObject({
      ended: 'aborted',
    });
  });

  it('ends the tail and deletes it when the identity is offboarded mid-tail', async () => {
    await t.connect(apiKey, 'bob', tokenValue);
    const before = cf.tails.sessions().length;
    const started = Date.now();
    const pending = execute(`async () => tail.worker({ script: 'api', seconds: 20 })`, 'bob');
    await expect.poll(() => newSessions(before)[0]?.connections ?? 0, { timeout: 5_000 }).toBe(1);
    const offboarded = await fetch(`${base}/api/v1/identities/bob/offboard`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(offboarded.status).toBe(200);
    const res = await pending;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(res.error).toMatchObject({ code: 'forbidden', message: expect.stringContaining('revoked') });
    expect(newSessions(before)[0]!.deletedAt).not.toBeNull();
    const trail = await tailEvents(res.execution_id);
    expect(trail.filter((e) => e.outcome !== 'pending').map((e) => [e.action, e.outcome])).toEqual([
      ['cloudflare.tail_create', 'success'],
      ['cloudflare.tail_session', 'success'],
      ['cloudflare.tail_delete', 'success'],
    ]);
  });

  it('takes the create and the delete from the API budget, and starts no tail it could not delete', async () => {
    const { apiKey: tightKey } = await t.createTenant('Tight budget');
    const patched = await fetch(`${base}/api/v1/settings`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${tightKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ budget: '7/300' }),
    });
    expect(patched.status).toBe(200);
    const carol = cf.state.createUser({ email: 'carol@example.com' });
    const carolAccount = cf.state.createAccount({ name: 'Carol', members: [carol.id] }).id;
    cf.state.putWorkerScript({ accountId: carolAccount, name: 'api', content: 'export default {}' });
    const carolToken = cf.state.createUserToken({
      userId: carol.id,
      permissions: [...BASE_PERMISSIONS, ...FAKE_CF_PERMISSION_GROUPS['Workers Scripts Read']!],
    });
    await t.connect(tightKey, 'carol', carolToken.value);
    const before = cf.tails.sessions().length;
    const { body } = await executeOverHttp(
      { base, apiKey: tightKey, identifier: 'carol' },
      `async () => {
            const deleted = [];
            for (let i = 0; i < 10; i++) {
              try { deleted.push((await tail.worker({ script: 'api', seconds: 1 })).deleted); }
              catch (e) { return { deleted, refused: e.code + ': ' + e.message }; }
            }
          }`,
    );
    const data = body.data as { deleted: boolean[]; refused: string };
    // Seven places, some taken by verifying the token: every tail started was deleted, and the
    // one that would have left no place for its delete was refused before anything was sent.
    expect(data.deleted.length).toBeGreaterThan(0);
    expect(data.deleted.every(Boolean)).toBe(true);
    expect(data.refused).toMatch(
      /^rate_limited: tail\.worker: a tail needs two API requests \(create and delete\)/,
    );
    const sessions = newSessions(before);
    expect(sessions).toHaveLength(data.deleted.length);
    expect(sessions.every((s) => s.deletedAt !== null)).toBe(true);
  });

  it('a policy that denies the tails path refuses it with nothing sent; a read_only identity may tail', async () => {
    const before = cf.tails.sessions().length;
    cf.clearRequests();
    const denied = await execute(
      `async () => { try { await tail.worker({ script: 'api', seconds: 1 }); } catch (e) { return e.code + ': ' + e.message; } }`,
      'alice-no-tail',
    );
    expect(denied.data).toMatch(/^policy_denied: .*POST \/accounts\/\w+\/workers\/scripts\/api\/tails/);
    expect(cf.requests().filter((r) => r.path.includes('/tails'))).toEqual([]);
    expect(newSessions(before)).toEqual([]);
    const refused = await tailEvents(denied.execution_id);
    expect(refused.map((e) => [e.action, e.outcome, e.intent_id ?? null])).toEqual([
      ['cloudflare.tail_create', 'refused', null],
    ]);

    const read = await execute(
      `async () => (await tail.worker({ script: 'api', seconds: 1 })).deleted`,
      'alice-read',
    );
    expect(read.error).toBeUndefined();
    expect(read.data).toBe(true);
    expect(newSessions(before)).toHaveLength(1);
  });

  it('refuses bad input naming the field, and names a Worker that does not exist', async () => {
    const res = await execute(`async () => {
      const out = [];
      for (const p of [{ script: 'api', seconds: 61 }, { script: 'api', seconds: 1, filters: { status: ['bad'] } }, { script: 'nope', seconds: 1 }]) {
        try { await tail.worker(p); } catch (e) { out.push(e.code + ': ' + e.message); }
      }
      return out;
    }`);
    expect(res.data).toEqual([
      'invalid_request: tail.worker: seconds must be a whole number from 1 to 60',
      expect.stringMatching(/^invalid_request: tail\.worker: filters\.status has "bad"/),
      `not_found: tail.worker: no Worker named "nope" in account ${accountId}`,
    ]);
  });

  it('works over MCP, and cloudflare_search describes tail', async () => {
    const client = await connectMcpClient({
      base,
      apiKey,
      identifier: 'alice',
      name: 'tail-test',
      secrets: t.secrets,
    });
    try {
      const search = await client.callTool({
        name: 'cloudflare_search',
        arguments: { code: 'async () => [spec.tail.summary, Object.keys(spec.tail.methods)]' },
      });
      const [summary, methods] = JSON.parse((search.content as Array<{ text: string }>)[0]!.text) as [
        string,
        string[],
      ];
      expect(summary).toContain('always deletes it');
      expect(methods[0]).toMatch(/^tail\.worker\(/);
      const before = cf.tails.sessions().length;
      const run = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: `async () => { const r = await tail.worker({ script: 'api', seconds: 3, filters: { status: ['error'] } }); return [r.events.map((e) => e.outcome), r.deleted]; }`,
        },
      });
      expect(run.isError).toBeFalsy();
      expect(JSON.parse((run.content as Array<{ text: string }>)[0]!.text)).toEqual([['exception'], true]);
      const [session] = newSessions(before);
      expect(session!.deletedAt).not.toBeNull();
      expect(session!.filters).toEqual({
        filters: [{ outcome: ['exception', 'exceededCpu', 'exceededMemory', 'unknown'] }],
      });

      // Killed mid-tail over MCP too: the call fails on the CPU limit, the tail is deleted.
      const killedBefore = cf.tails.sessions().length;
      const killed = await client.callTool({
        name: 'cloudflare_execute',
        arguments: { code: `async () => { tail.worker({ script: 'api', seconds: 20 }); for (;;) {} }` },
      });
      expect(killed.isError).toBe(true);
      expect((killed.content as Array<{ text: string }>)[0]!.text).toContain('timeout');
      const [cut] = newSessions(killedBefore);
      expect(cut!.connections).toBe(1);
      expect(cut!.deletedAt).not.toBeNull();
    } finally {
      await client.close();
    }
  });
});
