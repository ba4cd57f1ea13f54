/** A Redis connection and a key prefix of its own for one test file; its keys are deleted at the end. */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { randomString } from '@warden/core';
import { createBudgetRedisClient } from './redis-client.ts';

export function useTestRedis(url: string): { readonly redis: Redis; readonly keyPrefix: string } {
  const keyPrefix = `test:rl:${randomString(12)}`;
  let redis: Redis | undefined;
  beforeAll(async () => {
    redis = createBudgetRedisClient(url, { lazyConnect: true });
    await redis.connect();
  });
  afterAll(async () => {
    if (!redis) return;
    const keys = await redis.keys(`{${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });
  return {
    keyPrefix,
    get redis(): Redis {
      if (!redis) throw new Error('Redis is connected in beforeAll');
      return redis;
    },
  };
}
