import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { egressSuite } from './egress-suite.fixture.ts';
import { createRedisEgressStore, egressKeys } from './redis-egress.ts';
import { useTestRedis } from './redis-test.fixture.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';

describe('Redis egress store', () => {
  const test = useTestRedis(REDIS_URL);
  const { keyPrefix } = test;
  let pools = 0;

  // A pool per test: each starts with an empty window.
  egressSuite((limit) =>
    createRedisEgressStore({ redis: test.redis, keyPrefix, pool: `pool-${++pools}`, limit }),
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
