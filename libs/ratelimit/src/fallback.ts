import type { Clock, Logger } from '@warden/core';
import { WardenError, isWardenError, systemClock, unavailable } from '@warden/core';
import type { BudgetSpec } from './budget-spec.ts';
import type { EgressSlot, EgressStore } from './egress.ts';
import { createMemoryEgressStore } from './memory-egress.ts';
import { createMemoryWindows } from './memory-windows.ts';
import type { BudgetKind, PrincipalWindows, WindowOptions, WindowTake, WindowTicket } from './windows.ts';

export interface RedisBreakerOptions {
  readonly logger: Logger;
  /**
   * Unset (the default): while Redis is down every take throws `unavailable` (503).
   * Set: each replica uses local windows of capacity ÷ `replicas` (at least 1), so the replicas
   * together stay within the upstream budget — never unlimited.
   */
  readonly fallback?: { readonly replicas: number };
  /** While Redis is down, one request per interval tries it again; the rest skip it. Default 1,000 ms. */
  readonly probeIntervalMs?: number;
  readonly clock?: Clock;
}

/**
 * What the budget does when Redis is down, shared by the principal windows and the egress store
 * (one connection, one state). The first failure opens the breaker (logged once), so during an
 * outage requests do not each wait for a timeout; one request per `probeIntervalMs` tries Redis
 * again and closes it when Redis answers.
 */
export interface RedisBreaker {
  /** True while Redis is considered down (for `/readyz` and metrics). */
  readonly degraded: boolean;
  /** Replicas sharing the budget, when a local share is used while Redis is down; else null. */
  readonly replicas: number | null;
  /** How often Redis is tried again while it is down. */
  readonly probeIntervalMs: number;
  /** Runs `viaRedis` unless the breaker is open; on `unavailable`, `whenDown` decides. */
  guarded<T>(viaRedis: () => Promise<T>, whenDown: (error: unknown) => Promise<T>): Promise<T>;
  /** Throws the `unavailable` for refusing while Redis is down. */
  refuse(error: unknown): never;
  /** Runs a health check through the breaker's bookkeeping (it may close or open it). */
  check(health: () => Promise<void>): Promise<void>;
}

function isUnavailable(error: unknown): boolean {
  return isWardenError(error) && error.code === 'unavailable';
}

export function createRedisBreaker(options: RedisBreakerOptions): RedisBreaker {
  const clock = options.clock ?? systemClock;
  const { logger } = options;
  const probeIntervalMs = options.probeIntervalMs ?? 1_000;
  const replicas = options.fallback?.replicas ?? null;
  if (replicas !== null && (!Number.isSafeInteger(replicas) || replicas < 1)) {
    throw new WardenError(
      'internal',
      `rate budget fallback: replicas must be a whole number of at least 1, got ${replicas}`,
    );
  }
  let degraded = false;
  let degradedSinceMs = 0;
  let nextProbeMs = 0;
  let probing = false;
  let lastError: unknown;

  function wentDown(error: unknown): void {
    lastError = error;
    nextProbeMs = clock.now().getTime() + probeIntervalMs;
    if (degraded) return;
    degraded = true;
    degradedSinceMs = clock.now().getTime();
    const cause =
      error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
    logger.warn(
      replicas === null
        ? { cause, mode: 'refuse' }
        : { cause, mode: 'local', replicas, share: `capacity ÷ ${replicas}` },
      replicas === null
        ? 'rate budget: Redis unavailable, refusing upstream requests until it recovers'
        : 'rate budget: Redis unavailable, using local windows of capacity ÷ replicas until it recovers',
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

  return {
    get degraded() {
      return degraded;
    },
    replicas,
    probeIntervalMs,

    async guarded<T>(viaRedis: () => Promise<T>, whenDown: (error: unknown) => Promise<T>): Promise<T> {
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
    },

    refuse(error: unknown): never {
      throw unavailable('redis', isWardenError(error) ? error.cause : error);
    },

    async check(health: () => Promise<void>): Promise<void> {
      try {
        await health();
      } catch (error) {
        if (isUnavailable(error)) wentDown(error);
        throw error;
      }
      recovered();
    },
  };
}

const LOCAL = 'local:';

/** A share of `capacity` for one of `replicas`, at least 1. */
function share(capacity: number, replicas: number): number {
  return Math.max(1, Math.floor(capacity / replicas));
}

/**
 * The Redis windows behind the breaker. Tickets issued by the local windows carry a `local:` id,
 * so their settlement goes where they were taken. Blocks (upstream 429s) are also kept locally,
 * so this replica honours a 429 even when Redis could not record it, and a block Redis could not
 * record is written there once it answers again (tried every `probeIntervalMs`), so the other
 * replicas honour it too for what is left of it.
 */
export function createFallbackWindows(
  primary: PrincipalWindows,
  breaker: RedisBreaker,
  options: WindowOptions & { clock?: Clock } = {},
): PrincipalWindows {
  const clock = options.clock ?? systemClock;
  const local = createMemoryWindows(options);
  const replicas = breaker.replicas;
  const localSpec = (spec: BudgetSpec): BudgetSpec => ({
    capacity: share(spec.capacity, replicas ?? 1),
    windowSeconds: spec.windowSeconds,
  });
  const isLocal = (ticket: WindowTicket) => ticket.id !== null && ticket.id.startsWith(LOCAL);
  /** Blocks whose settlement did not reach Redis, by kind and principal, until they are written. */
  const unsent = new Map<string, { ticket: WindowTicket; spec: BudgetSpec; untilMs: number }>();
  let retry: NodeJS.Timeout | undefined;
  let closed = false;

  function keepUnsent(ticket: WindowTicket, spec: BudgetSpec, blockMs: number): void {
    const key = `${ticket.kind}\u0000${ticket.principal}`;
    const untilMs = clock.now().getTime() + blockMs;
    const known = unsent.get(key);
    if (!known || known.untilMs < untilMs) unsent.set(key, { ticket, spec, untilMs });
    scheduleReplay();
  }

  /**
   * Writes a block to Redis on its own: under an id no entry has and not counted, so it blocks
   * the principal and charges its window nothing (Cloudflare did not count a 429).
   */
  function writeBlock(ticket: WindowTicket, spec: BudgetSpec, blockMs: number): Promise<void> {
    return primary.settle({ ...ticket, id: null }, spec, {
      answered: false,
      quota: null,
      blockMs,
      counted: false,
    });
  }

  /** A block this replica learnt: written to Redis now, or once it answers again. */
  async function shareBlock(ticket: WindowTicket, spec: BudgetSpec, blockMs: number): Promise<void> {
    await breaker.guarded(
      () => writeBlock(ticket, spec, blockMs),
      async () => keepUnsent(ticket, spec, blockMs),
    );
  }

  function scheduleReplay(): void {
    if (closed || retry || unsent.size === 0) return;
    retry = setTimeout(() => {
      retry = undefined;
      void replay();
    }, breaker.probeIntervalMs);
    retry.unref();
  }

  /** Writes the blocks Redis missed, for what is left of each; those it still cannot take wait. */
  async function replay(): Promise<void> {
    for (const [key, block] of unsent) {
      const left = block.untilMs - clock.now().getTime();
      if (left > 0) {
        const written = await breaker.guarded(
          () => writeBlock(block.ticket, block.spec, left).then(() => true),
          async () => false,
        );
        if (!written) break;
      }
      if (unsent.get(key) === block) unsent.delete(key);
    }
    scheduleReplay();
  }
  const unwrap = (ticket: WindowTicket): WindowTicket => ({ ...ticket, id: ticket.id!.slice(LOCAL.length) });

  /**
   * A take or a reservation: Redis's, or while it is down a local share's (`local:` ids). A block
   * this replica holds refuses whatever Redis says (Redis may not have it yet), without taking a
   * place there: when Redis would refuse for longer (its window full for an hour behind a
   * one-second block, as its status says), its wait is the one named, so a retry after it is
   * admitted.
   */
  async function admit(
    principal: string,
    kind: BudgetKind,
    spec: BudgetSpec,
    via: (windows: PrincipalWindows, spec: BudgetSpec) => Promise<WindowTake>,
  ): Promise<WindowTake> {
    const blockedUntil = (await local.status(principal, kind, spec)).blockedUntil;
    if (blockedUntil) {
      const own: WindowTake = {
        allowed: false,
        reason: 'blocked',
        retryAfterMs: Math.max(1, blockedUntil.getTime() - clock.now().getTime()),
        remaining: 0,
      };
      return breaker.guarded(
        async () => {
          const shared = (await primary.status(principal, kind, spec)).refusal;
          return shared && shared.retryAfterMs > own.retryAfterMs
            ? { ...shared, allowed: false, remaining: 0 }
            : own;
        },
        async () => own,
      );
    }
    return breaker.guarded(
      () => via(primary, spec),
      async (error) => {
        if (replicas === null) breaker.refuse(error);
        const result = await via(local, localSpec(spec));
        return result.allowed
          ? { ...result, ticket: { ...result.ticket, id: LOCAL + result.ticket.id } }
          : result;
      },
    );
  }

  return {
    take: (principal, kind, spec) => admit(principal, kind, spec, (w, s) => w.take(principal, kind, s)),

    reserve: (principal, kind, spec, holdMs) =>
      admit(principal, kind, spec, (w, s) => w.reserve(principal, kind, s, holdMs)),

    async claim(reservation, spec): Promise<WindowTicket> {
      if (isLocal(reservation)) {
        const claimed = await local.claim(unwrap(reservation), localSpec(spec));
        return { ...claimed, id: LOCAL + claimed.id };
      }
      // Never refused: while Redis is down its reserved entry still counts there until it expires,
      // and the settlement (best effort, below) finds nothing to move.
      return breaker.guarded(
        () => primary.claim(reservation, spec),
        async () => reservation,
      );
    },

    async settle(ticket, spec, settlement): Promise<void> {
      if (isLocal(ticket)) {
        await local.settle(unwrap(ticket), localSpec(spec), settlement);
        // A 429 answered to a request of the local share blocks the other replicas too.
        if (settlement.blockMs > 0) await shareBlock(unwrap(ticket), spec, settlement.blockMs);
        return;
      }
      // The local copy of a block: an id no local entry has, so it moves nothing.
      if (settlement.blockMs > 0) {
        await local.settle({ ...ticket, id: '' }, localSpec(spec), {
          answered: false,
          quota: null,
          blockMs: settlement.blockMs,
          counted: false,
        });
      }
      // Best effort: the caller is already answering for an upstream response; failing it with a
      // 503 would help no one, and the entry still counts from its admission until it expires. A
      // block is written once Redis answers again.
      await breaker.guarded(
        () => primary.settle(ticket, spec, settlement),
        async () => {
          if (settlement.blockMs > 0) keepUnsent(ticket, spec, settlement.blockMs);
        },
      );
    },

    async release(ticket): Promise<void> {
      if (isLocal(ticket)) return local.release(unwrap(ticket));
      await breaker.guarded(
        () => primary.release(ticket),
        async () => {},
      );
    },

    async status(principal, kind, spec) {
      const mine = await local.status(principal, kind, localSpec(spec));
      if (mine.blockedUntil) return mine;
      return breaker.guarded(
        () => primary.status(principal, kind, spec),
        async (error) => (replicas === null ? breaker.refuse(error) : mine),
      );
    },

    health: () => breaker.check(() => primary.health()),

    async close(): Promise<void> {
      closed = true;
      clearTimeout(retry);
      await local.close();
      await primary.close();
    },
  };
}

/**
 * The Redis egress store behind the breaker; while Redis is down, a local window of limit ÷
 * replicas, paced as the shared one is (`slices`).
 */
export function createFallbackEgressStore(
  primary: EgressStore,
  breaker: RedisBreaker,
  options: { clock?: Clock; inFlightMs?: number; slices?: number } = {},
): EgressStore {
  const replicas = breaker.replicas;
  const local = createMemoryEgressStore({
    limit: share(primary.limit, replicas ?? 1),
    windowMs: primary.windowMs,
    ...options,
  });
  const isLocal = (slot: EgressSlot) => slot.id.startsWith(LOCAL);
  const unwrap = (slot: EgressSlot): EgressSlot => ({ ...slot, id: slot.id.slice(LOCAL.length) });

  return {
    limit: primary.limit,
    windowMs: primary.windowMs,

    take: (tenantId, want) =>
      breaker.guarded(
        () => primary.take(tenantId, want),
        async (error) => {
          if (replicas === null) breaker.refuse(error);
          const result = await local.take(tenantId, want);
          return { ...result, granted: result.granted.map((slot) => ({ ...slot, id: LOCAL + slot.id })) };
        },
      ),

    async settle(slot): Promise<void> {
      if (isLocal(slot)) return local.settle(unwrap(slot));
      await breaker.guarded(
        () => primary.settle(slot),
        async () => {},
      );
    },

    async release(slot): Promise<void> {
      if (isLocal(slot)) return local.release(unwrap(slot));
      await breaker.guarded(
        () => primary.release(slot),
        async () => {},
      );
    },

    health: () => breaker.check(() => primary.health()),

    async close(): Promise<void> {
      await local.close();
      await primary.close();
    },
  };
}
