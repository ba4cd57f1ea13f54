import { WardenError, hasControlCharacters } from '@warden/core';
import type { BudgetSpec } from './budget-spec.ts';
import type { CloudflareQuota } from './rate-headers.ts';

/**
 * REST requests and GraphQL queries are limited separately by Cloudflare, so they have separate
 * windows; R2 data-plane requests (the S3-compatible endpoint) have their own window too.
 */
export type BudgetKind = 'rest' | 'graphql' | 'r2';

/** One admitted request's place in a principal's window, to settle or release it later. */
export interface WindowTicket {
  readonly principal: string;
  readonly kind: BudgetKind;
  /** Its entry in the window; null for a request charged after it was sent (see `settle`). */
  readonly id: string | null;
  /** When the store admitted it, on the store's clock (Redis `TIME` for Redis), in ms. */
  readonly admittedAtMs: number;
}

/**
 * `blocked`: an upstream 429 is being honoured; `window`: N requests in the last T seconds;
 * `cloudflare`: Cloudflare's count (Warden's requests plus others it reported) reached its quota;
 * `probe`: Cloudflare has not answered for this principal lately and one request is already
 * out to learn its count.
 */
export type WindowRefusalReason = 'blocked' | 'window' | 'cloudflare' | 'probe';

export type WindowTake =
  | { readonly allowed: true; readonly ticket: WindowTicket; readonly remaining: number }
  | {
      readonly allowed: false;
      readonly reason: WindowRefusalReason;
      /** How long until this take could succeed (at least 1). */
      readonly retryAfterMs: number;
      readonly remaining: number;
    };

/** What became of an admitted request. */
export interface WindowSettlement {
  /** A response came back (false: it was sent but the answer was lost: timeout, reset). */
  readonly answered: boolean;
  /** Cloudflare's own count, from the response's `Ratelimit` headers. */
  readonly quota: CloudflareQuota | null;
  /** Block the principal this long (an upstream 429's `Retry-After`); 0 for none. */
  readonly blockMs: number;
  /**
   * Whether Cloudflare counted the request (default true). One it did not (a 429, a route it does
   * not have) gives its place back in the same step, before Cloudflare's count is compared.
   */
  readonly counted?: boolean;
}

export interface WindowStatus {
  /** Requests a take could use now: Warden's window, or Cloudflare's figure when lower (0 while blocked). */
  readonly remaining: number;
  /** Entries in the window (admitted and not yet out of it). */
  readonly used: number;
  /** When the oldest entry leaves the window, giving one request back; null for an empty window. */
  readonly nextRefillAt: Date | null;
  readonly blockedUntil: Date | null;
  /**
   * What Cloudflare's count allows while it matters (it counted requests that are not Warden's,
   * or its quota is lower than Warden's), until `resetAt`; `binding` while it is lower than what
   * Warden's own window allows. Null when Warden's window alone decides.
   */
  readonly cloudflare: {
    readonly remaining: number;
    readonly resetAt: Date;
    readonly binding: boolean;
  } | null;
  /** What a take now would be refused with (the check that frees last), or null: it would be admitted. */
  readonly refusal: { readonly reason: WindowRefusalReason; readonly retryAfterMs: number } | null;
}

export interface WindowOptions {
  /**
   * An admitted request holds its place in the window from admission until its answer comes back
   * (then it counts from that moment) or, if no answer is reported, for this long. At least the
   * upstream timeout. Default 31,000 ms.
   */
  readonly inFlightMs?: number;
  /**
   * After this long without any answer from Cloudflare for a principal, one request goes out alone
   * first, so that Cloudflare's own count (its `Ratelimit` header) is known before a burst.
   * Null: never. Default 1,000 ms.
   */
  readonly probeAfterMs?: number | null;
}

export const DEFAULT_IN_FLIGHT_MS = 31_000;
const DEFAULT_PROBE_AFTER_MS = 1_000;
/** The wait suggested while a probe is out: its answer usually comes back within this. */
export const PROBE_RETRY_MS = 100;

/**
 * Per-principal sliding windows: never more than `capacity` requests in any `windowSeconds`,
 * across every replica sharing the store. A refusal is a result, not an error; errors mean the
 * store itself could not be consulted.
 *
 * An admitted request counts from its admission; when it is settled (its answer came back) it
 * counts from that moment instead, which is no earlier than when Cloudflare counted it. So the
 * window is exact at Cloudflare whatever the network latency.
 *
 * Cloudflare also counts requests Warden does not send (the dashboard, other tools). Each answer's
 * `Ratelimit` header says how many Cloudflare counted; less every request of this window that
 * Cloudflare may have counted by then, the rest are others' — at least that many (requests still
 * on their way hide some, so the largest such figure is kept until those could have left
 * Cloudflare's window). Warden then admits only while its own window plus the others stay within
 * Cloudflare's quota.
 */
export interface PrincipalWindows {
  take(principal: string, kind: BudgetKind, spec: BudgetSpec): Promise<WindowTake>;
  /**
   * Records what became of an admitted request. A ticket with a null id charges a request that
   * was sent without a take (the principal was not known yet, as when a new credential is verified).
   * A REST settlement's block also blocks GraphQL; a GraphQL one blocks GraphQL only.
   */
  settle(ticket: WindowTicket, spec: BudgetSpec, settlement: WindowSettlement): Promise<void>;
  /** Gives back the place of a request that was admitted but never sent, or of a reservation. */
  release(ticket: WindowTicket): Promise<void>;
  /**
   * Takes a place now for one request to be sent later (the delete that ends a tail session), so
   * that requests admitted meanwhile cannot take it. Admitted like a take (a block, the window,
   * Cloudflare's count refuse it), except that it is never held back for a probe: nothing is sent
   * yet. The place counts in the window from now until `holdMs` from now (then like a request
   * sent at that time), and is not a request out for the probe. `claim` turns it into the
   * admitted request when it is sent; `release` gives it back if it never is.
   */
  reserve(principal: string, kind: BudgetKind, spec: BudgetSpec, holdMs: number): Promise<WindowTake>;
  /**
   * The reserved place, as a request admitted now: never refused (its place was taken by
   * `reserve`; one whose hold ran out is charged again). Settle or release the returned ticket,
   * as for a take's.
   */
  claim(reservation: WindowTicket, spec: BudgetSpec): Promise<WindowTicket>;
  status(principal: string, kind: BudgetKind, spec: BudgetSpec): Promise<WindowStatus>;
  /** Resolves when the backing store answers; throws `unavailable` otherwise. */
  health(): Promise<void>;
  close(): Promise<void>;
}

/** Upstream `Retry-After` values beyond this are treated as this, so a bogus header cannot block forever. */
export const MAX_BLOCK_SECONDS = 3600;

const MAX_PRINCIPAL_LENGTH = 256;

/** The longest a reservation holds its place (an hour): a reservation is for one operation's end. */
export const MAX_HOLD_MS = 3_600_000;

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

/** Milliseconds of block for an upstream `Retry-After`, clamped; 0 means nothing to block. */
export function blockMs(retryAfterSeconds: number): number {
  if (!Number.isFinite(retryAfterSeconds) || retryAfterSeconds <= 0) return 0;
  return Math.ceil(Math.min(retryAfterSeconds, MAX_BLOCK_SECONDS) * 1000);
}

/**
 * Window entries stay this long past the window, so that an answer arriving late can still tell
 * which of Warden's requests Cloudflare may have counted.
 */
export const GRACE_MS = 5000;

/**
 * Cloudflare's answer as the windows use it: its quota for Warden's window (the policy's `q` when
 * its window is Warden's; else Warden's own capacity) and how long the requests it counted stay
 * in its window (its `w`, else Warden's window).
 */
export function cloudflareFigure(
  quota: CloudflareQuota,
  spec: BudgetSpec,
): { remaining: number; quota: number; holdMs: number } {
  const sameWindow = quota.windowSeconds === null || quota.windowSeconds === spec.windowSeconds;
  return {
    remaining: quota.remaining,
    quota: quota.quota !== null && sameWindow ? quota.quota : spec.capacity,
    holdMs: (quota.windowSeconds ?? spec.windowSeconds) * 1000,
  };
}

export function assertHold(holdMs: number): void {
  if (!Number.isFinite(holdMs) || holdMs < 0 || holdMs > MAX_HOLD_MS) {
    throw internal(`holdMs must be between 0 and ${MAX_HOLD_MS}, got ${String(holdMs)}`);
  }
}

export function windowOptions(options: WindowOptions): { inFlightMs: number; probeAfterMs: number | null } {
  const inFlightMs = options.inFlightMs ?? DEFAULT_IN_FLIGHT_MS;
  const probeAfterMs = options.probeAfterMs === undefined ? DEFAULT_PROBE_AFTER_MS : options.probeAfterMs;
  if (!Number.isFinite(inFlightMs) || inFlightMs < 0)
    throw internal('inFlightMs must be a non-negative number');
  if (probeAfterMs !== null && (!Number.isFinite(probeAfterMs) || probeAfterMs < 0)) {
    throw internal('probeAfterMs must be a non-negative number or null');
  }
  return { inFlightMs, probeAfterMs };
}
