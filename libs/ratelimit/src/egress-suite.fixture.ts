/**
 * The egress behaviour both stores share, run by `memory-egress.test.ts` and
 * `redis-egress.integration.test.ts`. Slots are freed by release, so no test waits on a clock.
 */
import { expect, it } from 'vitest';
import type { EgressSlot, EgressStore } from './egress.ts';

export function egressSuite(store: (limit: number) => EgressStore): void {
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

    // B is at its share and nobody waits: a free slot is not left unused.
    await egress.release(a.pop()!);
    expect((await egress.take('ten_b', 1)).granted).toHaveLength(1);
  });

  it('gives a released slot back', async () => {
    const egress = store(1);
    const [slot] = (await egress.take('ten_a', 1)).granted;
    expect((await egress.take('ten_a', 1)).granted).toHaveLength(0);
    await egress.release(slot!);
    expect((await egress.take('ten_a', 1)).granted).toHaveLength(1);
  });
}
