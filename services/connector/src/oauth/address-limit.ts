import type { Redis } from 'ioredis';
import ipaddr from 'ipaddr.js';
import { WardenError } from '@warden/core';
import { createMemoryWindows, createRedisWindows } from '@warden/ratelimit';
import type { BudgetSpec, PrincipalWindows } from '@warden/ratelimit';

export type AddressTake =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      readonly retryAfterSeconds: number;
      /** "too many <what><scope> (at most N in W s); retry after R s", naming the window that refused. */
      readonly message: (what: string) => string;
    };

/** One window a client's attempt counts in: its key, and how many times the limit it allows. */
export interface ClientWindow {
  readonly key: string;
  readonly scale: number;
}

/** IPv6 blocks one subscriber is routinely given, each with its own ceiling (the limit times `scale`). */
const IPV6_BLOCKS: ReadonlyArray<{ readonly bits: number; readonly scale: number }> = [
  { bits: 64, scale: 1 },
  { bits: 56, scale: 4 },
  { bits: 48, scale: 16 },
];

/** NAT64's well-known prefix `64:ff9b::/96` (RFC 6052): its first 12 bytes. */
const NAT64_WELL_KNOWN = [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];

/** The IPv4 address an IPv6 address carries for its client (6to4, NAT64's well-known prefix, Teredo). */
function embeddedIpv4(address: ipaddr.IPv6): string | null {
  const b = address.toByteArray();
  // 64:ff9b::V4, a NAT64 or SIIT translator in front of Warden. Not ipaddr.js's `rfc6052` range,
  // which also takes RFC 8215's 64:ff9b:1::/48, where the operator picks where the IPv4 sits.
  if (NAT64_WELL_KNOWN.every((byte, i) => b[i] === byte)) return b.slice(12, 16).join('.');
  switch (address.range()) {
    case '6to4': // 2002:V4::/48 (RFC 3056)
      return b.slice(2, 6).join('.');
    case 'teredo': // 2001:0:server:flags:port:~client (RFC 4380)
      return b
        .slice(12, 16)
        .map((x) => x ^ 0xff)
        .join('.');
    default:
      return null;
  }
}

/**
 * The windows a client address counts in. An IPv4 client is its address, however written
 * (IPv4-mapped, and the IPv4 client inside a 6to4, NAT64 or Teredo address). An IPv6 client
 * counts in its /64, its /56 (4 times the limit) and its /48 (16 times): one host or subscriber
 * is routinely given a /64 and picks new addresses in it at will, and a /56 or /48 comes with a
 * home line or a free tunnel, so counting per address, or per /64 alone, would have handed one
 * client 2^64 (or 2^16) separate allowances. Anything unparsable counts as itself.
 */
export function clientWindows(ip: string): ClientWindow[] {
  if (!ipaddr.isValid(ip)) return [{ key: ip, scale: 1 }];
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return [{ key: address.toString(), scale: 1 }];
  const v6 = address as ipaddr.IPv6;
  const v4 = embeddedIpv4(v6);
  if (v4 !== null) return [{ key: v4, scale: 1 }];
  return IPV6_BLOCKS.map(({ bits, scale }) => {
    const bytes = v6.toByteArray().fill(0, bits / 8);
    return { key: `${ipaddr.fromByteArray(bytes).toString()}/${bits}`, scale };
  });
}

/**
 * Attempts per client address at what anyone may do without signing in and what stores a row:
 * Dynamic Client Registration (a client) and the start of an SSO sign-in (a pending sign-in).
 * Without a limit anyone could fill the database. The budget's sliding windows, in Redis when
 * there is one (every replica shares them), else in this process; `keyPrefix` keeps each limit
 * apart. An attempt is never settled: with no in-flight time it counts for exactly one window
 * from its admission. Addresses count in their networks' windows (`windowsOf: clientWindows`),
 * narrowest first: an attempt the narrowest refuses counts in no wider one, so a client at its
 * own limit does not use up its neighbours' share of the block. The key may be something else
 * than an address: SSO domain proofs are counted per tenant.
 */
export function createAddressLimit(options: {
  readonly spec: BudgetSpec;
  readonly redis: Redis | null;
  readonly keyPrefix: string;
  /** The windows a key counts in, narrowest first (`clientWindows` for addresses); the key itself by default. */
  readonly windowsOf?: (key: string) => readonly ClientWindow[];
  /** How a refusal names the window that refused (" from this address", " per organization"). */
  readonly scopeOf?: (window: ClientWindow) => string;
}) {
  const { spec } = options;
  const windowsOf = options.windowsOf ?? ((key: string) => [{ key, scale: 1 }]);
  const scopeOf = options.scopeOf ?? (() => '');
  const windowOptions = { inFlightMs: 0, probeAfterMs: null };
  const windows: PrincipalWindows = options.redis
    ? createRedisWindows({ ...windowOptions, redis: options.redis, keyPrefix: options.keyPrefix })
    : createMemoryWindows(windowOptions);

  /** Counts one attempt from `address` in its windows; throws `unavailable` when Redis cannot be asked (503). */
  async function take(address: string): Promise<AddressTake> {
    for (const window of windowsOf(address)) {
      const capacity = spec.capacity * window.scale;
      // The windows' REST kind stands for "requests" here; the key prefix keeps them apart.
      const taken = await windows.take(window.key, 'rest', { ...spec, capacity });
      if (taken.allowed) continue;
      const retryAfterSeconds = Math.ceil(taken.retryAfterMs / 1000);
      return {
        allowed: false,
        retryAfterSeconds,
        message: (what) =>
          `too many ${what}${scopeOf(window)} (at most ${capacity} in ${spec.windowSeconds} s); retry after ${retryAfterSeconds} s`,
      };
    }
    return { allowed: true };
  }

  return {
    spec,
    take,
    /** Counts one attempt from `key` and refuses one over the limit with `rate_limited` (429 and `Retry-After`). */
    async admit(key: string, what: string): Promise<void> {
      const taken = await take(key);
      if (taken.allowed) return;
      throw new WardenError('rate_limited', taken.message(what), {
        retryAfterSeconds: taken.retryAfterSeconds,
      });
    },
    close: () => windows.close(),
  };
}

/** How a refusal of a client address names its window: the address, or the IPv6 block that refused. */
export function clientScope(window: ClientWindow): string {
  return window.scale > 1 ? ` from the network ${window.key}` : ' from this address';
}

export type AddressLimit = ReturnType<typeof createAddressLimit>;
