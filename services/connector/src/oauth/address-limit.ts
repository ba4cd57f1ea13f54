import type { Redis } from 'ioredis';
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

  return {
    spec,
    /** Counts one attempt from `address`; throws `unavailable` when Redis cannot be asked (503). */
    async take(address: string): Promise<AddressTake> {
      // The windows' REST kind stands for "requests" here; the key prefix keeps them apart.
      const taken = await windows.take(address, 'rest', spec);
      return taken.allowed
        ? { allowed: true }
        : { allowed: false, retryAfterSeconds: Math.ceil(taken.retryAfterMs / 1000) };
    },
    close: () => windows.close(),
  };
}

export type AddressLimit = ReturnType<typeof createAddressLimit>;
