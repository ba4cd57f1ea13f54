import { describe, expect, it } from 'vitest';
import { ManualClock, WardenError, unavailable } from '@warden/core';
import type { Logger } from '@warden/core';
import { createFallbackEgressStore, createFallbackWindows, createRedisBreaker } from './fallback.ts';
import { createMemoryEgressStore } from './memory-egress.ts';
import { createMemoryWindows } from './memory-windows.ts';
import type { EgressStore } from './egress.ts';
import type { PrincipalWindows } from './windows.ts';

const P = 'cf:user:abc';
const SPEC = { capacity: 10, windowSeconds: 60 };
const answered = { answered: true, quota: null, blockMs: 0 } as const;

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

/** Stand-ins for the Redis stores whose backend can be switched off (the real ones are tested against Redis). */
function switchable(clock: ManualClock) {
  const state = { down: false, calls: 0 };
  const gate = () => {
    state.calls++;
    if (state.down) throw unavailable('redis', new Error('connect ECONNREFUSED 127.0.0.1:1'));
  };
  const inner = createMemoryWindows({ clock, probeAfterMs: null });
  const windows: PrincipalWindows = {
    take: async (...args) => (gate(), inner.take(...args)),
    settle: async (...args) => (gate(), inner.settle(...args)),
    release: async (...args) => (gate(), inner.release(...args)),
    reserve: async (...args) => (gate(), inner.reserve(...args)),
    claim: async (...args) => (gate(), inner.claim(...args)),
    status: async (...args) => (gate(), inner.status(...args)),
    health: async () => gate(),
    close: async () => {},
  };
  const innerEgress = createMemoryEgressStore({ limit: 8, clock });
  const egress: EgressStore = {
    ...innerEgress,
    take: async (...args) => (gate(), innerEgress.take(...args)),
    health: async () => gate(),
  };
  return { windows, egress, state };
}

function setup(fallback?: { replicas: number }) {
  const clock = new ManualClock();
  const primary = switchable(clock);
  const { logger, lines } = recordingLogger();
  const breaker = createRedisBreaker({
    logger,
    clock,
    probeIntervalMs: 1000,
    ...(fallback ? { fallback } : {}),
  });
  const windows = createFallbackWindows(primary.windows, breaker, { clock, probeAfterMs: null });
  const egress = createFallbackEgressStore(primary.egress, breaker, { clock });
  return { clock, primary, breaker, windows, egress, lines };
}

async function code(promise: Promise<unknown>): Promise<string | undefined> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return error instanceof WardenError ? error.code : undefined;
}

describe('the budget while Redis is down', () => {
  it('passes through while Redis is up', async () => {
    const { windows, primary, breaker } = setup();
    expect(await windows.take(P, 'rest', SPEC)).toMatchObject({ allowed: true, remaining: 9 });
    expect(await windows.status(P, 'rest', SPEC)).toMatchObject({ remaining: 9 });
    expect(primary.state.calls).toBe(2);
    expect(breaker.degraded).toBe(false);
  });

  it('refuses with unavailable by default, logs once, and skips Redis until the next probe', async () => {
    const { windows, egress, primary, clock, lines, breaker } = setup();
    primary.state.down = true;
    expect(await code(windows.take(P, 'rest', SPEC))).toBe('unavailable');
    expect(breaker.degraded).toBe(true);
    for (let i = 0; i < 5; i++) expect(await code(windows.take(P, 'rest', SPEC))).toBe('unavailable');
    expect(await code(windows.status(P, 'rest', SPEC))).toBe('unavailable');
    expect(await code(egress.take('ten_a', 1))).toBe('unavailable');
    expect(primary.state.calls).toBe(1);
    expect(lines.filter((l) => l.level === 'warn')).toHaveLength(1);
    expect(lines[0]?.obj).toMatchObject({ mode: 'refuse', cause: 'connect ECONNREFUSED 127.0.0.1:1' });

    clock.advance(1000);
    expect(await code(windows.take(P, 'rest', SPEC))).toBe('unavailable');
    expect(primary.state.calls).toBe(2);

    primary.state.down = false;
    expect(await code(windows.take(P, 'rest', SPEC))).toBe('unavailable');
    clock.advance(1000);
    expect(await windows.take(P, 'rest', SPEC)).toMatchObject({ allowed: true, remaining: 9 });
    expect(breaker.degraded).toBe(false);
    expect(lines.filter((l) => l.level === 'info')).toHaveLength(1);
  });

  it('falls back to local windows of capacity ÷ replicas, never unlimited, and settles them locally', async () => {
    const { windows, egress, primary, lines } = setup({ replicas: 4 });
    primary.state.down = true;
    const takes = [];
    for (let i = 0; i < 4; i++) takes.push(await windows.take(P, 'rest', SPEC));
    expect(takes.filter((t) => t.allowed)).toHaveLength(2);
    expect(takes[2]).toMatchObject({ allowed: false, reason: 'window', retryAfterMs: 31_000 + 60_000 });
    const first = takes[0]!;
    if (!first.allowed) throw new Error('refused');
    expect(first.ticket.id).toMatch(/^local:/);
    await windows.settle(first.ticket, SPEC, answered);
    expect(await windows.take(P, 'rest', SPEC)).toMatchObject({ allowed: false, retryAfterMs: 60_000 });
    // The egress limit of 8 per second: 2 for each of 4 replicas.
    expect((await egress.take('ten_a', 5)).granted).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 'warn', obj: { mode: 'local', replicas: 4 } });
  });

  it('gives each replica at least one request when there are more replicas than capacity', async () => {
    const { windows, primary } = setup({ replicas: 50 });
    primary.state.down = true;
    expect((await windows.take(P, 'rest', SPEC)).allowed).toBe(true);
    expect((await windows.take(P, 'rest', SPEC)).allowed).toBe(false);
  });

  it('keeps blocks locally, so this replica honours a 429 that Redis could not record', async () => {
    const { windows, primary, clock } = setup();
    const take = await windows.take(P, 'rest', SPEC);
    if (!take.allowed) throw new Error('refused');
    primary.state.down = true;
    await expect(
      windows.settle(take.ticket, SPEC, { answered: true, quota: null, blockMs: 30_000 }),
    ).resolves.toBeUndefined();
    primary.state.down = false;
    clock.advance(1000);
    expect(await windows.take(P, 'graphql', SPEC)).toMatchObject({
      allowed: false,
      reason: 'blocked',
      retryAfterMs: 29_000,
    });
    expect((await windows.status(P, 'rest', SPEC)).blockedUntil).toEqual(
      new Date(clock.now().getTime() + 29_000),
    );
    clock.advance(29_000);
    expect((await windows.take(P, 'rest', SPEC)).allowed).toBe(true);
  });

  it('reserves locally while Redis is down, and claims a Redis reservation without refusing', async () => {
    const { windows, primary } = setup({ replicas: 4 });
    const onRedis = await windows.reserve(P, 'rest', SPEC, 10_000);
    if (!onRedis.allowed) throw new Error('refused');
    primary.state.down = true;
    // Redis cannot be asked: the entry there keeps counting until it expires; the request still goes.
    expect(await windows.claim(onRedis.ticket, SPEC)).toEqual(onRedis.ticket);
    const local = await windows.reserve(P, 'rest', SPEC, 10_000);
    if (!local.allowed) throw new Error('refused');
    expect(local.ticket.id).toMatch(/^local:/);
    const claimed = await windows.claim(local.ticket, SPEC);
    expect(claimed.id).toMatch(/^local:/);
    await windows.settle(claimed, SPEC, answered);
    expect(await windows.status(P, 'rest', SPEC)).toMatchObject({ used: 1, remaining: 1 });
  });

  it('lets other errors through without tripping', async () => {
    const clock = new ManualClock();
    const { logger } = recordingLogger();
    const breaker = createRedisBreaker({ logger, clock, fallback: { replicas: 2 } });
    const failing: PrincipalWindows = {
      ...createMemoryWindows({ clock }),
      take: async () => {
        throw new WardenError('internal', 'bug');
      },
    };
    const windows = createFallbackWindows(failing, breaker, { clock });
    expect(await code(windows.take(P, 'rest', SPEC))).toBe('internal');
    expect(breaker.degraded).toBe(false);
  });

  it('reflects health and recovers through it', async () => {
    const { windows, primary, breaker } = setup();
    primary.state.down = true;
    expect(await code(windows.health())).toBe('unavailable');
    expect(breaker.degraded).toBe(true);
    primary.state.down = false;
    await windows.health();
    expect(breaker.degraded).toBe(false);
  });

  it('rejects a nonsensical replica count', () => {
    const { logger } = recordingLogger();
    for (const replicas of [0, -1, 1.5]) {
      expect(() => createRedisBreaker({ logger, fallback: { replicas } })).toThrow(/replicas/);
    }
  });
});
