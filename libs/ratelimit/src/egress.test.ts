import { describe, expect, it } from 'vitest';
import { WardenError, unavailable } from '@warden/core';
import { createEgressLimiter } from './egress.ts';
import type { EgressAcquire, EgressStore } from './egress.ts';
import { createMemoryEgressStore } from './memory-egress.ts';

function granted(result: EgressAcquire) {
  if (!result.ok) throw new Error(`refused: ${result.reason}`);
  return result.slot;
}

describe('egress limiter (the local queue)', () => {
  it('grants at once while the window has room', async () => {
    const limiter = createEgressLimiter({ store: createMemoryEgressStore({ limit: 3 }) });
    const results = await Promise.all([1, 2, 3].map(() => limiter.acquire('ten_a')));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(new Set(results.map((r) => granted(r).id)).size).toBe(3);
  });

  it('queues requests of a full window until slots free, within the wait', async () => {
    const store = createMemoryEgressStore({ limit: 3, windowMs: 200 });
    const limiter = createEgressLimiter({ store, maxWaitMs: 5000 });
    for (let i = 0; i < 3; i++) await limiter.settle(granted(await limiter.acquire('ten_a')));
    const queued = await Promise.all([1, 2, 3].map(() => limiter.acquire('ten_a')));
    for (const result of queued) {
      expect(result.ok).toBe(true);
      expect(result.waitedMs).toBeGreaterThan(0);
    }
  });

  it('refuses after the wait, saying when a slot frees', async () => {
    const store = createMemoryEgressStore({ limit: 1, windowMs: 60_000 });
    const limiter = createEgressLimiter({ store, maxWaitMs: 30 });
    await limiter.settle(granted(await limiter.acquire('ten_a')));
    const refused = await limiter.acquire('ten_a');
    expect(refused).toMatchObject({ ok: false, reason: 'queue_timeout' });
    if (refused.ok) return;
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000);
  });

  it('refuses at once when the queue is full, and stops waiting when the caller aborts', async () => {
    const store = createMemoryEgressStore({ limit: 1, windowMs: 60_000 });
    const limiter = createEgressLimiter({ store, maxWaitMs: 60_000, maxQueue: 1 });
    granted(await limiter.acquire('ten_a'));
    const abort = new AbortController();
    const waiting = limiter.acquire('ten_a', { signal: abort.signal });
    expect(await limiter.acquire('ten_b')).toMatchObject({ ok: false, reason: 'queue_full' });
    abort.abort();
    expect(await waiting).toMatchObject({ ok: false, reason: 'queue_timeout' });
  });

  it("serves another tenant's single call while one tenant floods the queue", async () => {
    const store = createMemoryEgressStore({ limit: 2, windowMs: 300 });
    const limiter = createEgressLimiter({ store, maxWaitMs: 2000 });
    const settleAll = (r: EgressAcquire) => (r.ok ? limiter.settle(r.slot) : undefined);
    const flood = Array.from({ length: 40 }, () =>
      limiter.acquire('ten_flood').then(async (r) => (await settleAll(r), r)),
    );
    const single = limiter.acquire('ten_single');
    const one = await single;
    expect(one.ok).toBe(true);
    const results = await Promise.all(flood);
    // 2 per 300 ms over 2 s: the flood cannot all get through, and yet the single call did.
    expect(results.filter((r) => !r.ok).length).toBeGreaterThan(0);
  });

  it('a tenant that filled the queue cannot keep another out: its newest waiter gives way (max-min)', async () => {
    // No slot frees during the test: only who may wait is decided.
    const store = createMemoryEgressStore({ limit: 1, windowMs: 60_000 });
    const limiter = createEgressLimiter({ store, maxWaitMs: 300, maxQueue: 4 });
    granted(await limiter.acquire('ten_flood'));
    const flood = Array.from({ length: 4 }, () => limiter.acquire('ten_flood'));
    // Full of the flood: the flood's own fifth is refused, as before.
    expect(await limiter.acquire('ten_flood')).toMatchObject({ ok: false, reason: 'queue_full' });
    // Another tenant's request waits instead of the flood's newest; then its second instead of
    // the flood's next newest; its third is refused: both hold two places, the share of each.
    const first = limiter.acquire('ten_single');
    expect(await flood[3]).toMatchObject({ ok: false, reason: 'queue_full' });
    const second = limiter.acquire('ten_single');
    expect(await flood[2]).toMatchObject({ ok: false, reason: 'queue_full' });
    expect(await limiter.acquire('ten_single')).toMatchObject({ ok: false, reason: 'queue_full' });
    // The ones that waited gave up after the wait, as any waiter does.
    for (const result of await Promise.all([first, second, flood[0], flood[1]])) {
      expect(result).toMatchObject({ ok: false, reason: 'queue_timeout' });
    }
  });

  it("passes the store's failure to every waiter", async () => {
    let calls = 0;
    const inner = createMemoryEgressStore({ limit: 1, windowMs: 60_000 });
    const store: EgressStore = {
      ...inner,
      take: async (tenantId, want) => {
        calls += 1;
        if (calls > 2) throw unavailable('redis');
        return inner.take(tenantId, want);
      },
    };
    const limiter = createEgressLimiter({ store, maxWaitMs: 5000 });
    granted(await limiter.acquire('ten_a'));
    const failed = await limiter.acquire('ten_a').then(
      () => null,
      (error: unknown) => error,
    );
    expect(failed).toBeInstanceOf(WardenError);
    expect((failed as WardenError).code).toBe('unavailable');
  });
});
