import type { Clock } from '@warden/core';
import { systemClock } from '@warden/core';
import { assertCost, assertPrincipal, assertSpec, blockMs } from './rate-budget.ts';
import type { BudgetPeek, BudgetSpec, RateBudget, TakeResult } from './rate-budget.ts';
import { msUntilAvailable, msUntilFull, refill, wholeTokens } from './token-bucket.ts';
import type { BucketState } from './token-bucket.ts';

export interface MemoryRateBudgetOptions {
  readonly clock?: Clock;
  /** How often idle (full) buckets and expired blocks are dropped. */
  readonly sweepIntervalMs?: number;
}

interface Entry extends BucketState {
  /** When the bucket is full again and the entry carries no information. */
  readonly idleAtMs: number;
}

/**
 * The budget in this process only: correct for a single node (no `REDIS_URL`), and the local
 * fallback when Redis is down. Same semantics as the Redis budget, on an injectable clock.
 */
export function createMemoryRateBudget(options: MemoryRateBudgetOptions = {}): RateBudget {
  const clock = options.clock ?? systemClock;
  const sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
  const buckets = new Map<string, Entry>();
  const blocks = new Map<string, number>();
  let lastSweepMs = clock.now().getTime();

  function sweep(nowMs: number): void {
    if (nowMs - lastSweepMs < sweepIntervalMs) return;
    lastSweepMs = nowMs;
    for (const [principal, entry] of buckets) if (entry.idleAtMs <= nowMs) buckets.delete(principal);
    for (const [principal, until] of blocks) if (until <= nowMs) blocks.delete(principal);
  }

  function blockedMs(principal: string, nowMs: number): number {
    const until = blocks.get(principal);
    return until === undefined ? 0 : Math.max(0, until - nowMs);
  }

  return {
    async take(principal: string, spec: BudgetSpec, cost = 1): Promise<TakeResult> {
      assertPrincipal(principal);
      assertSpec(spec);
      assertCost(cost, spec);
      const nowMs = clock.now().getTime();
      sweep(nowMs);
      const state = refill(buckets.get(principal), spec, nowMs);
      const blocked = blockedMs(principal, nowMs);
      const wait = msUntilAvailable(state.tokens, cost, spec);
      if (blocked > 0) {
        return { allowed: false, remaining: 0, retryAfterMs: Math.max(blocked, wait), reason: 'blocked' };
      }
      if (wait > 0) {
        return {
          allowed: false,
          remaining: wholeTokens(state.tokens),
          retryAfterMs: wait,
          reason: 'exhausted',
        };
      }
      const tokens = Math.max(0, state.tokens - cost);
      buckets.set(principal, {
        tokens,
        updatedAtMs: state.updatedAtMs,
        idleAtMs: state.updatedAtMs + msUntilFull(tokens, spec),
      });
      return { allowed: true, remaining: wholeTokens(tokens) };
    },

    async block(principal: string, retryAfterSeconds: number): Promise<void> {
      assertPrincipal(principal);
      const ms = blockMs(retryAfterSeconds);
      if (ms === 0) return;
      const until = clock.now().getTime() + ms;
      // A shorter Retry-After arriving later must not cut an earlier, longer block short.
      blocks.set(principal, Math.max(until, blocks.get(principal) ?? 0));
    },

    async peek(principal: string, spec: BudgetSpec): Promise<BudgetPeek> {
      assertPrincipal(principal);
      assertSpec(spec);
      const nowMs = clock.now().getTime();
      const state = refill(buckets.get(principal), spec, nowMs);
      const blocked = blockedMs(principal, nowMs);
      if (blocked > 0) return { remaining: 0, blockedUntil: new Date(nowMs + blocked) };
      return { remaining: wholeTokens(state.tokens) };
    },

    async health(): Promise<void> {},

    async close(): Promise<void> {
      buckets.clear();
      blocks.clear();
    },
  };
}
