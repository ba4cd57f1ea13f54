/**
 * "A refusal is `rate_limited` with the wait (`Retry-After` on HTTP)": the wait named is when a
 * retry is admitted (from an outsider review of the budget). The windows used to check a block,
 * then Warden's window, then Cloudflare's figure, and the first that refused named the wait
 * alone; when a later check still refused once that wait was over, the retry was refused again
 * (another 429 for the agent). Now every check that refuses is asked and the longest wait names it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ManualClock, noopLogger, randomString } from '@warden/core';
import { createMemoryWindows } from './memory-windows.ts';
import { createRedisWindows } from './redis-windows.ts';
import { useTestRedis } from './redis-test.fixture.ts';
import { buildUpstreamBudget } from './upstream-budget.ts';
import type { PrincipalWindows } from './windows.ts';
import { verdict } from './test-support/verdict.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
const HOUR = 3600;
const REST = { capacity: 100, windowSeconds: HOUR };
const GRAPHQL = { capacity: 2, windowSeconds: HOUR };
const answered = { answered: true, quota: null, blockMs: 0 } as const;
/** A REST 429 with `Retry-After: 1`: Cloudflare did not count it, and it blocks GraphQL too. */
const rest429 = { answered: true, quota: null, blockMs: 1000, counted: false } as const;

async function fillGraphqlThenRest429(windows: PrincipalWindows, principal: string): Promise<void> {
  for (let i = 0; i < GRAPHQL.capacity; i++) {
    const take = await windows.take(principal, 'graphql', GRAPHQL);
    if (!take.allowed) throw new Error('refused while filling');
    await windows.settle(take.ticket, GRAPHQL, answered);
  }
  const rest = await windows.take(principal, 'rest', REST);
  if (!rest.allowed) throw new Error('refused');
  await windows.settle(rest.ticket, REST, rest429);
}

describe('Retry-After names when a retry is admitted', () => {
  it('memory: a REST 429 of one second on a GraphQL window full for an hour names the hour, after which a retry is admitted', async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    const windows = createMemoryWindows({ clock, probeAfterMs: null });
    await fillGraphqlThenRest429(windows, 'cf:user:gql');
    const first = await windows.take('cf:user:gql', 'graphql', GRAPHQL);
    expect(first).toMatchObject({ allowed: false });
    if (first.allowed) return;
    // Before the fix: reason 'blocked', retryAfterMs 1000; the window keeps the retry out for an hour.
    clock.advance(first.retryAfterMs);
    const retry = await windows.take('cf:user:gql', 'graphql', GRAPHQL);
    expect(verdict(retry)).toBe('admitted');
  });

  describe('Redis (the Lua script has the same order: block, window, Cloudflare)', () => {
    const test = useTestRedis(REDIS_URL);
    it('a REST 429 of one second on a GraphQL window full for an hour names the hour', async () => {
      const windows = createRedisWindows({
        redis: test.redis,
        keyPrefix: test.keyPrefix,
        probeAfterMs: null,
      });
      const principal = `cf:user:gql-${randomString(6)}`;
      await fillGraphqlThenRest429(windows, principal);
      const first = await windows.take(principal, 'graphql', GRAPHQL);
      expect(first).toMatchObject({ allowed: false });
      if (first.allowed) return;
      if (first.retryAfterMs <= 5000) {
        // Before the fix: 'blocked', about 1000 ms. A retry after it:
        await sleep(first.retryAfterMs + 50);
        const retry = await windows.take(principal, 'graphql', GRAPHQL);
        expect(verdict(retry)).toBe('admitted'); // observed: refused, reason 'window'
      } else {
        // Fixed: the wait is the window's (the oldest GraphQL query leaves it in an hour).
        expect(first.retryAfterMs).toBeGreaterThan((HOUR - 10) * 1000);
      }
    });
  });

  it('facade: a 429 charged to a principal after verification on a full REST window names when the window frees, after which a retry is admitted', async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    const spec = { capacity: 2, windowSeconds: HOUR };
    const budget = buildUpstreamBudget({
      redis: null,
      logger: noopLogger,
      onRedisFailure: 'refuse',
      replicas: 1,
      graphql: GRAPHQL,
      egressLimit: 0,
      egressPool: 'default',
      maxWaitMs: 0,
      maxQueue: 1,
      probeAfterMs: null,
      clock,
    });
    const principal = 'cf:user:verify';
    const ok = { status: 200, retryAfterSeconds: null, rateLimit: null, rateLimitPolicy: null };
    for (let i = 0; i < 2; i++) {
      const a = await budget.admit({ principal, tenantId: 't', kind: 'rest', spec });
      if (!a.allowed) throw new Error('refused');
      await budget.observe(a, ok);
    }
    // A new token of the same user is verified (principal not known yet): Cloudflare answers 429.
    const verify = await budget.admit({ principal: null, tenantId: 't', kind: 'rest', spec });
    if (!verify.allowed) throw new Error('refused');
    await budget.observe(verify, { ...ok, status: 429, retryAfterSeconds: 1 }, { principal });

    const first = await budget.admit({ principal, tenantId: 't', kind: 'rest', spec });
    expect(first.allowed).toBe(false);
    if (first.allowed) return;
    // Before the fix: "Cloudflare asked to slow down (429) for this Cloudflare user; retry in 1 s".
    clock.advance(first.retryAfterMs);
    const retry = await budget.admit({ principal, tenantId: 't', kind: 'rest', spec });
    // Before the fix: refused, "the Cloudflare API budget … (2 requests per 3600 s) is used up; retry in 3599 s".
    expect(verdict(retry)).toBe('admitted');
  });

  it("memory: with a tail's reservation held and Cloudflare's figure at zero, the wait named is when both free", async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    const windows = createMemoryWindows({ clock, probeAfterMs: null });
    const spec = { capacity: 3, windowSeconds: 60 };
    const p = 'cf:user:tail';
    const held = await windows.reserve(p, 'rest', spec, 120_000); // a tail's delete
    const a = await windows.take(p, 'rest', spec);
    const b = await windows.take(p, 'rest', spec);
    if (!held.allowed || !a.allowed || !b.allowed) throw new Error('refused');
    clock.advance(1000);
    await windows.settle(a.ticket, spec, answered);
    clock.advance(20_000);
    // Cloudflare: none of 3 left; it counted a, b and one request of the dashboard.
    await windows.settle(b.ticket, spec, {
      answered: true,
      blockMs: 0,
      quota: { name: 'default', remaining: 0, resetSeconds: 60, quota: 3, windowSeconds: 60 },
    });
    const first = await windows.take(p, 'rest', spec);
    expect(first.allowed).toBe(false);
    if (first.allowed) return;
    // Before: 40 s (when a leaves Warden's window), after which Cloudflare's figure refused for 20 s more.
    clock.advance(first.retryAfterMs);
    const retry = await windows.take(p, 'rest', spec);
    expect(verdict(retry)).toBe('admitted');
  });
});
