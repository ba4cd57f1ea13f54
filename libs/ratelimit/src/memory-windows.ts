import type { Clock } from '@warden/core';
import { systemClock } from '@warden/core';
import type { BudgetSpec } from './budget-spec.ts';
import { SortedLog } from './sorted-log.ts';
import {
  GRACE_MS,
  PROBE_RETRY_MS,
  assertHold,
  assertPrincipal,
  assertSpec,
  cloudflareFigure,
  windowOptions,
} from './windows.ts';
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

/** What Cloudflare's answers said, as in `window-scripts.ts` (which this mirrors). */
interface Figure {
  /** Requests Cloudflare counted that are not Warden's (at least). */
  readonly others: number;
  /** Cloudflare's quota for the window. */
  readonly quota: number;
  readonly until: number;
}

interface KindState {
  readonly log: SortedLog;
  /** The log's reservations not yet claimed, scored when their hold ends (`reserve`). */
  readonly held: SortedLog;
  seq: number;
  blockedUntil: number;
  /** When Cloudflare last answered for this principal (any answer). */
  seenAt: number;
  figure: Figure | null;
}

interface Evaluation {
  readonly count: number;
  readonly skip: number;
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
      s = { log: new SortedLog(), held: new SortedLog(), seq: 0, blockedUntil: 0, seenAt: 0, figure: null };
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
        (s.figure === null || s.figure.until <= nowMs) &&
        (probeAfterMs === null || nowMs - s.seenAt > probeAfterMs)
      ) {
        states.delete(k);
      }
    }
  }

  function evaluate(
    principal: string,
    kind: BudgetKind,
    spec: BudgetSpec,
    nowMs: number,
    probing = true,
  ): Evaluation {
    const s = state(principal, kind);
    const windowMs = spec.windowSeconds * 1000;
    s.log.trim(nowMs - windowMs - GRACE_MS);
    // A reservation past its hold counts like any entry; only one still held is not a request out.
    s.held.trim(nowMs);
    const count = s.log.countAbove(nowMs - windowMs);
    // Entries before this index are out of the window, kept only for the grace period.
    const skip = s.log.size - count;
    const leaves = (index: number) => s.log.scoreAt(skip + index)! + windowMs - nowMs;
    const restBlock = kind === 'graphql' ? (states.get(key(principal, 'rest'))?.blockedUntil ?? 0) : 0;
    const blockedUntil = Math.max(s.blockedUntil, restBlock);
    const own = spec.capacity - count;

    const figure = s.figure && nowMs < s.figure.until ? s.figure : null;
    const cloudflare = figure ? { left: figure.quota - figure.others - count, resetAt: figure.until } : null;

    // Every check that refuses is asked, and the one that frees last names the refusal: a retry
    // after its wait meets none of them (a 1 s block over a window full for an hour says an hour).
    let refusal: Evaluation['refusal'] = null;
    const refuse = (reason: WindowRefusalReason, waitMs: number) => {
      if (!refusal || waitMs > refusal.waitMs) refusal = { reason, waitMs };
    };
    if (blockedUntil > nowMs) refuse('blocked', blockedUntil - nowMs);
    if (own <= 0) refuse('window', leaves(count - spec.capacity));
    if (figure && cloudflare && cloudflare.left <= 0) {
      // Until the others leave Cloudflare's window, or sooner once enough of Warden's own have.
      const need = count - (figure.quota - figure.others - 1);
      refuse(
        'cloudflare',
        need <= count ? Math.min(figure.until - nowMs, leaves(need - 1)) : figure.until - nowMs,
      );
    }
    // A probe holds a request back only when nothing refuses it already.
    if (!refusal && probing && probeAfterMs !== null && nowMs - s.seenAt > probeAfterMs) {
      // No recent answer from Cloudflare: one request goes alone, to learn its count before a burst.
      // Reservations are not requests out: nothing was sent for them.
      if (s.log.countAbove(nowMs) - s.held.countAbove(nowMs) > 0)
        refusal = { reason: 'probe', waitMs: PROBE_RETRY_MS };
      else {
        // Not while a request sent more than a window ago still counts here: Cloudflare may or
        // may not count it still, and its answer could not be read. Such requests leave soon.
        // (One admitted that long ago counts from at most its admission + in-flight time.)
        let waitMs = 0;
        for (const e of s.log.above(nowMs - windowMs)) {
          if (e.score > nowMs - windowMs + inFlightMs) break;
          if (e.admittedAt <= nowMs - windowMs) waitMs = Math.max(waitMs, e.score + windowMs - nowMs);
        }
        if (waitMs > 0) refusal = { reason: 'probe', waitMs };
      }
    }
    return { count, skip, own, blockedUntil, cloudflare, refusal };
  }

  function remainingOf(e: Evaluation, nowMs: number): number {
    if (e.blockedUntil > nowMs) return 0;
    return Math.max(0, Math.min(e.own, e.cloudflare?.left ?? Infinity));
  }

  /** A take (the place held for the in-flight time) or a reservation (held for `holdMs`). */
  function admit(
    principal: string,
    kind: BudgetKind,
    spec: BudgetSpec,
    reservation: { holdMs: number } | null,
  ): WindowTake {
    assertPrincipal(principal);
    assertSpec(spec);
    const nowMs = clock.now().getTime();
    sweep(nowMs);
    const e = evaluate(principal, kind, spec, nowMs, reservation === null);
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
    const score = nowMs + (reservation ? reservation.holdMs : inFlightMs);
    s.log.add(id, score, nowMs);
    if (reservation) s.held.add(id, score);
    return {
      allowed: true,
      ticket: { principal, kind, id, admittedAtMs: nowMs },
      remaining: Math.max(0, remainingOf(e, nowMs) - 1),
    };
  }

  return {
    async take(principal: string, kind: BudgetKind, spec: BudgetSpec): Promise<WindowTake> {
      return admit(principal, kind, spec, null);
    },

    async reserve(
      principal: string,
      kind: BudgetKind,
      spec: BudgetSpec,
      holdMs: number,
    ): Promise<WindowTake> {
      assertHold(holdMs);
      return admit(principal, kind, spec, { holdMs });
    },

    async claim(reservation: WindowTicket, spec: BudgetSpec): Promise<WindowTicket> {
      assertPrincipal(reservation.principal);
      assertSpec(spec);
      const nowMs = clock.now().getTime();
      const s = state(reservation.principal, reservation.kind);
      if (reservation.id !== null) {
        s.log.remove(reservation.id);
        s.held.remove(reservation.id);
      }
      // Sent now: in flight from now, like a fresh take, without asking the window again.
      const id = String(++s.seq);
      s.log.add(id, nowMs + inFlightMs, nowMs);
      return { principal: reservation.principal, kind: reservation.kind, id, admittedAtMs: nowMs };
    },

    async settle(ticket: WindowTicket, spec: BudgetSpec, settlement: WindowSettlement): Promise<void> {
      assertPrincipal(ticket.principal);
      assertSpec(spec);
      const nowMs = clock.now().getTime();
      const s = state(ticket.principal, ticket.kind);
      s.log.trim(nowMs - spec.windowSeconds * 1000 - GRACE_MS);
      let since = ticket.admittedAtMs;
      const counted = settlement.counted ?? true;
      if (ticket.id === null) {
        if (counted) s.log.add(String(++s.seq), nowMs);
        since = nowMs - inFlightMs;
      } else if (!counted) {
        s.log.remove(ticket.id);
        s.held.remove(ticket.id);
      } else {
        const score = s.log.scoreOf(ticket.id);
        if (score !== undefined && score > nowMs) s.log.add(ticket.id, nowMs);
      }
      if (settlement.answered) s.seenAt = Math.max(s.seenAt, nowMs);
      if (settlement.quota) {
        const { remaining, quota, holdMs } = cloudflareFigure(settlement.quota, spec);
        // Every request of this window Cloudflare may have counted when it answered; a reservation
        // still held was not sent, so Cloudflare cannot have counted it.
        s.held.trim(nowMs);
        const mine = s.log.countAbove(since - spec.windowSeconds * 1000) - s.held.countAbove(nowMs);
        const others = Math.max(0, quota - remaining - mine);
        let current = s.figure;
        if (!current || nowMs >= current.until || others >= current.others) {
          current = { others, quota, until: nowMs + holdMs };
        } else {
          current = { ...current, quota };
        }
        s.figure = current.others > 0 || quota < spec.capacity ? current : null;
      }
      if (settlement.blockMs > 0) s.blockedUntil = Math.max(s.blockedUntil, nowMs + settlement.blockMs);
    },

    async release(ticket: WindowTicket): Promise<void> {
      if (ticket.id === null) return;
      const s = states.get(key(ticket.principal, ticket.kind));
      s?.log.remove(ticket.id);
      s?.held.remove(ticket.id);
    },

    async status(principal: string, kind: BudgetKind, spec: BudgetSpec): Promise<WindowStatus> {
      assertPrincipal(principal);
      assertSpec(spec);
      const nowMs = clock.now().getTime();
      const e = evaluate(principal, kind, spec, nowMs);
      const oldest = e.count > 0 ? state(principal, kind).log.scoreAt(e.skip) : undefined;
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
        refusal: e.refusal
          ? { reason: e.refusal.reason, retryAfterMs: Math.max(1, Math.ceil(e.refusal.waitMs)) }
          : null,
      };
    },

    async health(): Promise<void> {},

    async close(): Promise<void> {
      states.clear();
    },
  };
}
