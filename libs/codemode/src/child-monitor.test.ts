import { afterEach, describe, expect, it } from 'vitest';
import { ChildMonitor } from './child-monitor.ts';
import type { MemoryReport } from './child-monitor.ts';

const MB = 1024 * 1024;
const monitors: ChildMonitor[] = [];

afterEach(() => {
  for (const monitor of monitors.splice(0)) monitor.close();
});

/** A monitor on readings the test sets; its interval is long, the test calls tick(). */
function setup(sustainMs = 0) {
  const state = { rssMb: 100, cpuUs: 0 };
  const reports: MemoryReport[] = [];
  const monitor = new ChildMonitor({
    intervalMs: 100,
    sustainMs,
    onMemoryExceeded: (report) => reports.push(report),
    readRss: () => state.rssMb * MB,
    readOtherThreadsCpuUs: () => state.cpuUs,
  });
  monitors.push(monitor);
  return { state, reports, monitor };
}

describe('ChildMonitor', () => {
  it('allows each running call 1.5 times its heap limit and 64 MB above the idle memory', () => {
    const { state, reports, monitor } = setup();
    monitor.tick();
    monitor.begin(128);
    state.rssMb = 100 + 256;
    monitor.tick();
    expect(reports).toEqual([]);
    monitor.begin(128);
    state.rssMb = 100 + 512;
    monitor.tick();
    expect(reports).toEqual([]);
    monitor.end(128);
    state.rssMb = 100 + 257;
    monitor.tick();
    expect(reports).toEqual([{ rssMb: 357, allowedMb: 356, calls: 1 }]);
  });

  it('tolerates a short peak above the soft ceiling, never one above the hard one', () => {
    const { state, reports, monitor } = setup(60_000);
    monitor.tick();
    monitor.begin(128);
    state.rssMb = 100 + 500;
    monitor.tick();
    state.rssMb = 150;
    monitor.tick();
    state.rssMb = 100 + 500;
    monitor.tick();
    expect(reports).toEqual([]);
    state.rssMb = 100 + 4 * 128 + 64 + 128 + 1;
    monitor.tick();
    expect(reports).toEqual([{ rssMb: 805, allowedMb: 804, calls: 1 }]);
  });

  it('keeps counting memory that grows after the calls ended while a thread is still working', () => {
    const { state, reports, monitor } = setup();
    monitor.tick();
    monitor.begin(128);
    monitor.end(128);
    state.cpuUs += 50_000;
    state.rssMb = 100 + 900;
    monitor.tick();
    expect(reports).toEqual([{ rssMb: 1000, allowedMb: 804, calls: 0 }]);
  });

  it('allows the call that just ended its memory while the next has not begun', () => {
    const { state, reports, monitor } = setup();
    monitor.tick();
    // A steady stream: no interval is idle, so the baseline stays at the start.
    for (let i = 0; i < 5; i++) {
      monitor.begin(128);
      state.cpuUs += 50_000;
      state.rssMb += 2;
      monitor.tick();
      monitor.end(128);
      state.cpuUs += 50_000;
      monitor.tick();
    }
    expect(reports).toEqual([]);
    // An interval without calls and without work on other threads takes a new baseline; from
    // then on nothing is lingering and growth with no call running counts at once.
    monitor.tick();
    expect(reports).toEqual([]);
    state.cpuUs += 50_000;
    state.rssMb += 129;
    monitor.tick();
    expect(reports).toEqual([{ rssMb: 239, allowedMb: 238, calls: 0 }]);
  });

  it('counts from a new baseline after a build, even with no idle interval to measure one', async () => {
    const { state, reports, monitor } = setup();
    await monitor.build(128, async () => {
      state.rssMb = 100 + 250;
    });
    monitor.begin(128);
    state.rssMb = 350 + 256;
    monitor.tick();
    expect(reports).toEqual([]);
    state.rssMb = 350 + 257;
    monitor.tick();
    expect(reports).toEqual([{ rssMb: 607, allowedMb: 606, calls: 1 }]);
  });

  it("charges a build's memory to the build, not to a call, and to no call when it is too much", async () => {
    const { state, reports, monitor } = setup();
    monitor.tick();
    // A search child rebuilding its warm context (a 200 MB heap) after a 64 MB call's abort:
    // more than one call may hold, well within the build's allowance.
    let grow: () => void = () => undefined;
    const building = monitor.build(200, () => new Promise<void>((resolve) => (grow = resolve)));
    state.rssMb = 100 + 1.5 * 64 + 64 + 150;
    monitor.tick();
    expect(reports).toEqual([]);
    state.rssMb = 100 + 4 * 200 + 64 + 128 + 1;
    monitor.tick();
    expect(reports).toEqual([{ rssMb: 1093, allowedMb: 1092, calls: 0 }]);
    grow();
    await building;
  });

  it('raises the baseline after a build by no more than the build may hold', async () => {
    const { state, reports, monitor } = setup();
    monitor.tick();
    // A stopped search's builtin still allocating on its thread while the warm context is built.
    await monitor.build(128, async () => {
      state.rssMb = 100 + 900;
    });
    state.cpuUs += 50_000;
    monitor.tick();
    // Baseline 100 + 1.5 × 128 + 64 = 356, and the build that just ended still allowed its own.
    expect(reports).toEqual([{ rssMb: 1000, allowedMb: 356 + 1.5 * 128 + 64, calls: 0 }]);
  });

  it('keeps the baseline when a build fails', async () => {
    const { state, reports, monitor } = setup();
    monitor.tick();
    await expect(
      monitor.build(128, async () => {
        state.rssMb = 100 + 250;
        throw new Error('the spec did not load');
      }),
    ).rejects.toThrow('the spec did not load');
    // A thread still busy after it: the failed build's allowance, over the old baseline.
    state.cpuUs += 50_000;
    state.rssMb = 100 + 4 * 128 + 64 + 128 + 1;
    monitor.tick();
    expect(reports).toEqual([{ rssMb: 805, allowedMb: 804, calls: 0 }]);
  });

  it('is quiet only after two intervals without calls and without work on other threads', async () => {
    const { state, monitor } = setup();
    let quiet = false;
    monitor.begin(64);
    void monitor.whenQuiet().then(() => (quiet = true));
    monitor.tick();
    monitor.end(64);
    monitor.tick();
    state.cpuUs += 20_000;
    monitor.tick();
    monitor.tick();
    await Promise.resolve();
    expect(quiet).toBe(false);
    monitor.tick();
    await Promise.resolve();
    expect(quiet).toBe(true);
  });
});
