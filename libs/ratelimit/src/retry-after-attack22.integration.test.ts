/**
 * attack22 — d8f3702 "a refusal names the longest wait". Outsider attacks:
 * - the composition every Redis deployment runs (buildUpstreamBudget with Redis, which wraps the
 *   Redis windows in createFallbackWindows, in 'refuse' and in 'local' mode);
 * - Lua (Redis) and in-memory windows answering the same sequences alike;
 * - boundaries: a retry exactly at the named wait is admitted, one ms before it is refused;
 * - a retry after the named wait meeting the probe (by design: held until the older request answers).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ManualClock, noopLogger, randomString } from '@warden/core';
import { createMemoryWindows } from './memory-windows.ts';
import { createRedisWindows } from './redis-windows.ts';
import { useTestRedis } from './redis-test.fixture.ts';
import { buildUpstreamBudget } from './upstream-budget.ts';
import { PROBE_RETRY_MS } from './windows.ts';
import type { PrincipalWindows, WindowTake } from './windows.ts';
import { verdict } from './test-support/verdict.ts';

const REDIS_URL = process.env.REDIS_URL ?? '';
const HOUR = 3600;
const REST = { capacity: 100, windowSeconds: HOUR };
const GRAPHQL = { capacity: 2, windowSeconds: HOUR };
const answered = { answered: true, quota: null, blockMs: 0 } as const;
const block = (ms: number) => ({ answered: true, quota: null, blockMs: ms, counted: false }) as const;

const test = useTestRedis(REDIS_URL);

describe('attack22: the budget every Redis deployment runs (createFallbackWindows over Redis)', () => {
  for (const mode of ['refuse', 'local'] as const) {
    it(`${mode}: a REST 429 of 1 s on a GraphQL window full for an hour names the hour`, async () => {
      const budget = buildUpstreamBudget({
        redis: test.redis,
        keyPrefix: test.keyPrefix,
        logger: noopLogger,
        onRedisFailure: mode,
        replicas: 2,
        graphql: GRAPHQL,
        egressLimit: 0,
        egressPool: `atk-${randomString(6)}`,
        maxWaitMs: 0,
        maxQueue: 1,
        probeAfterMs: null,
      });
      const principal = `cf:user:atk-${randomString(6)}`;
      const ok = { status: 200, retryAfterSeconds: null, rateLimit: null, rateLimitPolicy: null };
      for (let i = 0; i < GRAPHQL.capacity; i++) {
        const q = await budget.admit({ principal, tenantId: 't', kind: 'graphql', spec: REST });
        if (!q.allowed) throw new Error(`refused while filling: ${verdict(q)}`);
        await budget.observe(q, ok);
      }
      const r = await budget.admit({ principal, tenantId: 't', kind: 'rest', spec: REST });
      if (!r.allowed) throw new Error('refused');
      await budget.observe(r, { ...ok, status: 429, retryAfterSeconds: 1 });

      const first = await budget.admit({ principal, tenantId: 't', kind: 'graphql', spec: REST });
      expect(first.allowed).toBe(false);
      if (first.allowed) return;
      if (first.retryAfterMs <= 5000) {
        await sleep(first.retryAfterMs + 50);
        const retry = await budget.admit({ principal, tenantId: 't', kind: 'graphql', spec: REST });
        // Observed: the first refusal said 'blocked, retry in 1 s' and this retry is refused for ~3599 s.
        expect(`${verdict(first)} then ${verdict(retry)}`).toMatch(/then admitted$/);
      } else {
        expect(first.retryAfterMs).toBeGreaterThan((HOUR - 10) * 1000);
      }
      await budget.close();
    });
  }
});

/** A sequence run on both implementations; returns the refusal of the final take. */
type Scenario = (
  w: PrincipalWindows,
  p: string,
  advance: (ms: number) => Promise<void>,
) => Promise<WindowTake>;

const scenarios: Record<string, { run: Scenario; reason: string; approxMs: number }> = {
  'window full (3 per 4 s) under a 1.5 s REST block (graphql asks)': {
    reason: 'window',
    approxMs: 4000,
    run: async (w, p) => {
      const spec = { capacity: 3, windowSeconds: 4 };
      for (let i = 0; i < 3; i++) {
        const t = await w.take(p, 'graphql', spec);
        if (!t.allowed) throw new Error('refused');
        await w.settle(t.ticket, spec, answered);
      }
      const r = await w.take(p, 'rest', REST);
      if (!r.allowed) throw new Error('refused');
      await w.settle(r.ticket, REST, block(1500));
      return w.take(p, 'graphql', spec);
    },
  },
  'a 6 s block over a window full for 4 s': {
    reason: 'blocked',
    approxMs: 6000,
    run: async (w, p) => {
      const spec = { capacity: 2, windowSeconds: 4 };
      const a = await w.take(p, 'rest', spec);
      const b = await w.take(p, 'rest', spec);
      if (!a.allowed || !b.allowed) throw new Error('refused');
      await w.settle(a.ticket, spec, answered);
      await w.settle(b.ticket, spec, block(6000));
      const c = await w.take(p, 'rest', spec);
      if (!c.allowed) return c;
      return c;
    },
  },
  'graphql: its own 1 s block and a REST 3 s block': {
    reason: 'blocked',
    approxMs: 3000,
    run: async (w, p) => {
      const spec = { capacity: 10, windowSeconds: 60 };
      const g = await w.take(p, 'graphql', spec);
      const r = await w.take(p, 'rest', spec);
      if (!g.allowed || !r.allowed) throw new Error('refused');
      await w.settle(g.ticket, spec, block(1000));
      await w.settle(r.ticket, spec, block(3000));
      return w.take(p, 'graphql', spec);
    },
  },
  'rest is not blocked by a graphql 429': {
    reason: 'admitted',
    approxMs: 0,
    run: async (w, p) => {
      const spec = { capacity: 10, windowSeconds: 60 };
      const g = await w.take(p, 'graphql', spec);
      if (!g.allowed) throw new Error('refused');
      await w.settle(g.ticket, spec, block(3000));
      return w.take(p, 'rest', spec);
    },
  },
};

describe('attack22: Lua and memory agree, and a retry after the named wait is admitted', () => {
  for (const [name, s] of Object.entries(scenarios)) {
    it(`agree: ${name}`, async () => {
      const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
      const mem = createMemoryWindows({ clock, probeAfterMs: null });
      const red = createRedisWindows({ redis: test.redis, keyPrefix: test.keyPrefix, probeAfterMs: null });
      const p = `cf:user:agree-${randomString(6)}`;
      const m = await s.run(mem, p, async (ms) => clock.advance(ms));
      const r = await s.run(red, p, async (ms) => sleep(ms));
      const describeOf = (t: WindowTake) => (t.allowed ? 'admitted' : t.reason);
      expect(describeOf(m)).toBe(s.reason);
      expect(describeOf(r)).toBe(s.reason);
      if (!m.allowed && !r.allowed) {
        expect(Math.abs(m.retryAfterMs - s.approxMs)).toBeLessThanOrEqual(5);
        expect(Math.abs(r.retryAfterMs - s.approxMs)).toBeLessThanOrEqual(200);
        // Redis: a retry just after the named wait is admitted.
        await sleep(r.retryAfterMs + 20);
        const kind = name.startsWith('graphql') || name.startsWith('window') ? 'graphql' : 'rest';
        const spec = name.startsWith('window')
          ? { capacity: 3, windowSeconds: 4 }
          : name.startsWith('a 6')
            ? { capacity: 2, windowSeconds: 4 }
            : { capacity: 10, windowSeconds: 60 };
        expect(verdict(await red.take(p, kind, spec))).toBe('admitted');
        // Memory: one ms early is refused, exactly at the wait is admitted.
        clock.advance(m.retryAfterMs - 1);
        expect((await mem.take(p, kind, spec)).allowed).toBe(false);
        clock.advance(1);
        expect(verdict(await mem.take(p, kind, spec))).toBe('admitted');
      }
    });
  }

  it("agree: Cloudflare's figure at zero over a 2 s REST block and a window of 5 per 60 s", async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    const mem = createMemoryWindows({ clock, probeAfterMs: null });
    const red = createRedisWindows({ redis: test.redis, keyPrefix: test.keyPrefix, probeAfterMs: null });
    const p = `cf:user:cfq-${randomString(6)}`;
    const spec = { capacity: 5, windowSeconds: 60 };
    const run = async (w: PrincipalWindows) => {
      const a = await w.take(p, 'rest', spec);
      const b = await w.take(p, 'rest', spec);
      const c = await w.take(p, 'rest', spec); // still out
      if (!a.allowed || !b.allowed || !c.allowed) throw new Error('refused');
      await w.settle(b.ticket, spec, block(2000));
      await w.settle(a.ticket, spec, {
        answered: true,
        blockMs: 0,
        quota: { name: 'default', remaining: 0, resetSeconds: 30, quota: 5, windowSeconds: 60 },
      });
      return w.take(p, 'rest', spec);
    };
    const m = await run(mem);
    const r = await run(red);
    expect(m.allowed || r.allowed).toBe(false);
    if (m.allowed || r.allowed) return;
    expect(r.reason).toBe(m.reason);
    expect(Math.abs(r.retryAfterMs - m.retryAfterMs)).toBeLessThanOrEqual(200);
    expect(m.retryAfterMs).toBeGreaterThan(2000);
    clock.advance(m.retryAfterMs - 1);
    expect((await mem.take(p, 'rest', spec)).allowed).toBe(false);
    clock.advance(1);
    expect(verdict(await mem.take(p, 'rest', spec))).toBe('admitted');
  });

  // By design (F8): after a block nothing was answered for its length, so the first request after
  // it is a probe, and while an older request is still out the retry is held for a moment
  // (PROBE_RETRY_MS; `takeWindow` naps through it) until that request answers.
  it('memory: a retry after a 429 block, with an older request still out, meets the probe until that request answers', async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    const windows = createMemoryWindows({ clock, probeAfterMs: 1000 });
    const spec = { capacity: 10, windowSeconds: 60 };
    const p = 'cf:user:probe';
    // A first answer, so the probe lets a burst go.
    const warm = await windows.take(p, 'rest', spec);
    if (!warm.allowed) throw new Error('refused');
    await windows.settle(warm.ticket, spec, answered);
    const slow = await windows.take(p, 'rest', spec); // a slow request, still out
    const hit = await windows.take(p, 'rest', spec);
    if (!slow.allowed || !hit.allowed) throw new Error(`refused: ${verdict(slow)} ${verdict(hit)}`);
    await windows.settle(hit.ticket, spec, block(2000)); // 429, Retry-After: 2
    const first = await windows.take(p, 'rest', spec);
    expect(verdict(first)).toBe('refused (blocked, 2000 ms)');
    if (first.allowed) return;
    clock.advance(first.retryAfterMs);
    expect(verdict(await windows.take(p, 'rest', spec))).toBe(`refused (probe, ${PROBE_RETRY_MS} ms)`);
    await windows.settle(slow.ticket, spec, answered);
    expect(verdict(await windows.take(p, 'rest', spec))).toBe('admitted');
  });

  it('Redis: the same probe case agrees with memory', async () => {
    const windows = createRedisWindows({ redis: test.redis, keyPrefix: test.keyPrefix, probeAfterMs: 1000 });
    const spec = { capacity: 10, windowSeconds: 60 };
    const p = `cf:user:probe-${randomString(6)}`;
    const warm = await windows.take(p, 'rest', spec);
    if (!warm.allowed) throw new Error('refused');
    await windows.settle(warm.ticket, spec, answered);
    const slow = await windows.take(p, 'rest', spec);
    const hit = await windows.take(p, 'rest', spec);
    if (!slow.allowed || !hit.allowed) throw new Error(`refused: ${verdict(slow)} ${verdict(hit)}`);
    await windows.settle(hit.ticket, spec, block(2000));
    const first = await windows.take(p, 'rest', spec);
    expect(first).toMatchObject({ allowed: false, reason: 'blocked' });
    if (first.allowed) return;
    await sleep(first.retryAfterMs + 20);
    expect(await windows.take(p, 'rest', spec)).toMatchObject({ allowed: false, reason: 'probe' });
    await windows.settle(slow.ticket, spec, answered);
    expect(verdict(await windows.take(p, 'rest', spec))).toBe('admitted');
  });
});
