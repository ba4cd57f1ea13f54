import { describe, expect, it } from 'vitest';
import { isWardenError } from '@warden/core';
import {
  DEFAULT_BLOCK_SECONDS,
  UNSPECIFIED_429_BLOCK_SECONDS,
  blockSecondsOf,
  cloudflarePrincipal,
  cloudflareRateLimited,
  countedByCloudflare,
} from './cloudflare-limits.ts';

const user = { tokenKind: 'user', userId: null, tokenId: null, accounts: [] } as const;

describe('whom Cloudflare counts', () => {
  it('is the user of a user token, its own id when it may not read its user, the account of an account-owned token', () => {
    expect(cloudflarePrincipal({ ...user, userId: 'u1', tokenId: 't1' })).toBe('cf:user:u1');
    expect(cloudflarePrincipal({ ...user, tokenId: 't1' })).toBe('cf:token:t1');
    expect(cloudflarePrincipal(user)).toBeNull();
    const owned = { tokenKind: 'account', userId: 'u1', tokenId: 't1' } as const;
    expect(cloudflarePrincipal({ ...owned, accounts: [{ id: 'a1' }, { id: 'a2' }] })).toBe('cf:account:a1');
    expect(cloudflarePrincipal({ ...owned, accounts: [] })).toBeNull();
  });
});

describe('what Cloudflare counts', () => {
  it('counts answers but 429s and routes it does not have', () => {
    expect(countedByCloudflare({ status: 200, retryAfterSeconds: null })).toBe(true);
    expect(countedByCloudflare({ status: 429, retryAfterSeconds: 3 })).toBe(false);
    expect(countedByCloudflare({ status: 404, retryAfterSeconds: null, errors: [{ code: 7000 }] })).toBe(
      false,
    );
    expect(countedByCloudflare({ status: 404, retryAfterSeconds: null, errors: [{ code: 7003 }] })).toBe(
      true,
    );
  });
});

describe('how long a 429 blocks, and what the code is told', () => {
  const cases = [
    { answer: { status: 429, retryAfterSeconds: 7, errors: [{ code: 971 }] }, seconds: 7 },
    {
      answer: { status: 429, retryAfterSeconds: null, errors: [{ code: 971 }] },
      seconds: DEFAULT_BLOCK_SECONDS,
    },
    {
      answer: { status: 429, retryAfterSeconds: null, errors: [{ code: 10100 }] },
      seconds: DEFAULT_BLOCK_SECONDS,
    },
    {
      answer: { status: 429, retryAfterSeconds: null, errors: [{ code: 10013 }] },
      seconds: UNSPECIFIED_429_BLOCK_SECONDS,
    },
    { answer: { status: 429, retryAfterSeconds: null }, seconds: UNSPECIFIED_429_BLOCK_SECONDS },
  ];

  it.each(cases)('blocks $seconds s for %j, and tells the code to wait that long', ({ answer, seconds }) => {
    expect(blockSecondsOf(answer)).toBe(seconds);
    const error = cloudflareRateLimited(answer, 'tail.worker');
    expect(isWardenError(error) && error.code).toBe('rate_limited');
    expect(error.message).toBe(`tail.worker: Cloudflare rate-limited this user; retry after ${seconds} s`);
    expect(error.details).toEqual({ retryAfterSeconds: seconds });
  });

  it('names no call when none is given', () => {
    expect(cloudflareRateLimited({ status: 429, retryAfterSeconds: 2 }).message).toBe(
      'Cloudflare rate-limited this user; retry after 2 s',
    );
  });
});
