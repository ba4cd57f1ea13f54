import type { Cluster, Redis } from 'ioredis';
import { WardenError } from '@warden/core';
import { EGRESS_SETTLE_SCRIPT, EGRESS_TAKE_SCRIPT } from './egress-scripts.ts';
import { egressStoreOptions } from './egress.ts';
import type { EgressSlot, EgressStore, EgressStoreOptions, EgressTake } from './egress.ts';
import { DEFAULT_KEY_PREFIX, quitClient, runCommand, runScript } from './redis-client.ts';

export interface RedisEgressStoreOptions extends EgressStoreOptions {
  readonly redis: Redis | Cluster;
  /** Keys are `{<keyPrefix>:egress:<pool>}:…`. Default `warden:rl`. */
  readonly keyPrefix?: string;
  /** Replicas with the same pool share one window: name it after the egress IP (or NAT gateway). */
  readonly pool?: string;
  readonly quitOnClose?: boolean;
}

export function egressKeys(keyPrefix: string, pool: string) {
  const tag = `{${keyPrefix}:egress:${pool}}`;
  return {
    log: `${tag}:log`,
    tenant: (tenantId: string) => `${tag}:t:${tenantId}`,
    waiting: `${tag}:waiting`,
    waitingCounts: `${tag}:waiting-counts`,
    meta: `${tag}:meta`,
  };
}

const US = 1000;

/** The egress window shared by every replica of a pool: one script per take. */
export function createRedisEgressStore(options: RedisEgressStoreOptions): EgressStore {
  const { redis } = options;
  const { limit, windowMs, inFlightMs, waitingMs, slices } = egressStoreOptions(options);
  const keys = egressKeys(options.keyPrefix ?? DEFAULT_KEY_PREFIX, options.pool ?? 'default');

  return {
    limit,
    windowMs,

    async take(tenantId: string, want: number): Promise<EgressTake> {
      const reply = await runScript(
        redis,
        EGRESS_TAKE_SCRIPT,
        [keys.log, keys.tenant(tenantId), keys.waiting, keys.waitingCounts, keys.meta],
        [
          limit,
          windowMs * US,
          tenantId,
          want,
          inFlightMs * US,
          waitingMs * US,
          Math.floor((windowMs * US) / slices),
          Math.ceil(limit / slices),
        ],
      );
      if (
        !Array.isArray(reply) ||
        typeof reply[0] !== 'number' ||
        !['', 'full', 'share'].includes(reply[1] as string) ||
        !reply.slice(2).every((id) => typeof id === 'string')
      ) {
        throw new WardenError('internal', 'egress budget: unexpected reply from the Redis script');
      }
      const [waitUs, reason, ...ids] = reply as [number, '' | 'full' | 'share', ...string[]];
      return {
        granted: ids.map((id) => ({ tenantId, id })),
        reason: reason === '' ? null : reason,
        waitMs: waitUs / US,
      };
    },

    async settle(slot: EgressSlot): Promise<void> {
      await runScript(redis, EGRESS_SETTLE_SCRIPT, [keys.log, keys.tenant(slot.tenantId)], [slot.id]);
    },

    async release(slot: EgressSlot): Promise<void> {
      await runCommand(() =>
        redis.multi().zrem(keys.log, slot.id).zrem(keys.tenant(slot.tenantId), slot.id).exec(),
      );
    },

    async health(): Promise<void> {
      await runCommand(() => redis.ping());
    },

    async close(): Promise<void> {
      if (options.quitOnClose) await quitClient(redis);
    },
  };
}
