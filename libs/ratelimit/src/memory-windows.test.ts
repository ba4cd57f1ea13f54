import { describe, expect, it } from 'vitest';
import { ManualClock } from '@warden/core';
import { createMemoryWindows } from './memory-windows.ts';
import { windowSuite } from './windows-suite.fixture.ts';
import type { WindowHarness } from './windows-suite.fixture.ts';

function harness(): WindowHarness & { clock: ManualClock } {
  const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
  let n = 0;
  return {
    clock,
    windows: (options = {}) => createMemoryWindows({ probeAfterMs: null, ...options, clock }),
    principal: () => `cf:user:memory-${++n}`,
    async seed(windows, principal, kind, spec, agesMs) {
      const now = clock.now().getTime();
      for (const age of [...agesMs].sort((a, b) => b - a)) {
        clock.set(new Date(now - age));
        const take = await windows.take(principal, kind, spec);
        if (!take.allowed) throw new Error(`seeding refused at age ${age}`);
        await windows.settle(take.ticket, spec, { answered: true, quota: null, blockMs: 0 });
      }
      clock.set(new Date(now));
    },
    async pass(ms) {
      clock.advance(ms);
    },
    edgeMs: 1,
    exact: true,
  };
}

describe('in-process windows', () => {
  windowSuite(harness);

  it('lets an idle principal go after the sweep', async () => {
    const h = harness();
    const windows = createMemoryWindows({ clock: h.clock, sweepIntervalMs: 1000, probeAfterMs: 100 });
    const spec = { capacity: 1, windowSeconds: 1 };
    const take = await windows.take('cf:user:idle', 'rest', spec);
    if (!take.allowed) throw new Error('take refused');
    await windows.settle(take.ticket, spec, { answered: true, quota: null, blockMs: 0 });
    h.clock.advance(1000);
    // The entry is out of the window; the sweep on the next take drops the principal's state,
    // which makes it a newcomer again (its next burst starts with one probe).
    await windows.take('cf:user:other', 'rest', spec);
    const fresh = await windows.take('cf:user:idle', 'rest', spec);
    expect(fresh.allowed).toBe(true);
    expect(await windows.take('cf:user:idle', 'rest', { capacity: 5, windowSeconds: 1 })).toMatchObject({
      allowed: false,
      reason: 'probe',
    });
  });
});
