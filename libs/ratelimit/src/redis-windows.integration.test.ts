import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { randomString } from '@warden/core';
import { createRedisWindows, windowKeys } from './redis-windows.ts';
import { useTestRedis } from './redis-test.fixture.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
import type { BurstJob, BurstMessage } from './take-burst.fixture.ts';
import { windowSuite } from './windows-suite.fixture.ts';
import type { WindowHarness } from './windows-suite.fixture.ts';

describe('Redis windows', () => {
  const test = useTestRedis(REDIS_URL);
  const { keyPrefix } = test;
  let n = 0;

  const harness = (): WindowHarness => ({
    windows: (options = {}) =>
      createRedisWindows({ redis: test.redis, keyPrefix, probeAfterMs: null, ...options }),
    principal: () => `cf:user:${++n}-${randomString(6)}`,
    async seed(_windows, principal, kind, _spec, agesMs) {
      if (agesMs.length === 0) return;
      const redis = test.redis;
      const [seconds, micros] = await redis.time();
      const nowUs = Number(seconds) * 1_000_000 + Number(micros);
      const { log } = windowKeys(keyPrefix, principal, kind);
      const args = agesMs.flatMap((age, i) => [nowUs - age * 1000, `seed-${i}`]);
      await redis.zadd(log, ...args);
      await redis.pexpire(log, 600_000);
    },
    pass: (ms) => sleep(ms),
    // Redis time moves on between seeding and the take; half a second covers a loaded machine.
    edgeMs: 500,
    exact: false,
  });

  windowSuite(harness);

  it("keeps a principal's keys under one hash tag, expiring once idle", async () => {
    const h = harness();
    const windows = h.windows({ inFlightMs: 1000 });
    const p = h.principal();
    const spec = { capacity: 5, windowSeconds: 1 };
    const take = await windows.take(p, 'rest', spec);
    if (!take.allowed) throw new Error('take refused');
    const rest = windowKeys(keyPrefix, p, 'rest');
    const graphql = windowKeys(keyPrefix, p, 'graphql');
    const tag = `{${keyPrefix}:${p}}`;
    for (const key of [rest.log, rest.meta, graphql.log, graphql.meta])
      expect(key.startsWith(tag)).toBe(true);
    await windows.settle(take.ticket, spec, { answered: true, quota: null, blockMs: 0 });
    // Both expire once the in-flight time, the window and its grace (5 s) have passed.
    for (const key of [rest.log, rest.meta]) {
      const ttl = await test.redis.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(1000 + 1000 + 5000 + 2);
    }
  });

  it('reloads the script after the script cache is flushed', async () => {
    const h = harness();
    const windows = h.windows();
    const p = h.principal();
    const spec = { capacity: 3, windowSeconds: 3600 };
    await windows.take(p, 'rest', spec);
    await test.redis.script('FLUSH');
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: true, remaining: 1 });
  });

  it('four processes, 1,500 concurrent takes, capacity 1,200: exactly 1,200 allowed', async () => {
    const p = harness().principal();
    const job: BurstJob = {
      redisUrl: REDIS_URL,
      keyPrefix,
      principal: p,
      spec: { capacity: 1200, windowSeconds: 3600 },
      takes: 375,
    };
    const children: ChildProcess[] = Array.from({ length: 4 }, () =>
      fork(new URL('./take-burst.fixture.ts', import.meta.url), { execArgv: [], stdio: 'inherit' }),
    );
    try {
      const messages = children.map((child) => {
        const ready = new Promise<void>((resolve, reject) => {
          child.on('message', (m: BurstMessage) => {
            if (m.type === 'ready') resolve();
          });
          child.once('exit', (code) => reject(new Error(`fixture exited early with ${code}`)));
        });
        return { ready };
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
      expect(await test.redis.zcard(windowKeys(keyPrefix, p, 'rest').log)).toBe(1200);
    } finally {
      for (const child of children) if (child.exitCode === null) child.kill();
    }
  });
});
