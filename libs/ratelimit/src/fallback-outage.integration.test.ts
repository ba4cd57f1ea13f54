/**
 * The budget's Redis fallback (`RATE_LIMIT_ON_REDIS_FAILURE=local`), from an outsider review of the
 * rate budget:
 * - a Cloudflare 429 settled while this replica's Redis connection is down is kept locally and,
 *   once Redis answers again, written there, so every other replica honours it too (before, the
 *   other replicas kept sending into Cloudflare's lockout);
 * - the local egress share is paced as the shared one is (before, one burst took it all at once).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { randomString } from '@warden/core';
import { freePort } from '@warden/testing';
import { fallbackReplicas } from './test-support/fallback-replicas.ts';
import type { UpstreamBudget } from './upstream-budget.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
const SPEC = { capacity: 100, windowSeconds: 300 };
const replicas = fallbackReplicas(REDIS_URL);
afterAll(() => replicas.close());

describe('a 429 settled during a Redis blip', () => {
  it('blocks the principal on the other replicas once Redis is back', async () => {
    const keyPrefix = `test:rl:${randomString(12)}`;
    const principal = `cf:user:blip-${randomString(6)}`;
    const a = await replicas.replica(keyPrefix);
    const b = await replicas.replica(keyPrefix);
    const request = { principal, tenantId: 'ten_a', kind: 'rest', spec: SPEC } as const;

    const sent = await a.budget.admit(request);
    if (!sent.allowed) throw new Error('refused');
    // Replica A's connection drops while Cloudflare answers 429 (Retry-After: 60).
    await replicas.down(a.redis);
    await a.budget.observe(sent, {
      status: 429,
      retryAfterSeconds: 60,
      rateLimit: null,
      rateLimitPolicy: null,
      errors: [{ code: 971 }],
    });
    await a.redis.connect();

    // A honours it (kept locally).
    expect(await a.budget.admit(request)).toMatchObject({ allowed: false, reason: 'blocked' });
    // B shares Redis with A and was never disconnected: within A's next tries of Redis (every
    // second), B is blocked too, for what is left of the 60 s (before: admitted, and sent into
    // Cloudflare's lockout).
    await expect
      .poll(
        async () => {
          const other = await b.budget.admit(request);
          if (other.allowed) await b.budget.release(other);
          return other.allowed ? 'admitted' : `${other.reason} ${Math.round(other.retryAfterMs / 1000)}`;
        },
        { timeout: 5_000, interval: 200 },
      )
      .toMatch(/^blocked (5[5-9]|60)$/);
  });
});

const LIMIT = 8; // paced in 4 slices: at most 2 per 250 ms

async function burst(budget: UpstreamBudget, n: number): Promise<number> {
  const results = await Promise.all(
    Array.from({ length: n }, () =>
      budget.admit({
        principal: null,
        tenantId: 'ten_a',
        kind: 'rest',
        spec: { capacity: 1200, windowSeconds: 300 },
      }),
    ),
  );
  return results.filter((r) => r.allowed).length;
}

describe('egress pacing while Redis is down', () => {
  it('paces the local egress share as the shared one is paced', async () => {
    // Redis up: the pool's window is paced, 2 of a burst of 8 go in the first 250 ms.
    const keyPrefix = `test:rl:${randomString(12)}`;
    const shared = replicas.build(await replicas.connect(), keyPrefix, LIMIT);
    expect(await burst(shared, LIMIT)).toBe(LIMIT / 4);

    // Redis down (nothing listens), one replica: the local share is the whole limit, paced the
    // same way (before: all 8 went at once).
    const local = replicas.build(
      await replicas.connect(`redis://127.0.0.1:${await freePort()}`),
      keyPrefix,
      LIMIT,
    );
    const admitted = await burst(local, LIMIT);
    expect(local.degraded).toBe(true);
    expect(admitted).toBeLessThanOrEqual(LIMIT / 4);
  });
});
