import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { API_KEY_REVOKE_CHANNEL } from './container.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

const PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read', '#zone:read'];

/** Every key under a prefix (SCAN, never KEYS on a shared server). */
async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  // Hash-tagged keys (`{<prefix>:rl:…}…`) keep Redis Cluster slots together; both forms count.
  for (const pattern of [`${prefix}:*`, `{${prefix}:*`]) {
    for await (const keys of redis.scanStream({ match: pattern, count: 1_000 })) {
      found.push(...(keys as string[]));
    }
  }
  return found;
}

/**
 * Two Warden deployments (each with its own PostgreSQL database) on one Redis, with their
 * default settings: every key, channel and BullMQ queue of one carries its own prefix, so
 * neither sees the other's messages, budgets or jobs. A second replica of the first
 * deployment (same database) shares its prefix, as replicas must.
 */
describe('two deployments on one Redis', () => {
  let cf: FakeCloudflare;
  let a: TestApp;
  let replicaA: TestApp;
  let b: TestApp;
  let redis: Redis;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const env = { CLOUDFLARE_API_BASE: cf.url };
    a = await startTestApp(env);
    replicaA = await startTestApp(env, { replicaOf: a });
    b = await startTestApp(env);
    redis = new Redis(process.env.REDIS_URL ?? '', { lazyConnect: false });
  });
  afterAll(async () => {
    redis?.disconnect();
    await b?.close();
    await replicaA?.close();
    await a?.close();
    await cf?.close();
  });

  it('derive different prefixes from their databases; replicas of one share it', async () => {
    // The replica answers like any replica (and so has an access log line to check on close).
    expect((await replicaA.app.inject({ method: 'GET', url: '/api/v1/settings' })).statusCode).toBe(401);
    const [pa, pr, pb] = [a, replicaA, b].map((app) => app.container.config.redisKeyPrefix);
    expect(pa).toMatch(/^warden:[0-9a-f]{8}$/);
    expect(pb).toMatch(/^warden:[0-9a-f]{8}$/);
    expect(pb).not.toBe(pa);
    expect(pr).toBe(pa);
  });

  it('deliver bus messages only within their own deployment', async () => {
    const seen: Record<'replicaA' | 'b', unknown[]> = { replicaA: [], b: [] };
    await replicaA.container.bus.subscribe('test:namespaces', (m) => seen.replicaA.push(m));
    await b.container.bus.subscribe('test:namespaces', (m) => seen.b.push(m));
    await a.container.bus.publish('test:namespaces', { from: 'a' });
    await expect.poll(() => seen.replicaA, { timeout: 5_000 }).toEqual([{ from: 'a' }]);
    // The same channel name, published by A after the first message reached its replica: had B
    // been subscribed to A's channel, both would have reached it by now.
    await a.container.bus.publish('test:namespaces', { from: 'a', n: 2 });
    await expect.poll(() => seen.replicaA.length, { timeout: 5_000 }).toBe(2);
    expect(seen.b).toEqual([]);
  });

  it('carry an API key revocation only to their own replicas, on a prefixed channel', async () => {
    const pa = a.container.config.redisKeyPrefix;
    const pb = b.container.config.redisKeyPrefix;
    // What actually crosses Redis: revocations under either deployment's prefix (other test
    // runs on this Redis publish under their own).
    const wire: { channel: string; message: unknown }[] = [];
    const listener = redis.duplicate();
    listener.on('pmessage', (_pattern: string, channel: string, payload: string) =>
      wire.push({ channel, message: JSON.parse(payload) as unknown }),
    );
    await listener.psubscribe(`${pa}:${API_KEY_REVOKE_CHANNEL}`, `${pb}:${API_KEY_REVOKE_CHANNEL}`);
    try {
      const seen: Record<'replicaA' | 'b', unknown[]> = { replicaA: [], b: [] };
      await replicaA.container.bus.subscribe(API_KEY_REVOKE_CHANNEL, (m) => seen.replicaA.push(m));
      await b.container.bus.subscribe(API_KEY_REVOKE_CHANNEL, (m) => seen.b.push(m));

      const { tenantId, apiKey } = await a.createTenant('Revocation');
      const keyId = (await a.container.tenants.authenticate(apiKey))?.apiKeyId;
      expect(keyId).toMatch(/^key_/);
      const revoked = await a.app.inject({
        method: 'DELETE',
        url: `/admin/v1/tenants/${tenantId}/api_keys/${keyId}`,
        headers: { authorization: `Bearer ${a.adminToken}` },
      });
      expect(revoked.statusCode, revoked.body).toBe(204);

      await expect.poll(() => seen.replicaA, { timeout: 5_000 }).toEqual([{ keyId }]);
      await expect
        .poll(() => wire, { timeout: 5_000 })
        .toEqual([{ channel: `${pa}:${API_KEY_REVOKE_CHANNEL}`, message: { keyId } }]);
      // A second revocation after the first reached A's replica: B, on its own channel, has
      // heard neither.
      const second = await a.createTenant('Revocation 2');
      const secondKeyId = (await a.container.tenants.authenticate(second.apiKey))?.apiKeyId;
      const revokedAgain = await a.app.inject({
        method: 'DELETE',
        url: `/admin/v1/tenants/${second.tenantId}/api_keys/${secondKeyId}`,
        headers: { authorization: `Bearer ${a.adminToken}` },
      });
      expect(revokedAgain.statusCode, revokedAgain.body).toBe(204);
      await expect.poll(() => seen.replicaA.length, { timeout: 5_000 }).toBe(2);
      expect(seen.b).toEqual([]);
    } finally {
      listener.disconnect();
    }
  });

  it('keep separate rate budgets for the same Cloudflare user', async () => {
    const user = cf.state.createUser({ email: 'shared-user@example.com' });
    const account = cf.state.createAccount({ name: 'Shared', members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'shared.example' });
    const getZone = `async () => { try { return (await cloudflare.request({ method: 'GET', path: '/zones/${zone.id}' })).success; } catch (e) { return e.code; } }`;
    const call = async (app: TestApp, apiKey: string) => {
      const res = await app.app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: { authorization: `Bearer ${apiKey}` },
        payload: { tool_name: 'cloudflare_execute', identifier: 'sam', params: { code: getZone } },
      });
      expect(res.statusCode, res.body).toBe(200);
      return (res.json() as { data: unknown }).data;
    };
    const setUp = async (app: TestApp) => {
      const tenant = await app.createTenant('Namespaces');
      const token = cf.state.createUserToken({ userId: user.id, permissions: PERMISSIONS });
      for (const each of [a, replicaA, b]) each.secrets.add(token.value);
      await app.connect(tenant.apiKey, 'sam', token.value);
      const budget = await app.app.inject({
        method: 'PATCH',
        url: '/api/v1/settings',
        headers: { authorization: `Bearer ${tenant.apiKey}` },
        payload: { budget: '4/3600' },
      });
      expect(budget.statusCode, budget.body).toBe(200);
      return tenant.apiKey;
    };
    const keyA = await setUp(a);
    const keyB = await setUp(b);

    /** Calls until the budget refuses one; how many got through (connecting spent some too). */
    const spend = async (app: TestApp, apiKey: string) => {
      for (let served = 0; served < 10; served++) {
        const outcome = await call(app, apiKey);
        if (outcome !== true) {
          expect(outcome).toBe('rate_limited');
          return served;
        }
      }
      throw new Error('the budget never refused a call');
    };
    // B spends its whole budget for this user; A's budget for the same user is untouched, so it
    // serves as many calls (had they shared a key, A would be refused at once).
    const servedByB = await spend(b, keyB);
    expect(servedByB).toBeGreaterThan(0);
    expect(await spend(a, keyA)).toBe(servedByB);

    // And the keys that hold them are each under its own deployment's prefix.
    const pa = a.container.config.redisKeyPrefix;
    const pb = b.container.config.redisKeyPrefix;
    const [underA, underB] = [await keysUnder(redis, pa), await keysUnder(redis, pb)];
    expect(underA.some((key) => key.includes(`${pa}:rl`))).toBe(true);
    expect(underB.some((key) => key.includes(`${pb}:rl`))).toBe(true);
    expect(underA.filter((key) => underB.includes(key))).toEqual([]);
  });

  it('keep their BullMQ queues and schedules apart', async () => {
    const pa = a.container.config.redisKeyPrefix;
    const pb = b.container.config.redisKeyPrefix;
    // Each deployment's scheduler registers its repeating jobs under its own prefix.
    await expect
      .poll(async () => (await keysUnder(redis, `${pa}:jobs`)).length, { timeout: 10_000 })
      .toBeGreaterThan(0);
    await expect
      .poll(async () => (await keysUnder(redis, `${pb}:jobs`)).length, { timeout: 10_000 })
      .toBeGreaterThan(0);
    // Nothing of either sits under BullMQ's default prefix or an unprefixed queue name.
    const unprefixed: string[] = [];
    for (const pattern of ['bull:jobs:*', 'jobs:*', 'warden-jobs*']) {
      for await (const keys of redis.scanStream({ match: pattern, count: 1_000 })) {
        unprefixed.push(...(keys as string[]));
      }
    }
    expect(unprefixed).toEqual([]);

    // Each queue has its own schedules and its own workers: A's workers (A's and its replica's)
    // take no job from B's queue, nor B's from A's.
    const connection = new Redis(process.env.REDIS_URL ?? '', { maxRetriesPerRequest: null });
    const [queueA, queueB] = [pa, pb].map((prefix) => new Queue('jobs', { connection, prefix }));
    try {
      for (const queue of [queueA, queueB]) {
        await expect
          .poll(async () => (await queue!.getJobSchedulers()).map((s) => s.key), { timeout: 10_000 })
          .toContain('outbox-dispatch');
      }
      const workerIds = async (queue: Queue) => (await queue.getWorkers()).map((w) => w['id']);
      await expect.poll(() => workerIds(queueA!), { timeout: 10_000 }).not.toEqual([]);
      await expect.poll(() => workerIds(queueB!), { timeout: 10_000 }).not.toEqual([]);
      const [onA, onB] = [await workerIds(queueA!), await workerIds(queueB!)];
      expect(onA.filter((id) => onB.includes(id))).toEqual([]);
    } finally {
      await queueA?.close();
      await queueB?.close();
      connection.disconnect();
    }
  });
});
