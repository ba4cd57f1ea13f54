import { describe, expect, it } from 'vitest';
import { MAX_RESET_SECONDS, parseRateHeaders } from './rate-headers.ts';

describe("parsing Cloudflare's Ratelimit headers", () => {
  it.each([
    {
      name: "Cloudflare's documented example",
      rateLimit: '"default";r=50;t=30',
      policy: '"default";q=100;w=60',
      expected: { name: 'default', remaining: 50, resetSeconds: 30, quota: 100, windowSeconds: 60 },
    },
    {
      name: 'no policy header',
      rateLimit: '"default";r=0;t=300',
      policy: null,
      expected: { name: 'default', remaining: 0, resetSeconds: 300, quota: null, windowSeconds: null },
    },
    {
      name: 'a token for a name, spaces around members',
      rateLimit: '  default;r=7;t=2  ',
      policy: 'default;q=1200;w=300',
      expected: { name: 'default', remaining: 7, resetSeconds: 2, quota: 1200, windowSeconds: 300 },
    },
    {
      name: 'several limits: the fewest remaining wins, its own policy',
      rateLimit: '"default";r=900;t=200, "burst";r=3;t=1',
      policy: '"default";q=1200;w=300, "burst";q=10;w=1',
      expected: { name: 'burst', remaining: 3, resetSeconds: 1, quota: 10, windowSeconds: 1 },
    },
    {
      name: 'equal remaining: the later reset wins',
      rateLimit: '"a";r=3;t=1, "b";r=3;t=9',
      policy: null,
      expected: { name: 'b', remaining: 3, resetSeconds: 9, quota: null, windowSeconds: null },
    },
    {
      name: 'a policy of another name does not apply',
      rateLimit: '"default";r=5;t=5',
      policy: '"other";q=10;w=60',
      expected: { name: 'default', remaining: 5, resetSeconds: 5, quota: null, windowSeconds: null },
    },
    {
      name: 'a garbage policy is ignored, the limit kept',
      rateLimit: '"default";r=5;t=5',
      policy: '"default";q=;w',
      expected: { name: 'default', remaining: 5, resetSeconds: 5, quota: null, windowSeconds: null },
    },
    {
      name: 'an absurd reset is capped',
      rateLimit: '"default";r=1;t=999999999',
      policy: null,
      expected: {
        name: 'default',
        remaining: 1,
        resetSeconds: MAX_RESET_SECONDS,
        quota: null,
        windowSeconds: null,
      },
    },
    {
      name: 'unknown parameters are ignored',
      rateLimit: '"default";r=4;t=3;pk=:YWJj:',
      policy: null,
      expected: { name: 'default', remaining: 4, resetSeconds: 3, quota: null, windowSeconds: null },
    },
    {
      name: 'a bad member next to a good one',
      rateLimit: '"default";r=-1;t=3, "ok";r=2;t=3',
      policy: null,
      expected: { name: 'ok', remaining: 2, resetSeconds: 3, quota: null, windowSeconds: null },
    },
  ])('$name', ({ rateLimit, policy, expected }) => {
    expect(parseRateHeaders(rateLimit, policy)).toEqual(expected);
  });

  it.each([
    ['absent', null],
    ['empty', ''],
    ['not a structured field', '@@@'],
    ['unterminated string', '"default;r=1;t=1'],
    ['negative remaining', '"default";r=-1;t=30'],
    ['fractional remaining', '"default";r=1.5;t=30'],
    ['remaining as a string', '"default";r="5";t=30'],
    ['no reset', '"default";r=5'],
    ['no remaining', '"default";t=5'],
    ['an inner list', '("default");r=1;t=1'],
    ['a number for a name', '5;r=1;t=1'],
    ['old-style numbers', '50'],
  ])('says nothing for %s', (_name, header) => {
    expect(parseRateHeaders(header, '"default";q=100;w=60')).toBeNull();
  });
});
