import type { Redis } from 'ioredis';
import ipaddr from 'ipaddr.js';
import { WardenError } from '@warden/core';
import { createMemoryWindows, createRedisWindows } from '@warden/ratelimit';
import type { BudgetSpec, PrincipalWindows } from '@warden/ratelimit';

export type AddressTake =
  { readonly allowed: true } | { readonly allowed: false; readonly retryAfterSeconds: number };

/**
 * The network a client address counts under: an IPv4 address itself (IPv4-mapped IPv6 included,
 * `::ffff:203.0.113.7` → `203.0.113.7`), and for IPv6 its /64. One IPv6 subscriber or host is
 * routinely given a whole /64 (SLAAC, privacy addresses, a cloud VM's prefix), so counting per
 * address would have handed one client 2^64 separate allowances. Anything unparsable counts as
 * itself.
 */
export function clientNetwork(ip: string): string {
  if (!ipaddr.isValid(ip)) return ip;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  const bytes = address.toByteArray().fill(0, 8);
  return `${ipaddr.fromByteArray(bytes).toString()}/64`;
}

/**
 * Attempts per client address at what anyone may do without signing in and what stores a row:
 * Dynamic Client Registration (a client) and the start of an SSO sign-in (a pending sign-in).
 * Without a limit anyone could fill the database. Every attempt counts (a refused one costs the
 * same work). The budget's sliding windows, in Redis when there is one (every replica shares
 * them), else in this process; `keyPrefix` keeps each limit apart. An attempt is never settled:
 * with no in-flight time it counts for exactly one window from its admission. Addresses count
 * under their network (`keyOf: clientNetwork`). The key may be something else than an address:
 * SSO domain proofs are counted per tenant.
 */
export function createAddressLimit(options: {
  readonly spec: BudgetSpec;
  readonly redis: Redis | null;
  readonly keyPrefix: string;
  /** What a key counts under (`clientNetwork` for addresses); the key itself by default. */
  readonly keyOf?: (key: string) => string;
}) {
  const { spec } = options;
  const keyOf = options.keyOf ?? ((key: string) => key);
  const windowOptions = { inFlightMs: 0, probeAfterMs: null };
  const windows: PrincipalWindows = options.redis
    ? createRedisWindows({ ...windowOptions, redis: options.redis, keyPrefix: options.keyPrefix })
    : createMemoryWindows(windowOptions);

  /** Counts one attempt from `address` (under `keyOf`); throws `unavailable` when Redis cannot be asked (503). */
  async function take(address: string): Promise<AddressTake> {
    // The windows' REST kind stands for "requests" here; the key prefix keeps them apart.
    const taken = await windows.take(keyOf(address), 'rest', spec);
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
