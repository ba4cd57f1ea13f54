import { describe, expect, it } from 'vitest';
import { ManualClock, WardenError } from '@warden/core';
import { createMemoryRateBudget } from './memory-bucket.ts';
import { MAX_BLOCK_SECONDS } from './rate-budget.ts';

const P = 'cf:user:0123456789abcdef';
const CF = { capacity: 1200, windowSeconds: 300 };

function setup() {
  const clock = new ManualClock();
  return { clock, budget: createMemoryRateBudget({ clock }) };
}

async function takeAll(budget: ReturnType<typeof createMemoryRateBudget>, n: number, spec = CF) {
  let allowed = 0;
  for (let i = 0; i < n; i++) if ((await budget.take(P, spec)).allowed) allowed++;
  return allowed;
}

describe('in-memory rate budget', () => {
  it('allows a burst of exactly the capacity, then refuses with the time one token takes', async () => {
    const { budget } = setup();
    expect(await takeAll(budget, 1200)).toBe(1200);
    expect(await budget.take(P, CF)).toEqual({
      allowed: false,
      remaining: 0,
      retryAfterMs: 250,
      reason: 'exhausted',
    });
  });

  it('reports the remaining whole tokens on every take', async () => {
    const { budget } = setup();
    expect(await budget.take(P, { capacity: 3, windowSeconds: 60 })).toEqual({ allowed: true, remaining: 2 });
    expect(await budget.take(P, { capacity: 3, windowSeconds: 60 }, 2)).toEqual({
      allowed: true,
      remaining: 0,
    });
  });

  it('refills continuously: 1200/300 s is 4 tokens a second, never above capacity', async () => {
    const { budget, clock } = setup();
    await takeAll(budget, 1200);
    clock.advance(1000);
    expect(await takeAll(budget, 10)).toBe(4);
    clock.advance(3600_000);
    expect((await budget.peek(P, CF)).remaining).toBe(1200);
    expect(await takeAll(budget, 1300)).toBe(1200);
  });

  it('keeps fractional tokens between takes', async () => {
    const { budget, clock } = setup();
    const spec = { capacity: 3, windowSeconds: 7 }; // one token every 2,333.3 ms
    expect(await takeAll(budget, 3, spec)).toBe(3);
    clock.advance(2333);
    expect(await budget.take(P, spec)).toMatchObject({ allowed: false, retryAfterMs: 1 });
    clock.advance(1);
    expect(await budget.take(P, spec)).toEqual({ allowed: true, remaining: 0 });

    // Three refused probes a second apart add up to one token of 1 per 3 s.
    const slow = { capacity: 1, windowSeconds: 3 };
    const other = 'cf:account:slow';
    expect((await budget.take(other, slow)).allowed).toBe(true);
    clock.advance(1000);
    expect(await budget.take(other, slow)).toMatchObject({ allowed: false, retryAfterMs: 2000 });
    clock.advance(1000);
    expect(await budget.take(other, slow)).toMatchObject({ allowed: false, retryAfterMs: 1000 });
    clock.advance(1000);
    expect((await budget.take(other, slow)).allowed).toBe(true);
  });

  it('waits for the whole cost of a multi-token take', async () => {
    const { budget } = setup();
    const spec = { capacity: 10, windowSeconds: 10 };
    await budget.take(P, spec, 9);
    expect(await budget.take(P, spec, 3)).toEqual({
      allowed: false,
      remaining: 1,
      retryAfterMs: 2000,
      reason: 'exhausted',
    });
  });

  it('keeps principals apart', async () => {
    const { budget } = setup();
    const spec = { capacity: 1, windowSeconds: 60 };
    expect((await budget.take('cf:user:a', spec)).allowed).toBe(true);
    expect((await budget.take('cf:user:a', spec)).allowed).toBe(false);
    expect((await budget.take('cf:user:b', spec)).allowed).toBe(true);
    expect((await budget.take('cf:account:a', spec)).allowed).toBe(true);
  });

  it('honours a block until it expires, and never shortens it', async () => {
    const { budget, clock } = setup();
    await budget.block(P, 30);
    await budget.block(P, 5);
    const refused = await budget.take(P, CF);
    expect(refused).toEqual({ allowed: false, remaining: 0, retryAfterMs: 30_000, reason: 'blocked' });
    expect(await budget.peek(P, CF)).toEqual({
      remaining: 0,
      blockedUntil: new Date(clock.now().getTime() + 30_000),
    });
    clock.advance(29_999);
    expect(await budget.take(P, CF)).toMatchObject({ allowed: false, retryAfterMs: 1, reason: 'blocked' });
    clock.advance(1);
    expect(await budget.take(P, CF)).toEqual({ allowed: true, remaining: 1199 });
    expect((await budget.take('cf:user:other', CF)).allowed).toBe(true);
  });

  it('reports the longer of the block and the refill when both apply', async () => {
    const { budget } = setup();
    const spec = { capacity: 1, windowSeconds: 60 };
    await budget.take(P, spec);
    await budget.block(P, 10);
    expect(await budget.take(P, spec)).toMatchObject({ retryAfterMs: 60_000, reason: 'blocked' });
  });

  it('ignores meaningless Retry-After values and clamps huge ones', async () => {
    const { budget, clock } = setup();
    for (const seconds of [0, -5, Number.NaN, Number.POSITIVE_INFINITY]) await budget.block(P, seconds);
    expect((await budget.take(P, CF)).allowed).toBe(true);
    await budget.block(P, 10 * 365 * 24 * 3600);
    expect(await budget.take(P, CF)).toMatchObject({ retryAfterMs: MAX_BLOCK_SECONDS * 1000 });
    clock.advance(MAX_BLOCK_SECONDS * 1000);
    expect((await budget.take(P, CF)).allowed).toBe(true);
  });

  it('peeks without consuming', async () => {
    const { budget } = setup();
    const spec = { capacity: 2, windowSeconds: 60 };
    expect(await budget.peek(P, spec)).toEqual({ remaining: 2 });
    expect(await budget.peek(P, spec)).toEqual({ remaining: 2 });
    await budget.take(P, spec);
    expect(await budget.peek(P, spec)).toEqual({ remaining: 1 });
    expect(await budget.peek(P, spec)).toEqual({ remaining: 1 });
  });

  it('neither refills nor rewinds when the clock steps back', async () => {
    const { budget, clock } = setup();
    const spec = { capacity: 1, windowSeconds: 10 };
    await budget.take(P, spec);
    clock.advance(-60_000);
    expect(await budget.take(P, spec)).toMatchObject({ allowed: false, retryAfterMs: 10_000 });
  });

  it('clamps a bucket to a lowered capacity', async () => {
    const { budget } = setup();
    await budget.take(P, { capacity: 100, windowSeconds: 60 });
    expect(await budget.peek(P, { capacity: 10, windowSeconds: 60 })).toEqual({ remaining: 10 });
  });

  it('rejects invalid principals, specs and costs as internal errors', async () => {
    const { budget } = setup();
    const bad: Array<() => Promise<unknown>> = [
      () => budget.take('', CF),
      () => budget.take('cf:user:\n', CF),
      () => budget.take(P, { capacity: 0, windowSeconds: 60 }),
      () => budget.take(P, { capacity: 1.5, windowSeconds: 60 }),
      () => budget.take(P, { capacity: 10, windowSeconds: 0 }),
      () => budget.take(P, CF, 0),
      () => budget.take(P, CF, 1201),
      () => budget.peek(P, { capacity: 10, windowSeconds: Number.NaN }),
      () => budget.block('', 10),
    ];
    for (const call of bad) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WardenError);
      expect((error as WardenError).code).toBe('internal');
    }
  });
});
