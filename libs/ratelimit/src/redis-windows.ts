import type { Cluster, Redis } from 'ioredis';
import { WardenError } from '@warden/core';
import type { BudgetSpec } from './budget-spec.ts';
import { DEFAULT_KEY_PREFIX, quitClient, runCommand, runScript } from './redis-client.ts';
import { watchRedisRestarts } from './redis-restarts.ts';
import { WINDOW_CLAIM_SCRIPT, WINDOW_SETTLE_SCRIPT, WINDOW_TAKE_SCRIPT } from './window-scripts.ts';
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

export interface RedisWindowsOptions extends WindowOptions {
  readonly redis: Redis | Cluster;
  /** Keys are `{<keyPrefix>:<principal>}:<kind>:log`, `…:<kind>:meta` and `…:<kind>:held`. Default `warden:rl`. */
  readonly keyPrefix?: string;
  /** Quit the client on `close()`. Leave false when the client is shared with other code. */
  readonly quitOnClose?: boolean;
}

/** The keys of one principal's window of one kind; all of a principal's keys share a hash tag. */
export function windowKeys(
  keyPrefix: string,
  principal: string,
  kind: BudgetKind,
): { log: string; meta: string; held: string } {
  const tag = `{${keyPrefix}:${principal}}`;
  return { log: `${tag}:${kind}:log`, meta: `${tag}:${kind}:meta`, held: `${tag}:${kind}:held` };
}

const US = 1000;

type TakeReply = [
  allowed: number,
  remaining: number,
  waitUs: number,
  reason: string,
  nowUs: number,
  id: string,
  ...rest: number[],
];

function isTakeReply(value: unknown, length: number): value is TakeReply {
  return (
    Array.isArray(value) &&
    value.length === length &&
    typeof value[3] === 'string' &&
    typeof value[5] === 'string' &&
    value.every((v, i) => i === 3 || i === 5 || typeof v === 'number')
  );
}

function reasonOf(value: string): WindowRefusalReason {
  if (value === 'blocked' || value === 'window' || value === 'cloudflare' || value === 'probe') return value;
  throw new WardenError('internal', `rate budget: unknown refusal reason from the Redis script: ${value}`);
}

/**
 * The shared windows: one Lua script per take and per settlement, correct across any number of
 * replicas. Memory per principal and kind: one sorted-set entry per request in the window and its
 * five-second grace (at most the capacity plus what arrives in the grace, plus requests charged
 * after the fact) and a small hash; both expire once idle.
 */
export function createRedisWindows(options: RedisWindowsOptions): PrincipalWindows {
  const { redis } = options;
  const keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
  const { inFlightMs, probeAfterMs } = windowOptions(options);
  const restarts = watchRedisRestarts(redis);

  async function takeScript(
    principal: string,
    kind: BudgetKind,
    spec: BudgetSpec,
    mode: 'take' | 'reserve' | 'status',
    holdMs = 0,
  ): Promise<TakeReply> {
    const keys = windowKeys(keyPrefix, principal, kind);
    // A REST 429 blocks GraphQL too (the script reads the REST meta as KEYS[3]); R2 has its own.
    const blockedBy = kind === 'graphql' ? windowKeys(keyPrefix, principal, 'rest').meta : keys.meta;
    const restartedAtUs = await restarts.restartedAtUs();
    const reply = await runScript(
      redis,
      WINDOW_TAKE_SCRIPT,
      [keys.log, keys.meta, blockedBy, keys.held],
      [
        spec.capacity,
        spec.windowSeconds * 1000 * US,
        mode,
        Math.round(inFlightMs * US),
        probeAfterMs === null ? -1 : Math.round(probeAfterMs * US),
        PROBE_RETRY_MS * US,
        GRACE_MS * US,
        restartedAtUs,
        Math.round(holdMs * US),
      ],
    );
    if (!isTakeReply(reply, mode === 'status' ? 13 : 6)) {
      throw new WardenError('internal', 'rate budget: unexpected reply from the Redis window script');
    }
    return reply;
  }

  async function admit(
    principal: string,
    kind: BudgetKind,
    spec: BudgetSpec,
    mode: 'take' | 'reserve',
    holdMs = 0,
  ): Promise<WindowTake> {
    assertPrincipal(principal);
    assertSpec(spec);
    const [allowed, remaining, waitUs, reason, nowUs, id] = await takeScript(
      principal,
      kind,
      spec,
      mode,
      holdMs,
    );
    if (allowed === 1) {
      return { allowed: true, ticket: { principal, kind, id, admittedAtMs: nowUs / US }, remaining };
    }
    return {
      allowed: false,
      reason: reasonOf(reason),
      retryAfterMs: Math.max(1, Math.ceil(waitUs / US)),
      remaining,
    };
  }

  return {
    take: (principal, kind, spec) => admit(principal, kind, spec, 'take'),

    async reserve(principal, kind, spec, holdMs): Promise<WindowTake> {
      assertHold(holdMs);
      return admit(principal, kind, spec, 'reserve', holdMs);
    },

    async claim(reservation: WindowTicket, spec: BudgetSpec): Promise<WindowTicket> {
      assertPrincipal(reservation.principal);
      assertSpec(spec);
      const keys = windowKeys(keyPrefix, reservation.principal, reservation.kind);
      const reply = await runScript(
        redis,
        WINDOW_CLAIM_SCRIPT,
        [keys.log, keys.meta, keys.held],
        [reservation.id ?? '', Math.round(inFlightMs * US), spec.windowSeconds * 1000 * US, GRACE_MS * US],
      );
      if (!Array.isArray(reply) || typeof reply[0] !== 'number' || typeof reply[1] !== 'string') {
        throw new WardenError('internal', 'rate budget: unexpected reply from the Redis claim script');
      }
      return {
        principal: reservation.principal,
        kind: reservation.kind,
        id: reply[1],
        admittedAtMs: reply[0] / US,
      };
    },

    async settle(ticket: WindowTicket, spec: BudgetSpec, settlement: WindowSettlement): Promise<void> {
      assertPrincipal(ticket.principal);
      assertSpec(spec);
      const keys = windowKeys(keyPrefix, ticket.principal, ticket.kind);
      const figure = settlement.quota ? cloudflareFigure(settlement.quota, spec) : null;
      await runScript(
        redis,
        WINDOW_SETTLE_SCRIPT,
        [keys.log, keys.meta, keys.held],
        [
          ticket.id ?? '',
          Math.round(ticket.admittedAtMs * US),
          settlement.answered ? 1 : 0,
          figure ? figure.remaining : -1,
          figure ? figure.quota : 0,
          figure ? figure.holdMs * US : 0,
          Math.round(settlement.blockMs * US),
          spec.capacity,
          spec.windowSeconds * 1000 * US,
          Math.round(inFlightMs * US),
          GRACE_MS * US,
          settlement.counted === false ? 0 : 1,
        ],
      );
    },

    async release(ticket: WindowTicket): Promise<void> {
      if (ticket.id === null) return;
      const { log, held } = windowKeys(keyPrefix, ticket.principal, ticket.kind);
      const id = ticket.id;
      // One transaction: between two commands the probe would count one request out too few.
      await runCommand(() => redis.multi().zrem(log, id).zrem(held, id).exec());
    },

    async status(principal: string, kind: BudgetKind, spec: BudgetSpec): Promise<WindowStatus> {
      assertPrincipal(principal);
      assertSpec(spec);
      const reply = await takeScript(principal, kind, spec, 'status');
      const [, remaining, waitUs, , nowUs, , used, oldestUs, blockUs, hasCf, cfLeft, cfUntilUs, own] =
        reply as unknown as number[];
      const reason = reply[3];
      return {
        remaining: remaining!,
        used: used!,
        nextRefillAt: oldestUs! < 0 ? null : new Date(oldestUs! / US + spec.windowSeconds * 1000),
        blockedUntil: blockUs! > nowUs! ? new Date(blockUs! / US) : null,
        cloudflare:
          hasCf === 1
            ? { remaining: Math.max(0, cfLeft!), resetAt: new Date(cfUntilUs! / US), binding: cfLeft! < own! }
            : null,
        refusal:
          reason === ''
            ? null
            : { reason: reasonOf(reason), retryAfterMs: Math.max(1, Math.ceil(waitUs! / US)) },
      };
    },

    async health(): Promise<void> {
      await runCommand(() => redis.ping());
    },

    async close(): Promise<void> {
      restarts.close();
      if (options.quitOnClose) await quitClient(redis);
    },
  };
}
