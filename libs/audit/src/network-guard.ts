import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import { PRIVATE_ADDRESS_CODE, SinkDeliveryError } from './sink-errors.ts';

/**
 * Tenants choose where Warden sends their audit trail, so a sink must not become a way to
 * reach Warden's own network (cloud metadata endpoints, Postgres, Redis, admin ports).
 */
const PRIVATE = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE.addSubnet(network, prefix, 'ipv4');
}
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) need no rule: BlockList checks them against the IPv4 rules.
for (const [network, prefix] of [
  ['::', 127],
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  PRIVATE.addSubnet(network, prefix, 'ipv6');
}

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return PRIVATE.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** `host` as written in a URL or a config field: IPv6 literals may come in brackets. */
function bare(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** A literal private address or a name that always means this machine. */
export function isPrivateHost(host: string): boolean {
  const name = bare(host).toLowerCase().replace(/\.$/, '');
  return isPrivateAddress(name) || name === 'localhost' || name.endsWith('.localhost');
}

function privateAddressError(): SinkDeliveryError {
  return new SinkDeliveryError(`destination resolves to a private, loopback or link-local address`, {
    retryable: false,
  });
}

/** Node skips DNS for literal addresses, so the lookup hook alone would not catch them. */
export function assertPublicHost(host: string): void {
  if (isPrivateHost(host)) throw privateAddressError();
}

/**
 * A `lookup` for net/tls/http that refuses private answers. Checking at connect time, not
 * only when the config is saved, also stops a name that re-resolves to an internal address
 * later (DNS rebinding).
 */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, options, (error, address, family) => {
    if (error) {
      callback(error, address, family);
      return;
    }
    const addresses = typeof address === 'string' ? [address] : address.map((entry) => entry.address);
    if (addresses.some(isPrivateAddress)) {
      callback(Object.assign(privateAddressError(), { code: PRIVATE_ADDRESS_CODE }), address, family);
      return;
    }
    callback(null, address, family);
  });
};
