import { describe, expect, it } from 'vitest';
import { clientWindows } from './address-limit.ts';

const keys = (ip: string) => clientWindows(ip).map((w) => `${w.key} x${w.scale}`);

describe('clientWindows: the windows a client address counts in', () => {
  it('is an IPv4 address itself, however it is written', () => {
    expect(keys('203.0.113.7')).toEqual(['203.0.113.7 x1']);
    expect(keys('::ffff:203.0.113.7')).toEqual(['203.0.113.7 x1']);
    expect(keys('::ffff:cb00:7107')).toEqual(['203.0.113.7 x1']);
  });

  it('is the IPv4 client inside a 6to4, NAT64 (64:ff9b::/96) or Teredo address', () => {
    expect(keys('2002:cb00:7132::1')).toEqual(['203.0.113.50 x1']);
    expect(keys('2002:cb00:7132:ffff::9')).toEqual(['203.0.113.50 x1']);
    expect(keys('64:ff9b::198.18.0.1')).toEqual(['198.18.0.1 x1']);
    expect(keys('64:ff9b::c000:2c8')).toEqual(['192.0.2.200 x1']);
    // RFC 8215's local-use 64:ff9b:1::/48 puts the IPv4 where its operator chooses: an IPv6 client.
    expect(keys('64:ff9b:1:1::c000:2c8')).toEqual([
      '64:ff9b:1:1::/64 x1',
      '64:ff9b:1::/56 x4',
      '64:ff9b:1::/48 x16',
    ]);
    // RFC 4380's example: client 192.0.2.45 behind server 65.54.227.120.
    expect(keys('2001:0:4136:e378:8000:63bf:3fff:fdd2')).toEqual(['192.0.2.45 x1']);
  });

  it('is the /64, /56 (4x) and /48 (16x) of an IPv6 address, in one spelling', () => {
    expect(keys('2001:db8:1:2::1')).toEqual([
      '2001:db8:1:2::/64 x1',
      '2001:db8:1::/56 x4',
      '2001:db8:1::/48 x16',
    ]);
    expect(keys('2001:DB8:0001:02ff:ffff:ffff:ffff:ffff')).toEqual([
      '2001:db8:1:2ff::/64 x1',
      '2001:db8:1:200::/56 x4',
      '2001:db8:1::/48 x16',
    ]);
    expect(clientWindows('2001:db8:1:3::1')[0]).not.toEqual(clientWindows('2001:db8:1:2::1')[0]);
    expect(clientWindows('2001:db8:1:3::1')[2]).toEqual(clientWindows('2001:db8:1:2::1')[2]);
    expect(keys('::1')[0]).toBe('::/64 x1');
  });

  it('counts anything unparsable as itself', () => {
    expect(keys('')).toEqual([' x1']);
    expect(keys('not-an-address')).toEqual(['not-an-address x1']);
  });
});
