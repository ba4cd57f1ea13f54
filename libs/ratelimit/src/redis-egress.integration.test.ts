import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomString } from '@warden/core';
import { egressSuite } from './egress-suite.fixture.ts';
import { createBudgetRedisClient } from './redis-client.ts';
import { createRedisEgressStore, egressKeys } from './redis-egress.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';

describe('Redis egress store', () => {
  const keyPrefix = `test:rl:${randomString(12)}`;
  let redis: Redis;
  let pools = 0;

  beforeAll(async () => {
    redis = createBudgetRedisClient(REDIS_URL, { lazyConnect: true });
    await redis.connect();
  });

  afterAll(async () => {
    const keys = await redis.keys(`{${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  // A pool per test: each starts with an empty window.
  egressSuite((limit) => createRedisEgressStore({ redis, keyPrefix, pool: `pool-${++pools}`, limit }));

  it('shares one window between stores of the same pool, under one hash tag', async () => {
    const pool = `pool-${++pools}`;
    const one = createRedisEgressStore({ redis, keyPrefix, pool, limit: 2 });
    const two = createRedisEgressStore({ redis, keyPrefix, pool, limit: 2 });
    const [slot] = (await one.take('ten_a', 1)).granted;
    expect((await two.take('ten_b', 2)).granted).toHaveLength(1);
    const keys = egressKeys(keyPrefix, pool);
    const tag = `{${keyPrefix}:egress:${pool}}`;
    for (const key of [keys.log, keys.tenant('ten_a'), keys.active, keys.waiting, keys.meta]) {
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
});
