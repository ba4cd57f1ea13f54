import { describe, expect, it } from 'vitest';
import { ManualClock } from '@warden/core';
import { egressSuite } from './egress-suite.fixture.ts';
import { createMemoryEgressStore } from './memory-egress.ts';

describe('in-process egress store', () => {
  egressSuite((limit, slices) => createMemoryEgressStore({ limit, ...(slices ? { slices } : {}) }));

  it('frees a settled slot exactly one window after its settlement', async () => {
    const clock = new ManualClock();
    const egress = createMemoryEgressStore({ limit: 2, windowMs: 1000, clock });
    const [first] = (await egress.take('ten_a', 2)).granted;
    await egress.settle(first!);
    clock.advance(999);
    expect(await egress.take('ten_a', 1)).toEqual({ granted: [], reason: 'full', waitMs: 1 });
    clock.advance(1);
    expect((await egress.take('ten_a', 1)).granted).toHaveLength(1);
  });
});
