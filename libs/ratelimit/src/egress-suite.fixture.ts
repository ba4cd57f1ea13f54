/**
 * The egress behaviour both stores share, run by `memory-egress.test.ts` and
 * `redis-egress.integration.test.ts`. Slots are freed by release, so no test waits on a clock.
 */
import { expect, it } from 'vitest';
import type { EgressSlot, EgressStore } from './egress.ts';

export function egressSuite(store: (limit: number, slices?: number) => EgressStore): void {
  it('never grants more than the limit in a window, and says when a slot frees', async () => {
    const egress = store(5);
    const first = await egress.take('ten_a', 3);
    expect(first).toEqual({ granted: expect.any(Array), reason: null, waitMs: 0 });
    expect(first.granted).toHaveLength(3);
    const second = await egress.take('ten_a', 4);
    expect(second.granted).toHaveLength(2);
    expect(second.reason).toBe('full');
    // Unsettled requests count for their in-flight time (the stores' default, 31 s) plus the window.
    expect(second.waitMs).toBeGreaterThan(30_000);
    await egress.settle(first.granted[0]!);
    const third = await egress.take('ten_a', 1);
    expect(third).toMatchObject({ granted: [], reason: 'full' });
    expect(third.waitMs).toBeGreaterThan(0);
    expect(third.waitMs).toBeLessThanOrEqual(1000);
    const ids = new Set([...first.granted, ...second.granted].map((s) => s.id));
    expect(ids.size).toBe(5);
  });

  it('gives a waiting tenant the next free slot before a tenant over its share, and spare slots to anyone', async () => {
    const egress = store(4);
    const a = (await egress.take('ten_a', 4)).granted as EgressSlot[];
    expect(a).toHaveLength(4);
    // B arrives to a full window: with two tenants the share is 2, and B has none.
    expect(await egress.take('ten_b', 1)).toMatchObject({ granted: [], reason: 'full' });

    await egress.release(a.pop()!);
    expect(await egress.take('ten_a', 1)).toMatchObject({ granted: [], reason: 'share' });
    expect((await egress.take('ten_b', 1)).granted).toHaveLength(1);
    expect(await egress.take('ten_b', 1)).toMatchObject({ granted: [], reason: 'full' });

    await egress.release(a.pop()!);
    expect(await egress.take('ten_a', 1)).toMatchObject({ granted: [], reason: 'share' });
    expect((await egress.take('ten_b', 1)).granted).toHaveLength(1);

    // B has as many as A, A's claim notwithstanding: a free slot is not left unused.
    await egress.release(a.pop()!);
    expect((await egress.take('ten_b', 1)).granted).toHaveLength(1);
  });

  it('gives each free slot to the least-served waiting tenant (max-min), not to whoever asks first', async () => {
    const egress = store(10);
    const a = (await egress.take('ten_a', 7)).granted as EgressSlot[];
    const b = (await egress.take('ten_b', 2)).granted as EgressSlot[];
    const c = (await egress.take('ten_c', 1)).granted as EgressSlot[];
    expect([a.length, b.length, c.length]).toEqual([7, 2, 1]);
    // All three find the window full and claim the next slots, with 7, 2 and 1 in the window.
    for (const tenant of ['ten_c', 'ten_b', 'ten_a']) {
      expect(await egress.take(tenant, 1)).toMatchObject({ granted: [], reason: 'full' });
    }
    for (const slot of a.splice(0, 3)) await egress.release(slot);
    // Three free slots. B (2) and A (4) ask first but C has had fewer: they wait.
    const bFirst = await egress.take('ten_b', 2);
    expect(bFirst).toMatchObject({ granted: [], reason: 'share' });
    expect(bFirst.waitMs).toBeGreaterThan(0);
    expect(await egress.take('ten_a', 1)).toMatchObject({ granted: [], reason: 'share' });
    // C takes while it has no more than B (ties may take), then B gets the last one.
    const cTook = await egress.take('ten_c', 3);
    expect(cTook).toMatchObject({ reason: 'share' });
    expect(cTook.granted).toHaveLength(2);
    expect((await egress.take('ten_b', 2)).granted).toHaveLength(1);
    expect(await egress.take('ten_c', 1)).toMatchObject({ granted: [], reason: 'full' });
    expect(await egress.take('ten_a', 1)).toMatchObject({ granted: [], reason: 'full' });
  });

  it('paces the limit over the window: at most limit ÷ slices in any slice, and says when the slice frees', async () => {
    const egress = store(8, 4);
    const first = await egress.take('ten_a', 5);
    expect(first.granted).toHaveLength(2);
    expect(first.reason).toBe('full');
    expect(first.waitMs).toBeGreaterThan(0);
    expect(first.waitMs).toBeLessThanOrEqual(250);
    for (const slot of first.granted) await egress.settle(slot);
    // Released slots leave the slice too.
    await egress.release(first.granted[0]!);
    expect((await egress.take('ten_b', 2)).granted).toHaveLength(1);
  });

  it('gives a released slot back', async () => {
    const egress = store(1);
    const [slot] = (await egress.take('ten_a', 1)).granted;
    expect((await egress.take('ten_a', 1)).granted).toHaveLength(0);
    await egress.release(slot!);
    expect((await egress.take('ten_a', 1)).granted).toHaveLength(1);
  });
}
