import type { Redis } from 'ioredis';
import { WardenError } from '@warden/core';
import { createMemoryWindows, createRedisWindows } from '@warden/ratelimit';
import type { BudgetSpec, PrincipalWindows } from '@warden/ratelimit';

export type AddressTake =
  { readonly allowed: true } | { readonly allowed: false; readonly retryAfterSeconds: number };

/**
 * Attempts per client address at what anyone may do without signing in and what stores a row:
 * Dynamic Client Registration (a client) and the start of an SSO sign-in (a pending sign-in).
 * Without a limit anyone could fill the database. Every attempt counts (a refused one costs the
 * same work). The budget's sliding windows, in Redis when there is one (every replica shares
 * them), else in this process; `keyPrefix` keeps each limit apart. An attempt is never settled:
 * with no in-flight time it counts for exactly one window from its admission. The key may be
 * something else than an address: SSO domain proofs are counted per tenant.
 */
export function createAddressLimit(options: {
  readonly spec: BudgetSpec;
  readonly redis: Redis | null;
  readonly keyPrefix: string;
}) {
  const { spec } = options;
  const windowOptions = { inFlightMs: 0, probeAfterMs: null };
  const windows: PrincipalWindows = options.redis
    ? createRedisWindows({ ...windowOptions, redis: options.redis, keyPrefix: options.keyPrefix })
    : createMemoryWindows(windowOptions);

  /** Counts one attempt from `address`; throws `unavailable` when Redis cannot be asked (503). */
  async function take(address: string): Promise<AddressTake> {
    // The windows' REST kind stands for "requests" here; the key prefix keeps them apart.
    const taken = await windows.take(address, 'rest', spec);
    return taken.allowed
      ? { allowed: true }
      : { allowed: false, retryAfterSeconds: Math.ceil(taken.retryAfterMs / 1000) };
  }

  return {
    spec,
    take,
    /**
     * Counts one attempt from `key` and refuses one over the limit with `rate_limited` (429 and
     * `Retry-After`): "too many <what> (at most N in W s<scope>); retry after R s".
     */
    async admit(key: string, what: string, scope = ''): Promise<void> {
      const taken = await take(key);
      if (taken.allowed) return;
      throw new WardenError(
        'rate_limited',
        `too many ${what} (at most ${spec.capacity} in ${spec.windowSeconds} s${scope}); retry after ${taken.retryAfterSeconds} s`,
        { retryAfterSeconds: taken.retryAfterSeconds },
      );
    },
    close: () => windows.close(),
  };
}

export type AddressLimit = ReturnType<typeof createAddressLimit>;
