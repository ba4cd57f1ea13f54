import { WardenError, hasControlCharacters } from '@warden/core';

/**
 * A token bucket: `capacity` is both the burst and the number of requests per `windowSeconds`;
 * tokens refill continuously at `capacity / windowSeconds` per second.
 */
export interface BudgetSpec {
  readonly capacity: number;
  readonly windowSeconds: number;
}

export type TakeResult =
  | { readonly allowed: true; readonly remaining: number }
  | {
      readonly allowed: false;
      readonly remaining: number;
      /** How long until this take could succeed (at least 1). */
      readonly retryAfterMs: number;
      /** `blocked`: an upstream 429 is being honoured; `exhausted`: the bucket is empty. */
      readonly reason: 'exhausted' | 'blocked';
    };

export type TakeRefusal = Extract<TakeResult, { allowed: false }>;

export interface BudgetPeek {
  /** Whole tokens a take could use right now (0 while blocked). */
  readonly remaining: number;
  readonly blockedUntil?: Date;
}

/**
 * The upstream rate budget, keyed by upstream principal (`cf:user:<id>`, `cf:account:<id>`).
 * A refusal is a result, not an error; errors mean the budget itself could not be consulted.
 */
export interface RateBudget {
  take(principal: string, spec: BudgetSpec, cost?: number): Promise<TakeResult>;
  /** Honours an upstream 429: no take for `principal` succeeds until then, on every replica. */
  block(principal: string, retryAfterSeconds: number): Promise<void>;
  /** Reads the budget without consuming it. */
  peek(principal: string, spec: BudgetSpec): Promise<BudgetPeek>;
  /** Resolves when the backing store answers; throws `unavailable` otherwise. */
  health(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Cloudflare counts its limit per user for user tokens and Global API Keys (across all of that
 * user's tokens and the dashboard), and per account for account-owned tokens.
 */
export function cloudflarePrincipal(kind: 'user' | 'account', id: string): string {
  return `cf:${kind}:${id}`;
}

/** Upstream `Retry-After` values beyond this are treated as this, so a bogus header cannot block forever. */
export const MAX_BLOCK_SECONDS = 3600;

const MAX_PRINCIPAL_LENGTH = 256;

// Bad arguments here are programming errors in the caller, never the end user's fault.
function internal(message: string): WardenError {
  return new WardenError('internal', `rate budget: ${message}`);
}

export function assertPrincipal(principal: string): void {
  if (
    typeof principal !== 'string' ||
    principal.length === 0 ||
    principal.length > MAX_PRINCIPAL_LENGTH ||
    hasControlCharacters(principal)
  ) {
    throw internal(`invalid principal ${JSON.stringify(String(principal).slice(0, 64))}`);
  }
}

export function assertSpec(spec: BudgetSpec): void {
  if (!Number.isSafeInteger(spec.capacity) || spec.capacity < 1) {
    throw internal(`capacity must be a whole number of at least 1, got ${String(spec.capacity)}`);
  }
  if (!Number.isFinite(spec.windowSeconds) || spec.windowSeconds <= 0) {
    throw internal(`windowSeconds must be a positive number, got ${String(spec.windowSeconds)}`);
  }
}

export function assertCost(cost: number, spec: BudgetSpec): void {
  // A cost above capacity could never be satisfied and would refuse forever.
  if (!Number.isSafeInteger(cost) || cost < 1 || cost > spec.capacity) {
    throw internal(
      `cost must be a whole number from 1 to the capacity (${spec.capacity}), got ${String(cost)}`,
    );
  }
}

/** Milliseconds of block for an upstream `Retry-After`, clamped; 0 means nothing to block. */
export function blockMs(retryAfterSeconds: number): number {
  if (!Number.isFinite(retryAfterSeconds) || retryAfterSeconds <= 0) return 0;
  return Math.ceil(Math.min(retryAfterSeconds, MAX_BLOCK_SECONDS) * 1000);
}

/** The error a caller raises for a refused take, so every refusal reads the same on the wire. */
export function rateLimitedError(refusal: TakeRefusal): WardenError {
  const retryAfterSeconds = Math.max(1, Math.ceil(refusal.retryAfterMs / 1000));
  const why =
    refusal.reason === 'blocked'
      ? 'Cloudflare asked to slow down (429) for this account'
      : 'the Cloudflare rate budget for this account is used up';
  return new WardenError('rate_limited', `${why}; retry in ${retryAfterSeconds} s`, {
    retryAfterSeconds,
    reason: refusal.reason,
  });
}
