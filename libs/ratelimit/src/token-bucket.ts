import type { BudgetSpec } from './rate-budget.ts';

/**
 * The bucket arithmetic, in milliseconds. `take-script.ts` is the same arithmetic in Lua;
 * keep the two in step.
 */
export interface BucketState {
  /** Fractional, so a 1200/300 s budget refills 4 per second rather than 1,200 at once. */
  readonly tokens: number;
  readonly updatedAtMs: number;
}

/** Absorbs floating-point residue, so 4.999999999 refilled tokens still pay for 5. */
export const TOKEN_EPSILON = 1e-9;

export function ratePerMs(spec: BudgetSpec): number {
  return spec.capacity / (spec.windowSeconds * 1000);
}

/** A missing bucket is a full one, which is what lets idle buckets simply expire. */
export function refill(state: BucketState | undefined, spec: BudgetSpec, nowMs: number): BucketState {
  if (!state) return { tokens: spec.capacity, updatedAtMs: nowMs };
  // A clock that steps back must neither refill nor rewind the bucket.
  if (nowMs <= state.updatedAtMs) {
    return { tokens: Math.min(spec.capacity, state.tokens), updatedAtMs: state.updatedAtMs };
  }
  const tokens = Math.min(spec.capacity, state.tokens + (nowMs - state.updatedAtMs) * ratePerMs(spec));
  return { tokens, updatedAtMs: nowMs };
}

export function wholeTokens(tokens: number): number {
  return Math.max(0, Math.floor(tokens + TOKEN_EPSILON));
}

/** Milliseconds until `cost` tokens are available (0 if they already are). */
export function msUntilAvailable(tokens: number, cost: number, spec: BudgetSpec): number {
  if (tokens + TOKEN_EPSILON >= cost) return 0;
  return Math.max(1, Math.ceil((cost - tokens - TOKEN_EPSILON) / ratePerMs(spec)));
}

/** Milliseconds until the bucket is full again, after which its state is the same as no state. */
export function msUntilFull(tokens: number, spec: BudgetSpec): number {
  return Math.max(1, Math.ceil((spec.capacity - tokens - TOKEN_EPSILON) / ratePerMs(spec)));
}
