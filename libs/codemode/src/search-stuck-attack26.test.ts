/**
 * Attack 26: a search aborted while one of V8's builtins runs without polling for interrupts
 * (`Array.prototype.indexOf` over a huge array-like: CPU only, ~1 MB) keeps its child's isolate
 * thread; the parent forgets the search at once and hands the child to the next search, of any
 * tenant. That search must not fail (nor wait out its deadline) because of it.
 */
import { describe, expect, it } from 'vitest';
import type { SandboxPool } from './sandbox-pool.ts';
import {
  childEvents,
  cpuTicks,
  describeResult,
  sleep,
  startRecordedPool,
  until,
} from './test-support/attacked-pool.ts';

/** 2^40 HasProperty checks in C++ that never poll for the termination a disposal asks for. */
const STUCK = 'async () => Array.prototype.indexOf.call({ length: 2 ** 40 }, 1)';
const INNOCENT = "async () => spec.paths['/zones'].get.summary";

/** Runs the stuck search, aborts it once it runs, and resolves when the parent has let it go. */
async function stuckAndAborted(pool: SandboxPool): Promise<void> {
  const searching = () => pool.stats().children.filter((c) => c.kind === 'search' && c.searches === 1).length;
  const before = searching();
  const controller = new AbortController();
  const call = pool.search(STUCK, { tenant: 'ten_attacker', signal: controller.signal });
  await until(() => searching() > before, 'the stuck search on a child');
  await sleep(300);
  controller.abort();
  expect(describeResult(await call)).toBe('aborted: the call was cancelled');
}

describe('searches behind a stuck builtin (attack26)', () => {
  it("serves another tenant's search promptly after one tenant's search stuck in a builtin was aborted", async () => {
    const { pool, log } = await startRecordedPool({ size: 2, limits: { cpuMs: 3_000, wallMs: 5_000 } });
    await stuckAndAborted(pool);
    const started = performance.now();
    const victim = await pool.search(INNOCENT, { tenant: 'ten_victim' });
    const tookMs = Math.round(performance.now() - started);
    expect(`${describeResult(victim)} after ${tookMs} ms`, childEvents(log)).toMatch(
      /^ok "List Zones" after \d+ ms$/,
    );
    expect(tookMs).toBeLessThan(3_000);
  }, 60_000);

  it('lets one tenant take no search child away from the others, however many it aborts', async () => {
    const { pool, log } = await startRecordedPool({ size: 2, limits: { cpuMs: 3_000, wallMs: 5_000 } });
    await stuckAndAborted(pool);
    // Before, the first victim went to the poisoned child (the parent thought it free) and the
    // attacker's next stuck search, aborted too, to the other one: both victims timed out.
    const first = pool.search(INNOCENT, { tenant: 'ten_victim' });
    await stuckAndAborted(pool);
    const second = pool.search(INNOCENT, { tenant: 'ten_other_victim' });
    const results = (await Promise.all([first, second])).map(describeResult);
    expect(results, childEvents(log)).toEqual(['ok "List Zones"', 'ok "List Zones"']);
  }, 60_000);

  it('does not leave a search child burning a core for an aborted search once its deadline is past', async () => {
    const { pool, log } = await startRecordedPool({
      size: 2,
      limits: { cpuMs: 3_000, wallMs: 5_000 },
      killGraceMs: 2_000,
    });
    const before = new Set(
      pool
        .stats()
        .children.filter((c) => c.kind === 'search')
        .map((c) => c.pid),
    );
    await stuckAndAborted(pool);
    // Past the search's own deadline and the kill grace, with nothing else to run.
    await sleep(9_000);
    const burning: number[] = [];
    for (const pid of before) {
      const first = cpuTicks(pid);
      await sleep(1_000);
      const second = cpuTicks(pid);
      // 100 ticks a second: more than half a core over that second.
      if (first !== null && second !== null && second - first > 50) burning.push(pid);
    }
    expect(burning, `children still burning the aborted search's CPU; ${childEvents(log)}`).toEqual([]);
  }, 60_000);
});
