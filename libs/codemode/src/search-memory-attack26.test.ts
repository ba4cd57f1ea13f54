/**
 * Attack 26 on the search children's memory accounting (fc2e01f, fbba381): a warm context's
 * build is charged to the process, a search counts only while its code runs, and the parent
 * blames a job with `memory_limit` only when the report had calls > 0 and that job was alone on
 * the child. These tests assert the secure behaviour: another tenant's search never fails
 * because of what one tenant's search code does.
 */
import { describe, expect, it } from 'vitest';
import {
  childEvents,
  describeResult,
  sleep,
  startRecordedPool,
  until,
} from './test-support/attacked-pool.ts';

/** V8 fills a dictionary-mode array in C++ without polling for interrupts. */
const ARRAY_BOMB = 'async () => new Array(2 ** 30).fill(0).length';
const INNOCENT = "async () => spec.paths['/zones'].get.summary";

describe('search children: one tenant cannot make another fail (attack26)', () => {
  it("does not blame another tenant's search for a search aborted while its builtin is stuck allocating", async () => {
    const { pool, log } = await startRecordedPool({ size: 2 });
    const attacker = new AbortController();
    const bomb = pool.search(ARRAY_BOMB, { tenant: 'ten_attacker', signal: attacker.signal });
    await until(() => pool.stats().children.some((c) => c.searches === 1), 'the bomb on a child');
    // Let the builtin start: it now ignores the isolate's disposal.
    await sleep(400);
    attacker.abort();
    expect((await bomb).ok).toBe(false);
    // The parent now thinks the bomb's child free: the next search goes there.
    const victim = await pool.search(INNOCENT, { tenant: 'ten_victim' });
    expect(describeResult(victim), childEvents(log)).toBe('ok "List Zones"');
  }, 60_000);

  it("does not blame another tenant's longer search either, nor report it as crashed", async () => {
    const { pool, log } = await startRecordedPool({ size: 2 });
    const results: string[] = [];
    for (let round = 0; round < 3; round++) {
      const attacker = new AbortController();
      const bomb = pool.search(ARRAY_BOMB, { tenant: 'ten_attacker', signal: attacker.signal });
      await until(() => pool.stats().children.some((c) => c.searches === 1), 'the bomb on a child');
      await sleep(200 + 200 * round);
      attacker.abort();
      await bomb;
      // An innocent search that spins half a second over the spec.
      const victim = await pool.search(
        'async () => { const end = Date.now() + 500; let n = 0; while (Date.now() < end) n += Object.keys(spec.paths).length; return n > 0; }',
        { tenant: 'ten_victim' },
      );
      results.push(describeResult(victim));
      await pool.ready();
    }
    expect(results, childEvents(log)).toEqual(['ok true', 'ok true', 'ok true']);
  }, 60_000);

  it('runs no code of a search after its result, so the next tenant never waits behind it', async () => {
    const { pool, log } = await startRecordedPool({ size: 2, limits: { cpuMs: 3_000, wallMs: 5_000 } });
    // Work chained to run after the result is serialized: microtasks the checkpoint runs.
    const leftover = `async () => {
      let p = Promise.resolve();
      for (let i = 0; i < 50; i++) p = p.then(() => 0);
      p.then(() => new Array(2 ** 30).fill(0));
      return 'returned';
    }`;
    const first = await pool.search(leftover, { tenant: 'ten_attacker' });
    // The chained work runs before the result leaves the isolate: the attacker's own call pays.
    expect(describeResult(first)).toMatch(/^(memory_limit|timeout):/);
    const second = await pool.search(INNOCENT, { tenant: 'ten_victim' });
    expect(describeResult(second), `${describeResult(first)} ${childEvents(log)}`).toBe('ok "List Zones"');
  }, 60_000);
});
