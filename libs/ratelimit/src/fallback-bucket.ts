import type { Clock, Logger } from '@warden/core';
import { WardenError, isWardenError, systemClock, unavailable } from '@warden/core';
import { createMemoryRateBudget } from './memory-bucket.ts';
import { assertCost, assertPrincipal, assertSpec } from './rate-budget.ts';
import type { BudgetPeek, BudgetSpec, RateBudget, TakeResult } from './rate-budget.ts';

export interface FallbackRateBudgetOptions {
  readonly logger: Logger;
  /**
   * Unset (the default): while Redis is down every take throws `unavailable` (503).
   * Set: each replica uses a local bucket of capacity ÷ `replicas` (at least 1), so the replicas
   * together stay within the upstream budget — never unlimited.
   */
  readonly fallback?: { readonly replicas: number };
  /** While Redis is down, one request per interval tries it again; the rest skip it. Default 1,000 ms. */
  readonly probeIntervalMs?: number;
  readonly clock?: Clock;
}

export interface FallbackRateBudget extends RateBudget {
  /** True while Redis is considered down (for `/readyz` and metrics). */
  readonly degraded: boolean;
}

function isUnavailable(error: unknown): boolean {
  return isWardenError(error) && error.code === 'unavailable';
}

/**
 * Wraps the Redis budget with what to do when Redis is down. A failed take trips a breaker, so
 * during an outage requests do not each wait for a timeout; a probe every `probeIntervalMs`
 * notices the recovery and switches back to the shared budget.
 * Blocks (upstream 429s) are also kept locally, so this replica honours them even when Redis
 * could not record them.
 */
export function createFallbackRateBudget(
  primary: RateBudget,
  options: FallbackRateBudgetOptions,
): FallbackRateBudget {
  const clock = options.clock ?? systemClock;
  const logger = options.logger;
  const probeIntervalMs = options.probeIntervalMs ?? 1_000;
  const replicas = options.fallback?.replicas;
  if (replicas !== undefined && (!Number.isSafeInteger(replicas) || replicas < 1)) {
    throw new WardenError(
      'internal',
      `rate budget fallback: replicas must be a whole number of at least 1, got ${replicas}`,
    );
  }
  const local = createMemoryRateBudget({ clock });
  let degraded = false;
  let degradedSinceMs = 0;
  let nextProbeMs = 0;
  let probing = false;
  let lastError: unknown;

  const localSpec = (spec: BudgetSpec): BudgetSpec => ({
    capacity: Math.max(1, Math.floor(spec.capacity / (replicas ?? 1))),
    windowSeconds: spec.windowSeconds,
  });

  function wentDown(error: unknown): void {
    lastError = error;
    nextProbeMs = clock.now().getTime() + probeIntervalMs;
    if (degraded) return;
    degraded = true;
    degradedSinceMs = clock.now().getTime();
    const cause =
      error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
    logger.warn(
      replicas === undefined
        ? { cause, mode: 'refuse' }
        : { cause, mode: 'local', replicas, share: `capacity ÷ ${replicas}` },
      replicas === undefined
        ? 'rate budget: Redis unavailable, refusing upstream requests until it recovers'
        : 'rate budget: Redis unavailable, using a local bucket of capacity ÷ replicas until it recovers',
    );
  }

  function recovered(): void {
    if (!degraded) return;
    degraded = false;
    logger.info(
      { degradedForMs: clock.now().getTime() - degradedSinceMs },
      'rate budget: Redis is back, using the shared budget again',
    );
  }

  /** Runs `viaRedis` unless the breaker is open; on `unavailable`, `whenDown` decides. */
  async function guarded<T>(
    viaRedis: () => Promise<T>,
    whenDown: (error: unknown) => Promise<T>,
  ): Promise<T> {
    if (degraded && (probing || clock.now().getTime() < nextProbeMs)) return whenDown(lastError);
    const probe = degraded;
    if (probe) probing = true;
    try {
      const result = await viaRedis();
      recovered();
      return result;
    } catch (error) {
      if (!isUnavailable(error)) throw error;
      wentDown(error);
      return whenDown(error);
    } finally {
      if (probe) probing = false;
    }
  }

  function refuse(error: unknown): never {
    throw unavailable('redis', isWardenError(error) ? error.cause : error);
  }

  async function localBlock(principal: string, spec: BudgetSpec): Promise<Date | undefined> {
    return (await local.peek(principal, localSpec(spec))).blockedUntil;
  }

  return {
    get degraded() {
      return degraded;
    },

    async take(principal: string, spec: BudgetSpec, cost = 1): Promise<TakeResult> {
      assertPrincipal(principal);
      assertSpec(spec);
      assertCost(cost, spec);
      const blockedUntil = await localBlock(principal, spec);
      if (blockedUntil) {
        const retryAfterMs = Math.max(1, blockedUntil.getTime() - clock.now().getTime());
        return { allowed: false, remaining: 0, retryAfterMs, reason: 'blocked' };
      }
      return guarded(
        () => primary.take(principal, spec, cost),
        async (error) => {
          if (replicas === undefined) refuse(error);
          const share = localSpec(spec);
          return local.take(principal, share, Math.min(cost, share.capacity));
        },
      );
    },

    async block(principal: string, retryAfterSeconds: number): Promise<void> {
      await local.block(principal, retryAfterSeconds);
      // Best effort: the caller is already answering an upstream 429, and this replica honours
      // the block locally; failing that answer with a 503 would help no one.
      await guarded(
        () => primary.block(principal, retryAfterSeconds),
        async () => {},
      );
    },

    async peek(principal: string, spec: BudgetSpec): Promise<BudgetPeek> {
      assertPrincipal(principal);
      assertSpec(spec);
      const blockedUntil = await localBlock(principal, spec);
      if (blockedUntil) return { remaining: 0, blockedUntil };
      return guarded(
        () => primary.peek(principal, spec),
        async (error) => (replicas === undefined ? refuse(error) : local.peek(principal, localSpec(spec))),
      );
    },

    async health(): Promise<void> {
      try {
        await primary.health();
      } catch (error) {
        if (isUnavailable(error)) wentDown(error);
        throw error;
      }
      recovered();
    },

    async close(): Promise<void> {
      await local.close();
      await primary.close();
    },
  };
}
