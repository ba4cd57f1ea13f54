import { describe, expect, it } from 'vitest';
import { ManualClock, WardenError, unavailable } from '@warden/core';
import type { Logger } from '@warden/core';
import { createFallbackRateBudget } from './fallback-bucket.ts';
import { createMemoryRateBudget } from './memory-bucket.ts';
import type { RateBudget } from './rate-budget.ts';

const P = 'cf:user:abc';
const SPEC = { capacity: 10, windowSeconds: 60 };

function recordingLogger() {
  const lines: Array<{ level: string; obj: object; msg?: string }> = [];
  const logger: Logger = {
    debug: (obj, msg) => lines.push({ level: 'debug', obj, msg }),
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
    child: () => logger,
  };
  return { logger, lines };
}

/** A stand-in for the Redis budget whose store can be switched off (the real one is tested against Redis). */
function switchablePrimary(clock: ManualClock) {
  const inner = createMemoryRateBudget({ clock });
  const state = { down: false, calls: 0 };
  const gate = () => {
    state.calls++;
    if (state.down) throw unavailable('redis', new Error('connect ECONNREFUSED 127.0.0.1:1'));
  };
  const budget: RateBudget = {
    take: async (principal, spec, cost) => (gate(), inner.take(principal, spec, cost)),
    block: async (principal, seconds) => (gate(), inner.block(principal, seconds)),
    peek: async (principal, spec) => (gate(), inner.peek(principal, spec)),
    health: async () => gate(),
    close: async () => {},
  };
  return { budget, state };
}

function setup(fallback?: { replicas: number }) {
  const clock = new ManualClock();
  const primary = switchablePrimary(clock);
  const { logger, lines } = recordingLogger();
  const budget = createFallbackRateBudget(primary.budget, { logger, clock, probeIntervalMs: 1000, fallback });
  return { clock, primary, budget, lines };
}

async function code(promise: Promise<unknown>): Promise<string | undefined> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return error instanceof WardenError ? error.code : undefined;
}

describe('fallback rate budget', () => {
  it('passes through while the primary is up', async () => {
    const { budget, primary } = setup();
    expect(await budget.take(P, SPEC)).toEqual({ allowed: true, remaining: 9 });
    expect(await budget.peek(P, SPEC)).toEqual({ remaining: 9 });
    expect(primary.state.calls).toBe(2);
    expect(budget.degraded).toBe(false);
  });

  it('refuses with unavailable by default, logs once, and skips the primary until the next probe', async () => {
    const { budget, primary, clock, lines } = setup();
    primary.state.down = true;
    expect(await code(budget.take(P, SPEC))).toBe('unavailable');
    expect(budget.degraded).toBe(true);
    for (let i = 0; i < 5; i++) expect(await code(budget.take(P, SPEC))).toBe('unavailable');
    expect(await code(budget.peek(P, SPEC))).toBe('unavailable');
    expect(primary.state.calls).toBe(1);
    expect(lines.filter((l) => l.level === 'warn')).toHaveLength(1);
    expect(lines[0]?.obj).toMatchObject({ mode: 'refuse', cause: 'connect ECONNREFUSED 127.0.0.1:1' });

    clock.advance(1000);
    expect(await code(budget.take(P, SPEC))).toBe('unavailable');
    expect(primary.state.calls).toBe(2);

    primary.state.down = false;
    expect(await code(budget.take(P, SPEC))).toBe('unavailable');
    clock.advance(1000);
    expect(await budget.take(P, SPEC)).toEqual({ allowed: true, remaining: 9 });
    expect(budget.degraded).toBe(false);
    expect(lines.filter((l) => l.level === 'info')).toHaveLength(1);
  });

  it('falls back to a local bucket of capacity ÷ replicas, never unlimited', async () => {
    const { budget, primary, lines } = setup({ replicas: 4 });
    primary.state.down = true;
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await budget.take(P, SPEC));
    expect(results.filter((r) => r.allowed)).toHaveLength(2);
    expect(results[2]).toMatchObject({ allowed: false, reason: 'exhausted', retryAfterMs: 30_000 });
    expect(await budget.peek(P, SPEC)).toEqual({ remaining: 0 });
    expect(lines[0]).toMatchObject({ level: 'warn', obj: { mode: 'local', replicas: 4 } });
  });

  it('gives each replica at least one token when there are more replicas than capacity', async () => {
    const { budget, primary } = setup({ replicas: 50 });
    primary.state.down = true;
    expect((await budget.take(P, SPEC)).allowed).toBe(true);
    expect((await budget.take(P, SPEC)).allowed).toBe(false);
    expect((await budget.take(P, SPEC, 5)).allowed).toBe(false);
  });

  it('keeps blocks locally, so this replica honours a 429 that Redis could not record', async () => {
    const { budget, primary, clock } = setup();
    primary.state.down = true;
    await expect(budget.block(P, 30)).resolves.toBeUndefined();
    primary.state.down = false;
    clock.advance(1000);
    expect(await budget.take(P, SPEC)).toMatchObject({
      allowed: false,
      reason: 'blocked',
      retryAfterMs: 29_000,
    });
    expect((await budget.peek(P, SPEC)).blockedUntil).toEqual(new Date(clock.now().getTime() + 29_000));
    clock.advance(29_000);
    expect((await budget.take(P, SPEC)).allowed).toBe(true);
  });

  it('lets other errors through without tripping', async () => {
    const clock = new ManualClock();
    const { logger } = recordingLogger();
    const failing: RateBudget = {
      ...createMemoryRateBudget({ clock }),
      take: async () => {
        throw new WardenError('internal', 'bug');
      },
    };
    const budget = createFallbackRateBudget(failing, { logger, clock, fallback: { replicas: 2 } });
    expect(await code(budget.take(P, SPEC))).toBe('internal');
    expect(budget.degraded).toBe(false);
    expect(await code(budget.take(P, SPEC, 11))).toBe('internal');
  });

  it('reflects health and recovers through it', async () => {
    const { budget, primary } = setup();
    primary.state.down = true;
    expect(await code(budget.health())).toBe('unavailable');
    expect(budget.degraded).toBe(true);
    primary.state.down = false;
    await budget.health();
    expect(budget.degraded).toBe(false);
  });

  it('rejects a nonsensical replica count', () => {
    const clock = new ManualClock();
    const { logger } = recordingLogger();
    for (const replicas of [0, -1, 1.5]) {
      expect(() =>
        createFallbackRateBudget(switchablePrimary(clock).budget, { logger, fallback: { replicas } }),
      ).toThrow(/replicas/);
    }
  });
});
