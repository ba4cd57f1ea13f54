import { describe, expect, it } from 'vitest';
import { clientNetwork } from './address-limit.ts';

describe('clientNetwork: what a client address counts under', () => {
  it('is an IPv4 address itself, however it is written', () => {
    expect(clientNetwork('203.0.113.7')).toBe('203.0.113.7');
    expect(clientNetwork('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientNetwork('::ffff:cb00:7107')).toBe('203.0.113.7');
  });

  it('is the /64 of an IPv6 address, in one spelling', () => {
    expect(clientNetwork('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(clientNetwork('2001:DB8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(clientNetwork('::1')).toBe('::/64');
    expect(clientNetwork('fe80::1')).toBe('fe80::/64');
    expect(clientNetwork('2001:db8:1:3::1')).not.toBe(clientNetwork('2001:db8:1:2::1'));
  });

  it('counts anything unparsable as itself', () => {
    expect(clientNetwork('')).toBe('');
    expect(clientNetwork('not-an-address')).toBe('not-an-address');
  });
});
