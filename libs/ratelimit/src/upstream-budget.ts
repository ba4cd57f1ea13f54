import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import type { Clock, Logger } from '@warden/core';
import { WardenError } from '@warden/core';
import { DEFAULT_GRAPHQL_BUDGET, DEFAULT_R2_BUDGET } from './budget-spec.ts';
import type { BudgetSpec } from './budget-spec.ts';
import { EGRESS_PACING_SLICES, createEgressLimiter } from './egress.ts';
import type { EgressLimiter, EgressSlot } from './egress.ts';
import { createFallbackEgressStore, createFallbackWindows, createRedisBreaker } from './fallback.ts';
import type { RedisBreaker } from './fallback.ts';
import { createMemoryEgressStore } from './memory-egress.ts';
import { createMemoryWindows } from './memory-windows.ts';
import { parseRateHeaders } from './rate-headers.ts';
import { createRedisEgressStore } from './redis-egress.ts';
import { createRedisWindows } from './redis-windows.ts';
import { blockSecondsOf, countedByCloudflare, whom } from './cloudflare-limits.ts';
import type { LimitedAnswer } from './cloudflare-limits.ts';
import { blockMs } from './windows.ts';
import type {
  BudgetKind,
  PrincipalWindows,
  WindowOptions,
  WindowRefusalReason,
  WindowStatus,
  WindowTicket,
} from './windows.ts';

/** Which budget refused: a principal's REST or GraphQL window, or the egress IP's. */
export type BudgetName = BudgetKind | 'egress';
export type RefusalReason = WindowRefusalReason | 'queue_timeout' | 'queue_full';

export interface AdmitRequest {
  /**
   * Whom Cloudflare counts the request against (`cloudflarePrincipal`). Null while it is not known
   * yet (a new credential being verified): only the egress budget applies then, and `observe`
   * charges the principal once it is known.
   */
  readonly principal: string | null;
  readonly tenantId: string;
  readonly kind: BudgetKind;
  /** The per-principal REST budget (`CLOUDFLARE_BUDGET`, or the tenant's own); GraphQL has its own. */
  readonly spec: BudgetSpec;
  /** Stops waiting when the caller gives up. */
  readonly signal?: AbortSignal;
  /**
   * A place `reserve` took for this request (same principal and kind): it is used instead of
   * asking the window again, so the request is admitted even if the window filled meanwhile.
   * The egress budget still applies; if it refuses, the reservation stays unused.
   */
  readonly reservation?: Reservation;
}

export interface ReserveRequest {
  readonly principal: string;
  readonly kind: BudgetKind;
  /** As for `admit`. */
  readonly spec: BudgetSpec;
  /** How long the place is held for the request to come (it still counts after, as a sent one). */
  readonly holdMs: number;
  readonly signal?: AbortSignal;
}

/**
 * A place in a principal's window taken ahead of a request (`reserve`), for `admit` to use once.
 * Holds no egress slot. Give it back with `release` if it is not used; releasing one `admit`
 * used does nothing.
 */
export interface Reservation {
  readonly allowed: true;
  readonly reserved: true;
  readonly principal: string;
  readonly kind: BudgetKind;
  readonly spec: BudgetSpec;
  readonly ticket: WindowTicket;
}

/** Permission to send one request; hand it back to `observe` (or `release` if it is not sent). */
export interface Admitted {
  readonly allowed: true;
  readonly principal: string | null;
  readonly kind: BudgetKind;
  /** The budget the request was admitted under. */
  readonly spec: BudgetSpec;
  readonly ticket: WindowTicket | null;
  readonly egress: EgressSlot | null;
}

export interface Refusal {
  readonly allowed: false;
  readonly budget: BudgetName;
  readonly reason: RefusalReason;
  readonly retryAfterMs: number;
  /** Says which budget refused and when to retry, for the caller's error. */
  readonly message: string;
}

/** The parts of an upstream response the budget learns from (a `CloudflareResponse` has them). */
export interface UpstreamAnswer extends LimitedAnswer {
  /** The raw `Ratelimit` header. */
  readonly rateLimit: string | null;
  /** The raw `Ratelimit-Policy` header. */
  readonly rateLimitPolicy: string | null;
}

export type BudgetEvent =
  | { readonly type: 'refused'; readonly budget: BudgetName; readonly reason: RefusalReason }
  | { readonly type: 'egress_wait'; readonly ms: number };

export interface BudgetView extends WindowStatus {
  readonly capacity: number;
  readonly windowSeconds: number;
}

/**
 * The one facade of the upstream path: every request Warden sends with a principal's credential
 * makes two calls, `admit` before and `observe` after (or `release` if it was never sent).
 */
export interface UpstreamBudget {
  admit(request: AdmitRequest): Promise<Admitted | Refusal>;
  /**
   * Takes a place in the principal's window now for a request to be sent later (the delete that
   * ends a tail session), so that requests admitted meanwhile cannot use it up. Waits like
   * `admit` for a window to free; never held back for a probe (nothing is sent). Pass it to
   * `admit` as `reservation` when the request goes, or `release` it.
   */
  reserve(request: ReserveRequest): Promise<Reservation | Refusal>;
  /**
   * After the response (`answer`), or after a request that went out but got no answer (null: a
   * timeout or a reset). Learns Cloudflare's own count from its headers, and a 429 blocks the
   * principal on every replica until its `Retry-After`. `principal` charges a request admitted
   * with a null principal, once verification has found it.
   */
  observe(admitted: Admitted, answer: UpstreamAnswer | null, options?: { principal?: string }): Promise<void>;
  /** Gives back an admission that was not sent, or a reservation that was not used. */
  release(admitted: Admitted | Reservation): Promise<void>;
  /** Every window of a principal (the API's, GraphQL's and the R2 data plane's), for display. */
  status(
    principal: string,
    spec: BudgetSpec,
  ): Promise<{ rest: BudgetView; graphql: BudgetView; r2: BudgetView }>;
  /** Refusals and egress queue waits, for metrics; returns the unsubscribe. */
  onEvent(listener: (event: BudgetEvent) => void): () => void;
  /** True while Redis is down and the budget refuses or runs on local shares. */
  readonly degraded: boolean;
  health(): Promise<void>;
  close(): Promise<void>;
}

export interface UpstreamBudgetOptions {
  readonly windows: PrincipalWindows;
  /** Null: no egress limit. */
  readonly egress?: EgressLimiter | null;
  /** Default 320/300. */
  readonly graphql?: BudgetSpec;
  /** R2 object requests per principal. Default 1200/300. */
  readonly r2?: BudgetSpec;
  /** The longest an admission waits for a window to free or for the egress queue. Default 250 ms. */
  readonly maxWaitMs?: number;
  readonly breaker?: RedisBreaker | null;
  readonly logger?: Logger;
}

function describe(
  budget: BudgetName,
  reason: RefusalReason,
  spec: BudgetSpec,
  principal: string | null,
  egressLimit: number,
): string {
  const who = principal === null ? 'this credential' : whom(principal);
  const api = budget === 'graphql' ? 'GraphQL' : budget === 'r2' ? 'R2' : 'API';
  switch (reason) {
    case 'window':
      return budget === 'graphql'
        ? `the Cloudflare GraphQL budget of ${who} (${spec.capacity} queries per ${spec.windowSeconds} s) is used up`
        : budget === 'r2'
          ? `the R2 object budget of ${who} (${spec.capacity} requests per ${spec.windowSeconds} s, CLOUDFLARE_R2_BUDGET) is used up`
          : `the Cloudflare API budget of ${who} (${spec.capacity} requests per ${spec.windowSeconds} s) is used up`;
    case 'cloudflare':
      return `Cloudflare reports the ${api} quota of ${who} as used up (the dashboard and other tools share it)`;
    case 'probe':
      return `waiting for Cloudflare to report the remaining ${api} quota of ${who}`;
    case 'blocked':
      return `Cloudflare asked to slow down (429) for ${who}`;
    case 'queue_timeout':
    case 'queue_full':
      return `Warden's egress budget (${egressLimit} requests per second from its IP address, shared by all tenants) is busy`;
  }
}

/** The error a caller raises for a refusal, so every refusal reads the same on the wire (429 + Retry-After). */
export function rateLimitedError(refusal: Refusal): WardenError {
  const retryAfterSeconds = Math.max(1, Math.ceil(refusal.retryAfterMs / 1000));
  return new WardenError('rate_limited', refusal.message, {
    retryAfterSeconds,
    budget: refusal.budget,
    reason: refusal.reason,
  });
}

export function createUpstreamBudget(options: UpstreamBudgetOptions): UpstreamBudget {
  const { windows } = options;
  const egress = options.egress ?? null;
  const graphql = options.graphql ?? DEFAULT_GRAPHQL_BUDGET;
  const r2 = options.r2 ?? DEFAULT_R2_BUDGET;
  const maxWaitMs = options.maxWaitMs ?? 250;
  const listeners = new Set<(event: BudgetEvent) => void>();
  // Admissions waiting on this replica for a principal's window, woken when a request of that
  // principal is settled here (a probe's answer); waiters on other replicas ask again later.
  const sleepers = new Map<string, Set<() => void>>();
  const sleeperKey = (principal: string, kind: BudgetKind) => `${kind}\u0000${principal}`;

  function wake(principal: string, kind: BudgetKind): void {
    const key = sleeperKey(principal, kind);
    const set = sleepers.get(key);
    if (!set) return;
    sleepers.delete(key);
    for (const resume of set) resume();
  }

  /** Sleeps `ms`, less if woken; rejects when the caller aborts. */
  async function nap(principal: string, kind: BudgetKind, ms: number, signal?: AbortSignal): Promise<void> {
    const key = sleeperKey(principal, kind);
    const woken = new AbortController();
    const resume = () => woken.abort();
    let set = sleepers.get(key);
    if (!set) {
      set = new Set();
      sleepers.set(key, set);
    }
    set.add(resume);
    try {
      await sleep(ms, undefined, { signal: signal ? AbortSignal.any([signal, woken.signal]) : woken.signal });
    } catch (error) {
      if (signal?.aborted) throw error;
    } finally {
      set.delete(resume);
      if (set.size === 0 && sleepers.get(key) === set) sleepers.delete(key);
    }
  }

  function emit(event: BudgetEvent): void {
    for (const listener of listeners) {
      try {
        listener(event);
      } catch (error) {
        options.logger?.warn({ err: error }, 'rate budget: an event listener failed');
      }
    }
  }

  function refuse(
    budget: BudgetName,
    reason: RefusalReason,
    retryAfterMs: number,
    spec: BudgetSpec,
    principal: string | null,
  ): Refusal {
    emit({ type: 'refused', budget, reason });
    const wait = Math.max(1, Math.ceil(retryAfterMs));
    const seconds = Math.max(1, Math.ceil(wait / 1000));
    const message = `${describe(budget, reason, spec, principal, egress?.limit ?? 0)}; retry in ${seconds} s`;
    return { allowed: false, budget, reason, retryAfterMs: wait, message };
  }

  async function takeWindow(
    request: { readonly kind: BudgetKind; readonly signal?: AbortSignal },
    principal: string,
    spec: BudgetSpec,
    deadline: number,
    holdMs: number | null = null,
  ): Promise<WindowTicket | Refusal> {
    for (;;) {
      const take =
        holdMs === null
          ? await windows.take(principal, request.kind, spec)
          : await windows.reserve(principal, request.kind, spec, holdMs);
      if (take.allowed) return take.ticket;
      const left = deadline - performance.now();
      // A window that frees within the wait (or a probe's answer) is worth waiting for; a block is not.
      if (take.reason === 'blocked' || take.retryAfterMs > left || request.signal?.aborted) {
        return refuse(request.kind, take.reason, take.retryAfterMs, spec, principal);
      }
      try {
        await nap(principal, request.kind, take.retryAfterMs, request.signal);
      } catch {
        return refuse(request.kind, take.reason, take.retryAfterMs, spec, principal);
      }
    }
  }

  const specOf = (kind: BudgetKind, rest: BudgetSpec) =>
    kind === 'graphql' ? graphql : kind === 'r2' ? r2 : rest;
  // Reservations `admit` used: each is used once, and releasing one used gives nothing back.
  const used = new WeakSet<Reservation>();

  return {
    async reserve(request: ReserveRequest): Promise<Reservation | Refusal> {
      const spec = specOf(request.kind, request.spec);
      const taken = await takeWindow(
        request,
        request.principal,
        spec,
        performance.now() + maxWaitMs,
        request.holdMs,
      );
      if ('allowed' in taken) return taken;
      return {
        allowed: true,
        reserved: true,
        principal: request.principal,
        kind: request.kind,
        spec,
        ticket: taken,
      };
    },

    async admit(request: AdmitRequest): Promise<Admitted | Refusal> {
      const deadline = performance.now() + maxWaitMs;
      const spec = specOf(request.kind, request.spec);
      const { reservation } = request;
      if (reservation) {
        if (used.has(reservation))
          throw new WardenError('internal', 'rate budget: a reservation was used twice');
        if (reservation.principal !== request.principal || reservation.kind !== request.kind) {
          throw new WardenError(
            'internal',
            'rate budget: a reservation was used for another principal or kind',
          );
        }
      }
      let ticket: WindowTicket | null = null;
      if (request.principal !== null && !reservation) {
        const taken = await takeWindow(request, request.principal, spec, deadline);
        if ('allowed' in taken) return taken;
        ticket = taken;
      }
      let slot: EgressSlot | null = null;
      if (egress) {
        const giveBack = () => (ticket ? windows.release(ticket).catch(() => {}) : undefined);
        let acquired;
        try {
          acquired = await egress.acquire(request.tenantId, {
            maxWaitMs: Math.max(0, deadline - performance.now()),
            ...(request.signal ? { signal: request.signal } : {}),
          });
        } catch (error) {
          await giveBack();
          throw error;
        }
        emit({ type: 'egress_wait', ms: acquired.waitedMs });
        if (!acquired.ok) {
          await giveBack();
          return refuse('egress', acquired.reason, acquired.retryAfterMs, spec, request.principal);
        }
        slot = acquired.slot;
      }
      if (reservation) {
        // Claimed once the request can go: an egress refusal above leaves the reservation unused.
        used.add(reservation);
        try {
          ticket = await windows.claim(reservation.ticket, reservation.spec);
        } catch (error) {
          used.delete(reservation);
          if (slot && egress) await egress.release(slot).catch(() => {});
          throw error;
        }
        return {
          allowed: true,
          principal: request.principal,
          kind: request.kind,
          spec: reservation.spec,
          ticket,
          egress: slot,
        };
      }
      return { allowed: true, principal: request.principal, kind: request.kind, spec, ticket, egress: slot };
    },

    async observe(admitted, answer, observeOptions = {}): Promise<void> {
      const work: Array<Promise<void>> = [];
      if (admitted.egress && egress) work.push(egress.settle(admitted.egress));
      const principal = admitted.principal ?? observeOptions.principal ?? null;
      if (principal !== null) {
        const ticket = admitted.ticket ?? { principal, kind: admitted.kind, id: null, admittedAtMs: 0 };
        const settled = windows.settle(ticket, admitted.spec, {
          answered: answer !== null,
          quota: answer ? parseRateHeaders(answer.rateLimit, answer.rateLimitPolicy) : null,
          blockMs: answer?.status === 429 ? blockMs(blockSecondsOf(answer)) : 0,
          // A request Cloudflare did not count gives its place back (a 429's block stays).
          counted: answer === null || countedByCloudflare(answer),
        });
        work.push(settled.then(() => wake(principal, admitted.kind)));
      }
      await Promise.all(work);
    },

    async release(admitted): Promise<void> {
      if ('reserved' in admitted) {
        if (used.has(admitted)) return;
        used.add(admitted);
        await windows.release(admitted.ticket);
        return;
      }
      await Promise.all([
        admitted.ticket ? windows.release(admitted.ticket) : undefined,
        admitted.egress && egress ? egress.release(admitted.egress) : undefined,
      ]);
    },

    async status(principal, spec) {
      const [rest, gql, objects] = await Promise.all([
        windows.status(principal, 'rest', spec),
        windows.status(principal, 'graphql', graphql),
        windows.status(principal, 'r2', r2),
      ]);
      return {
        rest: { ...rest, capacity: spec.capacity, windowSeconds: spec.windowSeconds },
        graphql: { ...gql, capacity: graphql.capacity, windowSeconds: graphql.windowSeconds },
        r2: { ...objects, capacity: r2.capacity, windowSeconds: r2.windowSeconds },
      };
    },

    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    get degraded() {
      return options.breaker?.degraded ?? false;
    },

    async health(): Promise<void> {
      await windows.health();
    },

    async close(): Promise<void> {
      listeners.clear();
      await egress?.close();
      await windows.close();
    },
  };
}

export interface BuildUpstreamBudgetOptions extends WindowOptions {
  /** Null: everything in this process (a single node). */
  readonly redis: Redis | Cluster | null;
  /** Prefix of every Redis key. Default `warden:rl`. */
  readonly keyPrefix?: string;
  readonly logger: Logger;
  /** While Redis is down: refuse (503), or local shares of capacity ÷ `replicas`. */
  readonly onRedisFailure: 'refuse' | 'local';
  readonly replicas: number;
  readonly graphql: BudgetSpec;
  readonly r2?: BudgetSpec;
  /** Requests per second from one egress IP; 0 = no egress limit. */
  readonly egressLimit: number;
  /** Replicas with the same pool share the egress limit. */
  readonly egressPool: string;
  readonly maxWaitMs: number;
  readonly maxQueue: number;
  readonly clock?: Clock;
}

/** The composition root's budget: Redis-backed (behind the breaker) or in-process. */
export function buildUpstreamBudget(options: BuildUpstreamBudgetOptions): UpstreamBudget {
  const windowOpts = {
    ...(options.inFlightMs !== undefined ? { inFlightMs: options.inFlightMs } : {}),
    ...(options.probeAfterMs !== undefined ? { probeAfterMs: options.probeAfterMs } : {}),
  };
  const clock = options.clock ? { clock: options.clock } : {};
  const egressOpts = {
    limit: options.egressLimit,
    slices: EGRESS_PACING_SLICES,
    ...(options.inFlightMs !== undefined ? { inFlightMs: options.inFlightMs } : {}),
  };
  if (!options.redis) {
    return createUpstreamBudget({
      windows: createMemoryWindows({ ...windowOpts, ...clock }),
      egress:
        options.egressLimit > 0
          ? createEgressLimiter({
              store: createMemoryEgressStore({ ...egressOpts, ...clock }),
              maxWaitMs: options.maxWaitMs,
              maxQueue: options.maxQueue,
            })
          : null,
      graphql: options.graphql,
      ...(options.r2 ? { r2: options.r2 } : {}),
      maxWaitMs: options.maxWaitMs,
      logger: options.logger,
    });
  }
  const breaker = createRedisBreaker({
    logger: options.logger,
    ...(options.onRedisFailure === 'local' ? { fallback: { replicas: options.replicas } } : {}),
    ...clock,
  });
  const shared = { redis: options.redis, ...(options.keyPrefix ? { keyPrefix: options.keyPrefix } : {}) };
  return createUpstreamBudget({
    windows: createFallbackWindows(createRedisWindows({ ...shared, ...windowOpts }), breaker, {
      ...windowOpts,
      ...clock,
    }),
    egress:
      options.egressLimit > 0
        ? createEgressLimiter({
            store: createFallbackEgressStore(
              createRedisEgressStore({ ...shared, ...egressOpts, pool: options.egressPool }),
              breaker,
              {
                ...clock,
                slices: EGRESS_PACING_SLICES,
                ...(options.inFlightMs !== undefined ? { inFlightMs: options.inFlightMs } : {}),
              },
            ),
            maxWaitMs: options.maxWaitMs,
            maxQueue: options.maxQueue,
          })
        : null,
    graphql: options.graphql,
    ...(options.r2 ? { r2: options.r2 } : {}),
    maxWaitMs: options.maxWaitMs,
    breaker,
    logger: options.logger,
  });
}
