/**
 * Redis faults on a private redis-server this test starts, stops and reconfigures: Warden starts
 * while Redis is down and says so in /readyz; after a restart that lost every key, the job
 * schedules are back and a SIEM event is delivered; an evicting Redis is reported as not ready.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare, startRedisServer } from '@warden/testing';
import type { FakeCloudflare, RedisServer } from '@warden/testing';
import { eventually, startReceiver } from './test-support/http-receiver.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

interface Readiness {
  status: string;
  checks: Record<string, string>;
  problems?: Record<string, string>;
}

describe('Redis faults', () => {
  let server: RedisServer;
  let cf: FakeCloudflare;
  let t: TestApp;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let tenant: { tenantId: string; apiKey: string };
  let zoneId: string;
  let userId: string;

  async function redisCommand(...args: [string, ...string[]]): Promise<unknown> {
    const client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      return await client.call(...args);
    } finally {
      client.disconnect();
    }
  }

  async function readiness(): Promise<Readiness> {
    return (await t.app.inject({ method: 'GET', url: '/readyz' })).json() as Readiness;
  }

  const auth = () => ({ authorization: `Bearer ${tenant.apiKey}` });

  /** Runs one GET through Warden (retrying while Redis reconnects) and returns its event ids. */
  async function auditedCall(identifier = 'redis-faults', zone = zoneId): Promise<string[]> {
    const executionId = await eventually(
      async () => {
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/v1/execute_tool',
          headers: auth(),
          payload: {
            tool_name: 'cloudflare_execute',
            identifier,
            params: {
              code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zone}' })).success`,
            },
          },
        });
        const body = res.json() as { data?: unknown; execution_id?: string };
        return res.statusCode === 200 && body.data === true ? (body.execution_id ?? null) : null;
      },
      20_000,
      'a call through Warden',
    );
    const events = await t.app.inject({
      method: 'GET',
      url: `/api/v1/audit/events?execution_id=${executionId}`,
      headers: auth(),
    });
    return (events.json().events as Array<{ id: string }>).map((e) => e.id);
  }

  function delivered(): Set<string> {
    return new Set(
      receiver.requests
        .filter((r) => r.status === 200)
        .flatMap((r) => (JSON.parse(r.body).events as Array<{ id: string }>).map((e) => e.id)),
    );
  }

  beforeAll(async () => {
    server = await startRedisServer({ startNow: false });
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await t?.close();
    await server.stop();
    await cf.close();
    await receiver.close();
  });

  it('starts while Redis is down, says so in /readyz, and is ready once Redis answers', async () => {
    t = await startTestApp({
      REDIS_URL: server.url,
      CLOUDFLARE_API_BASE: cf.url,
      DELIVERY_ALLOW_INSECURE: 'true',
      OUTBOX_INTERVAL_MS: '300',
      CLOUDFLARE_BUDGET: '5/300',
      SCHEDULER_CHECK_MS: '1000',
    });
    const down = await readiness();
    expect(down.status).toBe('unavailable');
    expect(down.checks).toMatchObject({ database: 'ok', redis: 'unavailable', scheduler: 'unavailable' });
    expect(down.problems?.scheduler).toMatch(/^Redis is unreachable: scheduled jobs/);

    await server.start();
    let last: Readiness | null = null;
    await eventually(
      async () => {
        last = await readiness();
        return last.status === 'ready' ? true : null;
      },
      20_000,
      '/readyz ready',
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(last)}`);
    });
  }, 120_000);

  it('after a restart that lost every key, re-creates the job schedules and delivers a pending SIEM event', async () => {
    tenant = await t.createTenant('Redis faults');
    const user = cf.state.createUser({ email: 'redis-faults@example.com' });
    userId = user.id;
    const account = cf.state.createAccount({ name: 'Redis Co', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'redis-faults.example' }).id;
    const token = cf.state.createUserToken({ userId, permissions: ['#zone:read'] });
    await t.connect(tenant.apiKey, 'redis-faults', token.value);
    const sink = await t.app.inject({
      method: 'POST',
      url: '/api/v1/audit/sinks',
      headers: auth(),
      payload: {
        name: 'siem',
        config: { type: 'webhook', url: receiver.url, secret: 'siem-signing-secret-0123456789' },
      },
    });
    expect(sink.statusCode).toBe(201);
    const before = await auditedCall();
    await eventually(
      () => (before.every((id) => delivered().has(id)) ? true : null),
      20_000,
      'delivery before',
    );

    await redisCommand('set', 'before-the-restart', '1');
    await server.restart();
    expect(await redisCommand('exists', 'before-the-restart')).toBe(0);
    const after = await auditedCall();
    // The outbox runs every 300 ms; the schedules come back as soon as the queue reconnects.
    await eventually(
      () => (after.every((id) => delivered().has(id)) ? true : null),
      15_000,
      'delivery after the restart',
    );
    const keys = (await redisCommand('keys', '*:jobs:repeat*')) as string[];
    expect(keys.length).toBeGreaterThan(0);
    expect((await readiness()).status).toBe('ready');
  }, 120_000);

  it('makes a stalled schedule again (its next run evicted, its entry kept) and delivers a pending SIEM event', async () => {
    // What an evicting Redis can do one key at a time: the delayed iteration jobs go, the
    // scheduler entries stay, so BullMQ never runs the job again by itself.
    const keys = (await redisCommand('keys', '*')) as string[];
    const iterations = keys.filter(
      (k) => /:jobs:(delayed|wait|prioritized|marker)$/.test(k) || /:jobs:repeat:[^:]+:\d+$/.test(k),
    );
    expect(iterations.length).toBeGreaterThan(0);
    await redisCommand('del', ...(iterations as [string, ...string[]]));
    expect(((await redisCommand('keys', '*:jobs:repeat')) as string[]).length).toBe(1);
    // Another Cloudflare user: the restart left 'redis-faults' with its budget of 5 spent
    // (Cloudflare still counts the requests from before it).
    const other = cf.state.createUser({ email: 'redis-faults-2@example.com' });
    const otherAccount = cf.state.createAccount({ name: 'Redis Two', members: [other.id] });
    const otherZone = cf.state.createZone({ accountId: otherAccount.id, name: 'redis-faults-2.example' }).id;
    await t.connect(
      tenant.apiKey,
      'redis-faults-2',
      cf.state.createUserToken({ userId: other.id, permissions: ['#zone:read'] }).value,
    );
    const pending = await auditedCall('redis-faults-2', otherZone);
    // Overdue after two intervals and a check (about 1.6 s here), then made again.
    await eventually(
      () => (pending.every((id) => delivered().has(id)) ? true : null),
      20_000,
      'delivery after the schedule stalled',
    );
    expect((await readiness()).status).toBe('ready');
  }, 120_000);

  it("does not refill a budget a restart lost: the next answer restores it from Cloudflare's count", async () => {
    // Cloudflare counts more than Warden's budget allows, so only its headers can say the
    // window is used: an empty Redis alone would admit five more.
    cf.setLimits({
      budget: { requests: 100, windowSeconds: 300 },
      graphql: null,
      perIpPerSecond: null,
      lockoutSeconds: 300,
    });
    const user = cf.state.createUser({ email: 'budget-restart@example.com' });
    const account = cf.state.createAccount({ name: 'Budget Co', members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'budget-restart.example' }).id;
    const token = cf.state.createUserToken({ userId: user.id, permissions: ['#zone:read'] });
    await t.connect(tenant.apiKey, 'budget-restart', token.value);
    const one = async () => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: auth(),
        payload: {
          tool_name: 'cloudflare_execute',
          identifier: 'budget-restart',
          params: {
            code: `async () => { try { return (await cloudflare.request({ method: 'GET', path: '/zones/${zone}' })).success; } catch (e) { return e.code + ": " + e.message; } }`,
          },
        },
      });
      return (res.json() as { data?: unknown; error?: { code: string } }).data ?? res.json().error?.code;
    };
    const sent = () =>
      cf.requests().filter((r) => r.principalId === user.id && r.path === `/zones/${zone}`).length;
    // Use the budget up (connecting it may have spent some of it already).
    const before = sent();
    const used: unknown[] = [];
    for (let i = 0; i < 6; i++) used.push(await one());
    expect(used.filter((o) => o === true).length, JSON.stringify(used)).toBeGreaterThan(0);
    expect(used.at(-1), JSON.stringify(used)).toMatch(/^rate_limited/);
    const spent = sent();
    expect(spent - before).toBe(used.filter((o) => o === true).length);

    await server.restart();
    // Until the replica's connection is back, calls answer 503; the first one after it is the
    // one request that learns Cloudflare's count.
    const first = await eventually(
      async () => {
        const outcome = await one();
        return typeof outcome === 'string' && outcome.startsWith('unavailable') ? null : outcome;
      },
      20_000,
      'a call once Redis is back',
    );
    // Cloudflare's count now includes Warden's five from before the restart: it may not tell
    // them from the dashboard's, so the budget of 5 stays used up, for concurrent calls too.
    const outcomes = [first, ...(await Promise.all(Array.from({ length: 6 }, one)))];
    for (let i = 0; i < 2; i++) outcomes.push(await one());
    expect(sent() - spent, JSON.stringify(outcomes)).toBeLessThanOrEqual(1);
    expect(outcomes.filter((o) => o === true).length, JSON.stringify(outcomes)).toBeLessThanOrEqual(1);
    for (const o of outcomes.slice(1)) expect(o).toMatch(/^rate_limited: the Cloudflare API budget/);
  }, 120_000);

  it('reports an evicting Redis as not ready, naming the setting to change', async () => {
    // Ready first: the previous test restarted Redis.
    await eventually(
      async () => ((await readiness()).status === 'ready' ? true : null),
      20_000,
      '/readyz ready',
    );
    await redisCommand('config', 'set', 'maxmemory-policy', 'allkeys-lru');
    const evicting = await readiness();
    expect(evicting.status, JSON.stringify(evicting)).toBe('unavailable');
    expect(evicting.checks.redis).toBe('unavailable');
    expect(evicting.problems?.redis).toMatch(
      /maxmemory-policy allkeys-lru\): set maxmemory-policy to noeviction/,
    );
    await redisCommand('config', 'set', 'maxmemory-policy', 'noeviction');
    expect((await readiness()).status).toBe('ready');
  }, 60_000);

  it('does not take traffic when it starts on an evicting Redis: not ready from the start, naming the setting', async () => {
    await redisCommand('config', 'set', 'maxmemory-policy', 'volatile-lru');
    let fresh: TestApp | undefined;
    try {
      fresh = await startTestApp({ REDIS_URL: server.url, CLOUDFLARE_API_BASE: cf.url });
      const first = (await fresh.app.inject({ method: 'GET', url: '/readyz' })).json() as Readiness;
      expect(first.status, JSON.stringify(first)).toBe('unavailable');
      expect(first.problems?.redis).toMatch(
        /maxmemory-policy volatile-lru\): set maxmemory-policy to noeviction/,
      );
    } finally {
      await redisCommand('config', 'set', 'maxmemory-policy', 'noeviction');
      await fresh?.close();
    }
  }, 60_000);
});
