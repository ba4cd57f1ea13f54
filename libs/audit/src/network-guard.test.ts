import { describe, expect, it } from 'vitest';
import { isPrivateAddress, isPrivateHost, publicOnlyLookup } from './network-guard.ts';

describe('network guard', () => {
  it.each([
    '127.0.0.1',
    '10.0.0.5',
    '172.20.1.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '::1',
    '::',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    'fd00::1',
    'fe80::1',
    '64:ff9b::a00:1',
  ])('treats %s as private', (address) => {
    expect(isPrivateAddress(address)).toBe(true);
  });

  it.each(['203.0.113.7', '1.1.1.1', '2606:4700:4700::1111', 'example.com'])(
    'treats %s as public',
    (address) => {
      expect(isPrivateAddress(address)).toBe(false);
    },
  );

  it('catches loopback names and bracketed literals', () => {
    expect(isPrivateHost('localhost')).toBe(true);
    expect(isPrivateHost('LOCALHOST.')).toBe(true);
    expect(isPrivateHost('api.localhost')).toBe(true);
    expect(isPrivateHost('[::1]')).toBe(true);
    expect(isPrivateHost('siem.example.com')).toBe(false);
  });

  it('refuses names that resolve to private addresses at connect time', async () => {
    // localhost resolves through /etc/hosts, so this needs no network.
    const error = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
      publicOnlyLookup('localhost', { all: true }, (err) => resolve(err));
    });
    expect(error).toMatchObject({ code: 'EPRIVATEADDRESS', retryable: false });
  });
});
