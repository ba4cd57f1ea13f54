/**
 * attack22b — ca2e30e: a block this replica holds still refuses, and an admission Redis granted
 * meanwhile is given back. Real Redis; the primary windows are the real Redis windows, wrapped only
 * to cut the connection at a chosen moment (a flap) or to count round trips.
 */
import { once } from 'node:events';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { noopLogger, randomString } from '@warden/core';
import { createFallbackWindows, createRedisBreaker } from './fallback.ts';
import { createBudgetRedisClient } from './redis-client.ts';
import { createRedisWindows, windowKeys } from './redis-windows.ts';
import type { PrincipalWindows, WindowTicket } from './windows.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
const SPEC = { capacity: 100, windowSeconds: 300 };
const clients: Redis[] = [];
const prefixes: string[] = [];
afterAll(async () => {
  const admin = await client();
  for (const prefix of prefixes) {
    const keys = await admin.keys(`{${prefix}:*`);
    if (keys.length > 0) await admin.del(...keys);
  }
  for (const c of clients) c.disconnect();
});

async function client(): Promise<Redis> {
  const redis = createBudgetRedisClient(REDIS_URL, { lazyConnect: true });
  redis.on('error', () => {});
  clients.push(redis);
  await redis.connect();
  return redis;
}

async function down(redis: Redis): Promise<void> {
  redis.disconnect();
  await once(redis, 'end');
}

/** A block held locally that Redis lost (a Redis restart or failover without persistence). */
async function locallyBlocked(fw: PrincipalWindows, admin: Redis, keyPrefix: string, principal: string) {
  const ticket: WindowTicket = { principal, kind: 'rest', id: null, admittedAtMs: 0 };
  await fw.settle(ticket, SPEC, { answered: true, quota: null, blockMs: 60_000, counted: false });
  await admin.hdel(windowKeys(keyPrefix, principal, 'rest').meta, 'block');
}

describe('attack22b: own block refuses, Redis admission given back', () => {
  it('Redis flaps between the take and its release: the admission Redis granted is not left charged', async () => {
    const keyPrefix = `test:rl:${randomString(12)}`;
    prefixes.push(keyPrefix);
    const admin = await client();
    const redis = await client();
    const primary = createRedisWindows({ redis, keyPrefix, probeAfterMs: null });
    let cut = false;
    let wasCut = false;
    // Redis drops right after whatever the locally blocked take asks it (a take, a status).
    const thenDrop =
      <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
      async (...args: A): Promise<R> => {
        const answer = await call(...args);
        if (cut) {
          cut = false;
          wasCut = true;
          await down(redis);
        }
        return answer;
      };
    const flaky: PrincipalWindows = {
      ...primary,
      take: thenDrop(primary.take),
      status: thenDrop(primary.status),
    };
    const breaker = createRedisBreaker({ logger: noopLogger, fallback: { replicas: 2 } });
    const fw = createFallbackWindows(flaky, breaker);
    const principal = `cf:user:flap-${randomString(6)}`;
    await locallyBlocked(fw, admin, keyPrefix, principal);
    cut = true;
    const answer = await fw.take(principal, 'rest', SPEC);
    expect(answer).toMatchObject({ allowed: false, reason: 'blocked' });
    if (wasCut) await redis.connect();
    // Nothing was sent to Cloudflare: the shared window must hold no entry for it.
    expect(await admin.zcard(windowKeys(keyPrefix, principal, 'rest').log)).toBe(0);
    await fw.close().catch(() => {});
  });

  it('a locally blocked replica hammered with requests does not take the shared window’s last place from another replica', async () => {
    const keyPrefix = `test:rl:${randomString(12)}`;
    prefixes.push(keyPrefix);
    const admin = await client();
    const redisA = await client();
    const redisB = await client();
    const fwA = createFallbackWindows(
      createRedisWindows({ redis: redisA, keyPrefix, probeAfterMs: null }),
      createRedisBreaker({ logger: noopLogger, fallback: { replicas: 2 } }),
    );
    const b = createRedisWindows({ redis: redisB, keyPrefix, probeAfterMs: null });
    const principal = `cf:user:hammer-${randomString(6)}`;
    await locallyBlocked(fwA, admin, keyPrefix, principal);
    // B has used 99 of 100 places: one is left, for B.
    for (let i = 0; i < SPEC.capacity - 1; i++) {
      expect((await b.take(principal, 'rest', SPEC)).allowed).toBe(true);
    }
    let refusedB = 0;
    let sentByA = 0;
    const hammer = (async () => {
      for (let round = 0; round < 40; round++) {
        const answers = await Promise.all(
          Array.from({ length: 10 }, () => fwA.take(principal, 'rest', SPEC)),
        );
        sentByA += answers.filter((x) => x.allowed).length;
      }
    })();
    const fromB = (async () => {
      for (let i = 0; i < 40; i++) {
        const t = await b.take(principal, 'rest', SPEC);
        if (t.allowed) await b.release(t.ticket);
        else refusedB++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    await Promise.all([hammer, fromB]);
    expect(sentByA).toBe(0);
    // A sends nothing (it is blocked), so B's last place is always there.
    expect(refusedB).toBe(0);
    await fwA.close().catch(() => {});
  });

  it('HELD?: a locally blocked replica answers with the longer wait, and leaves Redis’s window as it found it', async () => {
    const keyPrefix = `test:rl:${randomString(12)}`;
    prefixes.push(keyPrefix);
    const admin = await client();
    const redis = await client();
    const fw = createFallbackWindows(
      createRedisWindows({ redis, keyPrefix, probeAfterMs: null }),
      createRedisBreaker({ logger: noopLogger, fallback: { replicas: 2 } }),
    );
    const principal = `cf:user:held-${randomString(6)}`;
    await locallyBlocked(fw, admin, keyPrefix, principal);
    for (const r of [
      await fw.take(principal, 'rest', SPEC),
      await fw.reserve(principal, 'rest', SPEC, 5_000),
    ]) {
      expect(r).toMatchObject({ allowed: false, reason: 'blocked' });
    }
    const keys = windowKeys(keyPrefix, principal, 'rest');
    expect(await admin.zcard(keys.log)).toBe(0);
    expect(await admin.zcard(keys.held)).toBe(0);
    await fw.close().catch(() => {});
  });

  it('HELD?: a local-share 429 replayed to Redis neither shortens a longer block there nor charges a request', async () => {
    const keyPrefix = `test:rl:${randomString(12)}`;
    prefixes.push(keyPrefix);
    const admin = await client();
    const redisA = await client();
    const redisB = await client();
    const fwA = createFallbackWindows(
      createRedisWindows({ redis: redisA, keyPrefix, probeAfterMs: null }),
      createRedisBreaker({ logger: noopLogger, fallback: { replicas: 2 }, probeIntervalMs: 200 }),
    );
    const b = createRedisWindows({ redis: redisB, keyPrefix, probeAfterMs: null });
    const principal = `cf:user:longer-${randomString(6)}`;
    const keys = windowKeys(keyPrefix, principal, 'rest');
    const sent = await b.take(principal, 'rest', SPEC);
    await down(redisA);
    const local = await fwA.take(principal, 'rest', SPEC);
    expect(local.allowed).toBe(true);
    if (!local.allowed || !sent.allowed) return;
    // B learns a one-hour lockout meanwhile.
    await b.settle(sent.ticket, SPEC, { answered: true, quota: null, blockMs: 3_600_000, counted: false });
    const before = Number(await admin.hget(keys.meta, 'block'));
    await fwA.settle(local.ticket, SPEC, { answered: true, quota: null, blockMs: 2_000, counted: false });
    await redisA.connect();
    await new Promise((r) => setTimeout(r, 600));
    // A's next take probes Redis (and flushes what it kept) ...
    await fwA.take(principal, 'rest', SPEC);
    await new Promise((r) => setTimeout(r, 600));
    expect(Number(await admin.hget(keys.meta, 'block'))).toBe(before);
    expect(await admin.zcard(keys.log)).toBe(0);
    await fwA.close().catch(() => {});
  });
});
