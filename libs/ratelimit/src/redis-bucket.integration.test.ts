import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomString } from '@warden/core';
import { budgetKeys, createBudgetRedisClient, createRedisRateBudget } from './redis-bucket.ts';
import type { RateBudget } from './rate-budget.ts';
import type { BurstJob, BurstMessage } from './take-burst.fixture.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
const LONG = 30 * 24 * 3600; // a window so long that refill during a test is negligible

describe('Redis rate budget', () => {
  const keyPrefix = `test:rl:${randomString(12)}`;
  const clients: Redis[] = [];
  let redis: Redis;
  let budget: RateBudget;
  let n = 0;
  const principal = () => `cf:user:${++n}-${randomString(6)}`;

  async function connect(): Promise<Redis> {
    const client = createBudgetRedisClient(REDIS_URL, { lazyConnect: true });
    await client.connect();
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    redis = await connect();
    budget = createRedisRateBudget({ redis, keyPrefix });
  });

  afterAll(async () => {
    const keys = await redis.keys(`{${keyPrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await Promise.all(clients.map((client) => client.quit()));
  });

  it('allows exactly the capacity among concurrent takes, then refuses with the refill wait', async () => {
    const p = principal();
    const spec = { capacity: 20, windowSeconds: LONG };
    const results = await Promise.all(Array.from({ length: 50 }, () => budget.take(p, spec)));
    expect(results.filter((r) => r.allowed)).toHaveLength(20);
    const perToken = (LONG * 1000) / 20;
    for (const r of results.filter((r) => !r.allowed)) {
      expect(r).toMatchObject({ allowed: false, remaining: 0, reason: 'exhausted' });
      if (!r.allowed) {
        expect(r.retryAfterMs).toBeGreaterThan(perToken - 1000);
        expect(r.retryAfterMs).toBeLessThanOrEqual(perToken);
      }
    }
    expect(new Set(results.filter((r) => r.allowed).map((r) => r.remaining)).size).toBe(20);
  });

  it('refills over time: 5 per second', async () => {
    const p = principal();
    const spec = { capacity: 5, windowSeconds: 1 };
    const burst = await Promise.all(Array.from({ length: 8 }, () => budget.take(p, spec)));
    expect(burst.filter((r) => r.allowed)).toHaveLength(5);
    const refused = burst.find((r) => !r.allowed);
    expect(refused && !refused.allowed && refused.retryAfterMs).toBeLessThanOrEqual(200);
    await sleep(450);
    const later = await Promise.all(Array.from({ length: 5 }, () => budget.take(p, spec)));
    const allowed = later.filter((r) => r.allowed).length;
    // About 2.25 tokens: some refill, but nowhere near the whole bucket (timers may run late).
    expect(allowed).toBeGreaterThanOrEqual(2);
    expect(allowed).toBeLessThanOrEqual(4);
  });

  it('keeps fractional tokens in the bucket', async () => {
    const p = principal();
    const spec = { capacity: 5, windowSeconds: 1 };
    await Promise.all(Array.from({ length: 5 }, () => budget.take(p, spec)));
    await sleep(300); // 1.5 tokens
    expect((await budget.take(p, spec)).allowed).toBe(true);
    const left = Number(await redis.hget(budgetKeys(keyPrefix, p).bucket, 'tokens'));
    expect(left).toBeGreaterThan(0.4);
    expect(left).toBeLessThan(1.5);
    expect(Number.isInteger(left)).toBe(false);
    // Whole-token storage would have dropped the fraction and refused here.
    await sleep(Math.max(0, (1 - left) * 200) + 30);
    expect((await budget.take(p, spec)).allowed).toBe(true);
  });

  it('honours a block on every replica until it expires, and never shortens it', async () => {
    const p = principal();
    const spec = { capacity: 100, windowSeconds: LONG };
    const other = createRedisRateBudget({ redis: await connect(), keyPrefix });
    await budget.block(p, 0.4);
    await budget.block(p, 0.1);
    const refused = await other.take(p, spec);
    expect(refused).toMatchObject({ allowed: false, remaining: 0, reason: 'blocked' });
    expect(!refused.allowed && refused.retryAfterMs).toBeGreaterThan(200);
    expect(!refused.allowed && refused.retryAfterMs).toBeLessThanOrEqual(400);
    const peeked = await other.peek(p, spec);
    expect(peeked.remaining).toBe(0);
    expect(peeked.blockedUntil?.getTime()).toBeGreaterThan(Date.now());
    expect((await budget.take(principal(), spec)).allowed).toBe(true);
    await sleep(450);
    expect(await other.take(p, spec)).toEqual({ allowed: true, remaining: 99 });
    expect(await other.peek(p, spec)).toEqual({ remaining: 99 });
  });

  it('peeks without consuming', async () => {
    const p = principal();
    const spec = { capacity: 2, windowSeconds: LONG };
    expect(await budget.peek(p, spec)).toEqual({ remaining: 2 });
    expect(await budget.peek(p, spec)).toEqual({ remaining: 2 });
    expect(await redis.exists(budgetKeys(keyPrefix, p).bucket)).toBe(0);
    await budget.take(p, spec);
    expect(await budget.peek(p, spec)).toEqual({ remaining: 1 });
    expect(await budget.peek(p, spec)).toEqual({ remaining: 1 });
  });

  it('charges multi-token takes in full or not at all', async () => {
    const p = principal();
    const spec = { capacity: 10, windowSeconds: LONG };
    expect(await budget.take(p, spec, 7)).toEqual({ allowed: true, remaining: 3 });
    expect(await budget.take(p, spec, 4)).toMatchObject({
      allowed: false,
      remaining: 3,
      reason: 'exhausted',
    });
    expect(await budget.take(p, spec, 3)).toEqual({ allowed: true, remaining: 0 });
  });

  it('lets idle keys expire once the bucket would be full again', async () => {
    const p = principal();
    const keys = budgetKeys(keyPrefix, p);
    expect(keys.bucket.startsWith(`{${keyPrefix}:${p}}`)).toBe(true);
    expect(keys.block.startsWith(`{${keyPrefix}:${p}}`)).toBe(true);
    await budget.take(p, { capacity: 5, windowSeconds: 1 });
    await budget.block(p, 0.2);
    const bucketTtl = await redis.pttl(keys.bucket);
    const blockTtl = await redis.pttl(keys.block);
    expect(bucketTtl).toBeGreaterThan(0);
    expect(bucketTtl).toBeLessThanOrEqual(200);
    expect(blockTtl).toBeGreaterThan(0);
    expect(blockTtl).toBeLessThanOrEqual(200);
    await sleep(300);
    expect(await redis.exists(keys.bucket, keys.block)).toBe(0);

    const q = principal();
    await budget.take(q, { capacity: 1200, windowSeconds: 300 }, 2);
    const ttl = await redis.pttl(budgetKeys(keyPrefix, q).bucket);
    expect(ttl).toBeGreaterThan(400);
    expect(ttl).toBeLessThanOrEqual(500);
  });

  it('reloads the script after the script cache is flushed', async () => {
    const p = principal();
    const spec = { capacity: 3, windowSeconds: LONG };
    await budget.take(p, spec);
    await redis.script('FLUSH');
    expect(await budget.take(p, spec)).toEqual({ allowed: true, remaining: 1 });
  });

  it('reports health', async () => {
    await expect(budget.health()).resolves.toBeUndefined();
  });

  it('four processes, 1,500 concurrent takes, capacity 1,200: exactly 1,200 allowed', async () => {
    const p = principal();
    const job: BurstJob = {
      redisUrl: REDIS_URL,
      keyPrefix,
      principal: p,
      spec: { capacity: 1200, windowSeconds: LONG },
      takes: 375,
    };
    const children: ChildProcess[] = Array.from({ length: 4 }, () =>
      fork(new URL('./take-burst.fixture.ts', import.meta.url), { execArgv: [], stdio: 'inherit' }),
    );
    try {
      const messages = children.map((child) => {
        const received: BurstMessage[] = [];
        const ready = new Promise<void>((resolve, reject) => {
          child.on('message', (m: BurstMessage) => {
            received.push(m);
            if (m.type === 'ready') resolve();
          });
          child.once('exit', (code) => reject(new Error(`fixture exited early with ${code}`)));
        });
        return { received, ready };
      });
      for (const child of children) child.send(job);
      await Promise.all(messages.map((m) => m.ready));
      const done = children.map((child) =>
        once(child, 'message').then(([m]) => m as Extract<BurstMessage, { type: 'done' }>),
      );
      for (const child of children) child.send('go');
      const results = await Promise.all(done);

      expect(results.flatMap((r) => r.errors)).toEqual([]);
      expect(results.reduce((sum, r) => sum + r.allowed, 0)).toBe(1200);
      const waits = results.flatMap((r) => r.refusedWaits);
      expect(waits).toHaveLength(300);
      for (const wait of waits) expect(wait).toBeGreaterThan(0);
      // Every process got a share, or the race was not a race.
      for (const r of results) expect(r.allowed + r.refusedWaits.length).toBe(375);
      expect(await budget.peek(p, job.spec)).toEqual({ remaining: 0 });
    } finally {
      for (const child of children) if (child.exitCode === null) child.kill();
    }
  });
});
