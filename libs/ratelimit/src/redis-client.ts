import { createHash } from 'node:crypto';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { Redis as RedisClient } from 'ioredis';
import { unavailable } from '@warden/core';

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

/** Every budget key starts with this unless the caller passes its own prefix. */
export const DEFAULT_KEY_PREFIX = 'warden:rl';

export interface LuaScript {
  readonly lua: string;
  readonly sha: string;
}

export function luaScript(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** EVALSHA, and EVAL when the script cache was emptied (restart, failover); any failure is `unavailable`. */
export async function runScript(
  redis: Redis | Cluster,
  script: LuaScript,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
): Promise<unknown> {
  try {
    try {
      return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        return await redis.eval(script.lua, keys.length, ...keys, ...args);
      }
      throw error;
    }
  } catch (error) {
    throw unavailable('redis', error);
  }
}

/** Wraps a plain command the same way as `runScript`. */
export async function runCommand<T>(command: () => Promise<T>): Promise<T> {
  try {
    return await command();
  } catch (error) {
    throw unavailable('redis', error);
  }
}

/** `quit`, or drop the socket when Redis cannot be reached to say goodbye. */
export async function quitClient(redis: Redis | Cluster): Promise<void> {
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}
