import { once } from 'node:events';
import type { Redis } from 'ioredis';
import { noopLogger, randomString } from '@warden/core';
import { createBudgetRedisClient } from '../redis-client.ts';
import { buildUpstreamBudget } from '../upstream-budget.ts';
import type { UpstreamBudget } from '../upstream-budget.ts';

/**
 * Replicas of the rate budget with `RATE_LIMIT_ON_REDIS_FAILURE=local`, each over a Redis
 * connection of its own that a test can cut (`down`), as the fallback tests need them. `close`
 * deletes the keys of every prefix used, closes the budgets and disconnects the clients.
 */
export interface FallbackReplicas {
  /** A budget of two replicas' shares (one replica's when an egress limit is set) over `redis`. */
  build(redis: Redis, keyPrefix: string, egressLimit?: number): UpstreamBudget;
  /** A client of its own, connected (or, for an address nothing listens on, trying to). */
  connect(url?: string): Promise<Redis>;
  /** A replica: its connection and its budget. */
  replica(keyPrefix: string): Promise<{ redis: Redis; budget: UpstreamBudget }>;
  /** Cuts a replica's connection to Redis (its next commands fail until `redis.connect()`). */
  down(redis: Redis): Promise<void>;
  close(): Promise<void>;
}

export function fallbackReplicas(redisUrl: string): FallbackReplicas {
  const clients: Redis[] = [];
  const budgets: UpstreamBudget[] = [];
  const prefixes = new Set<string>();

  function build(redis: Redis, keyPrefix: string, egressLimit = 0): UpstreamBudget {
    prefixes.add(keyPrefix);
    const budget = buildUpstreamBudget({
      redis,
      keyPrefix,
      logger: noopLogger,
      onRedisFailure: 'local',
      replicas: egressLimit > 0 ? 1 : 2,
      graphql: { capacity: 320, windowSeconds: 300 },
      egressLimit,
      egressPool: `fallback-${randomString(6)}`,
      maxWaitMs: 0,
      maxQueue: 100,
      probeAfterMs: null,
    });
    budgets.push(budget);
    return budget;
  }

  async function connect(url = redisUrl): Promise<Redis> {
    const redis = createBudgetRedisClient(url, { lazyConnect: url === redisUrl });
    redis.on('error', () => {});
    clients.push(redis);
    if (url === redisUrl) await redis.connect();
    return redis;
  }

  return {
    build,
    connect,
    async replica(keyPrefix) {
      const redis = await connect();
      return { redis, budget: build(redis, keyPrefix) };
    },
    async down(redis) {
      redis.disconnect();
      await once(redis, 'end');
    },
    async close() {
      // The budgets first: a replay still due would write its block again after the clean-up.
      for (const budget of budgets) await budget.close().catch(() => {});
      for (const client of clients) client.disconnect();
      const admin = createBudgetRedisClient(redisUrl, { lazyConnect: true });
      await admin.connect();
      for (const prefix of prefixes) {
        const keys = await admin.keys(`{${prefix}:*`);
        if (keys.length > 0) await admin.del(...keys);
      }
      await admin.quit();
    },
  };
}
