import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { Redis as RedisClient } from 'ioredis';
import type { Clock } from '@warden/core';
import { WardenError, systemClock, unavailable } from '@warden/core';
import { assertCost, assertPrincipal, assertSpec, blockMs } from './rate-budget.ts';
import type { BudgetPeek, BudgetSpec, RateBudget, TakeResult } from './rate-budget.ts';
import { BLOCK_SCRIPT, TAKE_SCRIPT } from './take-script.ts';
import type { LuaScript } from './take-script.ts';

/**
 * Client options for the budget's Redis connection. A take sits on every upstream request, so
 * when Redis is down it must fail at once (no offline queue, no retries) or within
 * `commandTimeout` when Redis hangs, and never wait for a reconnect. Reconnecting itself goes on
 * in the background forever. Because the offline queue is off, commands fail until the client is
 * `ready`: wait for it at startup (`lazyConnect: true` + `await redis.connect()`).
 * BullMQ needs `maxRetriesPerRequest: null`, so it must use a separate connection.
 */
export const BUDGET_REDIS_OPTIONS = Object.freeze({
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  commandTimeout: 500,
  connectTimeout: 2_000,
  retryStrategy: (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 5), 2_000),
} satisfies RedisOptions);

/** A client with `BUDGET_REDIS_OPTIONS`; `overrides` win. */
export function createBudgetRedisClient(url: string, overrides: RedisOptions = {}): Redis {
  return new RedisClient(url, { ...BUDGET_REDIS_OPTIONS, ...overrides });
}

export interface RedisRateBudgetOptions {
  readonly redis: Redis | Cluster;
  /** Keys are `{<keyPrefix>:<principal>}:bucket` and `…:block`. Default `warden:rl`. */
  readonly keyPrefix?: string;
  /** Quit the client on `close()`. Leave false when the client is shared with other code. */
  readonly quitOnClose?: boolean;
  /** Only turns a block's remaining wait into a `Date` for display; the bucket runs on Redis time. */
  readonly clock?: Clock;
}

export const DEFAULT_KEY_PREFIX = 'warden:rl';

export function budgetKeys(keyPrefix: string, principal: string): { bucket: string; block: string } {
  // The hash tag puts both keys of a principal in one slot, as a Cluster script requires.
  const tag = `{${keyPrefix}:${principal}}`;
  return { bucket: `${tag}:bucket`, block: `${tag}:block` };
}

type ScriptReply = [allowed: number, remaining: number, waitMs: number, reason: string];

function isScriptReply(value: unknown): value is ScriptReply {
  return (
    Array.isArray(value) &&
    value.length === 4 &&
    typeof value[0] === 'number' &&
    typeof value[1] === 'number' &&
    typeof value[2] === 'number' &&
    typeof value[3] === 'string'
  );
}

/** The shared budget: one Lua script per take, correct across any number of replicas. */
export function createRedisRateBudget(options: RedisRateBudgetOptions): RateBudget {
  const { redis } = options;
  const keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
  const clock = options.clock ?? systemClock;

  async function run(script: LuaScript, keys: readonly string[], args: readonly number[]): Promise<unknown> {
    try {
      try {
        return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (error) {
        // The script cache is empty after a restart or failover: EVAL loads it again.
        if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
          return await redis.eval(script.lua, keys.length, ...keys, ...args);
        }
        throw error;
      }
    } catch (error) {
      throw unavailable('redis', error);
    }
  }

  async function takeOrPeek(principal: string, spec: BudgetSpec, cost: number): Promise<ScriptReply> {
    const keys = budgetKeys(keyPrefix, principal);
    const reply = await run(
      TAKE_SCRIPT,
      [keys.bucket, keys.block],
      [spec.capacity, spec.windowSeconds * 1000, cost],
    );
    if (!isScriptReply(reply)) {
      throw new WardenError('internal', 'rate budget: unexpected reply from the Redis take script');
    }
    return reply;
  }

  return {
    async take(principal: string, spec: BudgetSpec, cost = 1): Promise<TakeResult> {
      assertPrincipal(principal);
      assertSpec(spec);
      assertCost(cost, spec);
      const [allowed, remaining, waitMs, reason] = await takeOrPeek(principal, spec, cost);
      if (allowed === 1) return { allowed: true, remaining };
      return {
        allowed: false,
        remaining,
        retryAfterMs: Math.max(1, waitMs),
        reason: reason === 'blocked' ? 'blocked' : 'exhausted',
      };
    },

    async block(principal: string, retryAfterSeconds: number): Promise<void> {
      assertPrincipal(principal);
      const ms = blockMs(retryAfterSeconds);
      if (ms === 0) return;
      await run(BLOCK_SCRIPT, [budgetKeys(keyPrefix, principal).block], [ms]);
    },

    async peek(principal: string, spec: BudgetSpec): Promise<BudgetPeek> {
      assertPrincipal(principal);
      assertSpec(spec);
      const [, remaining, waitMs, reason] = await takeOrPeek(principal, spec, 0);
      if (reason === 'blocked')
        return { remaining: 0, blockedUntil: new Date(clock.now().getTime() + waitMs) };
      return { remaining };
    },

    async health(): Promise<void> {
      try {
        await redis.ping();
      } catch (error) {
        throw unavailable('redis', error);
      }
    },

    async close(): Promise<void> {
      if (!options.quitOnClose) return;
      try {
        await redis.quit();
      } catch {
        // Quitting a client that cannot reach Redis fails; dropping the socket is all that is left.
        redis.disconnect();
      }
    },
  };
}
