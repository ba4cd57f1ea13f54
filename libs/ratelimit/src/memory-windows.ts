import type { Clock } from '@warden/core';
import { systemClock } from '@warden/core';
import type { BudgetSpec } from './budget-spec.ts';
import { SortedLog } from './sorted-log.ts';
import { PROBE_RETRY_MS, assertPrincipal, assertSpec, figureHoldMs, windowOptions } from './windows.ts';
import type {
  BudgetKind,
  PrincipalWindows,
  WindowOptions,
  WindowRefusalReason,
  WindowSettlement,
  WindowStatus,
  WindowTake,
  WindowTicket,
} from './windows.ts';

export interface MemoryWindowsOptions extends WindowOptions {
  readonly clock?: Clock;
  /** How often idle windows are dropped. */
  readonly sweepIntervalMs?: number;
}

/** Cloudflare's figure while it was lower than Warden's own (see `window-scripts.ts`, which this mirrors). */
interface Hint {
  readonly remaining: number;
  /** Admission time of the request whose answer carried it: everything counted since may be new to Cloudflare. */
  readonly since: number;
  /** That request's own entry, which Cloudflare had already counted. */
  readonly id: string;
  readonly resetAt: number;
  /** After this, every request Cloudflare had counted has left its window. */
  readonly until: number;
}

interface KindState {
  readonly log: SortedLog;
  seq: number;
  blockedUntil: number;
  /** When Cloudflare last answered for this principal (any answer). */
  seenAt: number;
  /** Admission time of the latest request whose answer was applied: older answers are stale. */
  observedSince: number;
  hint: Hint | null;
}

interface Evaluation {
  readonly count: number;
  readonly own: number;
  readonly blockedUntil: number;
  readonly cloudflare: { left: number; resetAt: number } | null;
  readonly refusal: { reason: WindowRefusalReason; waitMs: number } | null;
}

/**
 * The windows in this process only: correct for a single node (no `REDIS_URL`), and the local
 * fallback when Redis is down. The TypeScript twin of `window-scripts.ts`, on an injectable clock.
 */
export function createMemoryWindows(options: MemoryWindowsOptions = {}): PrincipalWindows {
  const clock = options.clock ?? systemClock;
  const { inFlightMs, probeAfterMs } = windowOptions(options);
  const sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
  const states = new Map<string, KindState>();
  let lastSweepMs = clock.now().getTime();

  const key = (principal: string, kind: BudgetKind) => `${kind}\u0000${principal}`;

  function state(principal: string, kind: BudgetKind): KindState {
    const k = key(principal, kind);
    let s = states.get(k);
    if (!s) {
      s = { log: new SortedLog(), seq: 0, blockedUntil: 0, seenAt: 0, observedSince: -Infinity, hint: null };
      states.set(k, s);
    }
    return s;
  }

  function sweep(nowMs: number): void {
    if (nowMs - lastSweepMs < sweepIntervalMs) return;
    lastSweepMs = nowMs;
    for (const [k, s] of states) {
      // Entries can be pending up to inFlightMs ahead; the longest window is not known here, so an
      // entry-free state is dropped only once nothing else in it still matters.
      if (
        s.log.size === 0 &&
        s.blockedUntil <= nowMs &&
        (s.hint === null || s.hint.until <= nowMs) &&
        (probeAfterMs === null || nowMs - s.seenAt > probeAfterMs)
      ) {
        states.delete(k);
      }
    }
  }

  function evaluate(principal: string, kind: BudgetKind, spec: BudgetSpec, nowMs: number): Evaluation {
    const s = state(principal, kind);
    const windowMs = spec.windowSeconds * 1000;
    s.log.trim(nowMs - windowMs);
    const count = s.log.size;
    const restBlock = kind === 'graphql' ? (states.get(key(principal, 'rest'))?.blockedUntil ?? 0) : 0;
    const blockedUntil = Math.max(s.blockedUntil, restBlock);
    const own = spec.capacity - count;

    let cloudflare: Evaluation['cloudflare'] = null;
    const hint = s.hint;
    if (hint && nowMs < hint.until) {
      let used = s.log.countFrom(hint.since);
      if (s.log.scoreOf(hint.id) !== undefined) used -= 1;
      // At Cloudflare's reset at least one more request is free again: one goes out to learn how many.
      const allowance = hint.remaining + (nowMs >= hint.resetAt ? 1 : 0);
      cloudflare = { left: allowance - used, resetAt: hint.resetAt };
    }

    let refusal: Evaluation['refusal'] = null;
    if (blockedUntil > nowMs) {
      refusal = { reason: 'blocked', waitMs: blockedUntil - nowMs };
    } else if (own <= 0) {
      refusal = { reason: 'window', waitMs: s.log.scoreAt(count - spec.capacity)! + windowMs - nowMs };
    } else if (cloudflare && cloudflare.left <= 0) {
      const waitMs = nowMs < cloudflare.resetAt ? cloudflare.resetAt - nowMs : PROBE_RETRY_MS;
      refusal = { reason: 'cloudflare', waitMs };
    } else if (probeAfterMs !== null && nowMs - s.seenAt > probeAfterMs && s.log.countAbove(nowMs) > 0) {
      refusal = { reason: 'probe', waitMs: PROBE_RETRY_MS };
    }
    return { count, own, blockedUntil, cloudflare, refusal };
  }

  function remainingOf(e: Evaluation, nowMs: number): number {
    if (e.blockedUntil > nowMs) return 0;
    return Math.max(0, Math.min(e.own, e.cloudflare?.left ?? Infinity));
  }

  return {
    async take(principal: string, kind: BudgetKind, spec: BudgetSpec): Promise<WindowTake> {
      assertPrincipal(principal);
      assertSpec(spec);
      const nowMs = clock.now().getTime();
      sweep(nowMs);
      const e = evaluate(principal, kind, spec, nowMs);
      if (e.refusal) {
        return {
          allowed: false,
          reason: e.refusal.reason,
          retryAfterMs: Math.max(1, Math.ceil(e.refusal.waitMs)),
          remaining: remainingOf(e, nowMs),
        };
      }
      const s = state(principal, kind);
      const id = String(++s.seq);
      s.log.add(id, nowMs + inFlightMs);
      return {
        allowed: true,
        ticket: { principal, kind, id, admittedAtMs: nowMs },
        remaining: Math.max(0, remainingOf(e, nowMs) - 1),
      };
    },

    async settle(ticket: WindowTicket, spec: BudgetSpec, settlement: WindowSettlement): Promise<void> {
      assertPrincipal(ticket.principal);
      assertSpec(spec);
      const nowMs = clock.now().getTime();
      const s = state(ticket.principal, ticket.kind);
      let id = ticket.id;
      let since = ticket.admittedAtMs;
      if (id === null) {
        id = String(++s.seq);
        s.log.add(id, nowMs);
        since = nowMs - inFlightMs;
      } else {
        const score = s.log.scoreOf(id);
        if (score !== undefined && score > nowMs) s.log.add(id, nowMs);
      }
      if (settlement.answered) s.seenAt = Math.max(s.seenAt, nowMs);
      const quota = settlement.quota;
      if (quota && since >= s.observedSince) {
        s.observedSince = since;
        s.log.trim(nowMs - spec.windowSeconds * 1000);
        const ownLeft = spec.capacity - s.log.size;
        s.hint =
          quota.remaining < ownLeft
            ? {
                remaining: quota.remaining,
                since,
                id,
                resetAt: nowMs + quota.resetSeconds * 1000,
                until: nowMs + figureHoldMs(quota, spec),
              }
            : null;
      }
      if (settlement.blockMs > 0) s.blockedUntil = Math.max(s.blockedUntil, nowMs + settlement.blockMs);
    },

    async release(ticket: WindowTicket): Promise<void> {
      if (ticket.id !== null) states.get(key(ticket.principal, ticket.kind))?.log.remove(ticket.id);
    },

    async status(principal: string, kind: BudgetKind, spec: BudgetSpec): Promise<WindowStatus> {
      assertPrincipal(principal);
      assertSpec(spec);
      const nowMs = clock.now().getTime();
      const e = evaluate(principal, kind, spec, nowMs);
      const oldest = state(principal, kind).log.scoreAt(0);
      return {
        remaining: remainingOf(e, nowMs),
        used: e.count,
        nextRefillAt: oldest === undefined ? null : new Date(oldest + spec.windowSeconds * 1000),
        blockedUntil: e.blockedUntil > nowMs ? new Date(e.blockedUntil) : null,
        cloudflare: e.cloudflare
          ? {
              remaining: Math.max(0, e.cloudflare.left),
              resetAt: new Date(e.cloudflare.resetAt),
              binding: e.cloudflare.left < e.own,
            }
          : null,
      };
    },

    async health(): Promise<void> {},

    async close(): Promise<void> {
      states.clear();
    },
  };
}
