import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { EGRESS_PACING_SLICES, createEgressLimiter } from './egress.ts';
import type { EgressLimiter } from './egress.ts';
import { egressSuite } from './egress-suite.fixture.ts';
import { createBudgetRedisClient } from './redis-client.ts';
import { createRedisEgressStore, egressKeys } from './redis-egress.ts';
import { useTestRedis } from './redis-test.fixture.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';

describe('Redis egress store', () => {
  const test = useTestRedis(REDIS_URL);
  const { keyPrefix } = test;
  let pools = 0;

  // A pool per test: each starts with an empty window.
  egressSuite((limit, slices) =>
    createRedisEgressStore({
      redis: test.redis,
      keyPrefix,
      pool: `pool-${++pools}`,
      limit,
      ...(slices ? { slices } : {}),
    }),
  );

  it('shares one window between stores of the same pool, under one hash tag', async () => {
    const pool = `pool-${++pools}`;
    const redis = test.redis;
    const one = createRedisEgressStore({ redis, keyPrefix, pool, limit: 2 });
    const two = createRedisEgressStore({ redis, keyPrefix, pool, limit: 2 });
    const [slot] = (await one.take('ten_a', 1)).granted;
    expect((await two.take('ten_b', 2)).granted).toHaveLength(1);
    const keys = egressKeys(keyPrefix, pool);
    const tag = `{${keyPrefix}:egress:${pool}}`;
    for (const key of [keys.log, keys.tenant('ten_a'), keys.waiting, keys.waitingCounts, keys.meta]) {
      expect(key.startsWith(tag)).toBe(true);
    }
    expect(await redis.zcard(keys.log)).toBe(2);
    await one.settle(slot!);
    const settled = Number(await redis.zscore(keys.log, slot!.id));
    const tenantScore = Number(await redis.zscore(keys.tenant('ten_a'), slot!.id));
    expect(settled).toBe(tenantScore);
    // A settled slot counts from its settlement: it leaves the window one second later.
    await sleep(1100);
    expect((await two.take('ten_b', 2)).granted).toHaveLength(1);
  });

  it('divides a contended window max-min fairly between tenants across four replicas', async () => {
    // Four replicas (a limiter and a Redis connection each) share one pool of 40 per second,
    // paced as the service paces it.
    // Tenant 0 floods (16 workers); tenants 1–3 want more than their share (2 workers each);
    // tenant 4 wants 5 per second, under any fair share. Each admitted request is answered
    // 5 ms later. Measured over seconds 1–4 of the run.
    const LIMIT = 40;
    const pool = `pool-${++pools}`;
    const clients: Redis[] = [];
    const limiters: EgressLimiter[] = [];
    for (let r = 0; r < 4; r++) {
      const redis = createBudgetRedisClient(REDIS_URL, { lazyConnect: true });
      await redis.connect();
      clients.push(redis);
      limiters.push(
        createEgressLimiter({
          store: createRedisEgressStore({
            redis,
            keyPrefix,
            pool,
            limit: LIMIT,
            slices: EGRESS_PACING_SLICES,
          }),
        }),
      );
    }
    const grants: Array<{ tenant: number; at: number }> = [];
    const refused = [0, 0, 0, 0, 0];
    const started = performance.now();
    const until = started + 4_000;
    let next = 0;
    const worker = async (tenant: number, pauseMs: number) => {
      const limiter = limiters[next++ % limiters.length]!;
      while (performance.now() < until) {
        const acquired = await limiter.acquire(`ten_${tenant}`);
        if (acquired.ok) {
          grants.push({ tenant, at: performance.now() - started });
          await sleep(5);
          await limiter.settle(acquired.slot);
        } else {
          refused[tenant]! += 1;
        }
        await sleep(pauseMs);
      }
    };
    try {
      await Promise.all([
        ...Array.from({ length: 16 }, () => worker(0, 0)),
        ...[1, 2, 3].flatMap((tenant) => [worker(tenant, 0), worker(tenant, 0)]),
        worker(4, 200),
      ]);
    } finally {
      for (const limiter of limiters) await limiter.close();
      for (const redis of clients) await redis.quit();
    }
    const times = grants.map((g) => g.at).sort((a, b) => a - b);
    let most = 0;
    for (let to = 0, from = 0; to < times.length; to++) {
      while (times[to]! - times[from]! >= 1000) from++;
      most = Math.max(most, to - from + 1);
    }
    expect(most).toBeLessThanOrEqual(LIMIT);
    const steady = grants.filter((g) => g.at >= 1000 && g.at < 4000);
    const per = [0, 1, 2, 3, 4].map((t) => steady.filter((g) => g.tenant === t).length);
    // The rest (beyond tenant 4's) is divided equally between the tenants that want more.
    const fair = (steady.length - per[4]!) / 4;
    const shares = per.slice(0, 4).map((n) => n / fair);
    console.log(
      `egress max-min: granted ${per.join(', ')} in 3 s, refused ${refused.join(', ')}; shares of the fair one ${shares.map((x) => x.toFixed(2)).join(', ')}`,
    );
    // Tenant 4 is under any fair share: it gets what it asks for (about 14 in 3 s), all but a
    // request or two at once.
    expect(per[4]).toBeGreaterThanOrEqual(10);
    expect(refused[4]).toBeLessThanOrEqual(3);
    expect(steady.length).toBeGreaterThanOrEqual(LIMIT * 3 * 0.9);
    for (const share of shares) expect(share).toBeGreaterThanOrEqual(0.8);
  }, 20_000);
});
