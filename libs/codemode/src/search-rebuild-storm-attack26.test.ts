/**
 * Attack 26: storms of warm-context rebuilds in the search children (aborts, heap-limit bombs,
 * a big heap dropped as the rebuild starts) while another tenant searches. The rebuild is the
 * process's own memory (fc2e01f, fbba381): none of it may be blamed on the other tenant's
 * search, and no child may hold far more than its allowance for long.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { childEvents, describeResult, sleep, startRecordedPool } from './test-support/attacked-pool.ts';

function rssMb(pid: number): number | null {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? null : Number(kb) / 1024;
  } catch {
    return null;
  }
}

/** Holds ~100 MB of heap (within a 128 MB search), then spins until stopped. */
const HOLD_AND_SPIN =
  'async () => { const keep = []; for (let i = 0; i < 12; i++) keep.push(new Array(1e6).fill(i + 0.5)); for (;;) {} }';
/** Stopped by isolated-vm at the heap limit (memory_limit), its context rebuilt. */
const HEAP_BOMB = 'async () => { const a = []; while (true) a.push(new Array(4e6).fill(1.5)); }';
const INNOCENT = "async () => Object.keys(spec.paths).filter((p) => p.startsWith('/zones')).length";

describe('search rebuild storms (attack26)', () => {
  it("fails none of another tenant's searches while one tenant forces rebuild after rebuild", async () => {
    const { pool, log } = await startRecordedPool({ size: 2, limits: { cpuMs: 5_000, wallMs: 8_000 } });
    let storming = true;
    const attackerResults: string[] = [];
    const storm = (async () => {
      for (let i = 0; storming; i++) {
        if (i % 2 === 0) {
          const controller = new AbortController();
          const call = pool.search(HOLD_AND_SPIN, { tenant: 'ten_attacker', signal: controller.signal });
          await sleep(150 + ((i * 37) % 200));
          controller.abort();
          attackerResults.push(describeResult(await call));
        } else {
          attackerResults.push(describeResult(await pool.search(HEAP_BOMB, { tenant: 'ten_attacker' })));
        }
      }
    })();
    const victim: string[] = [];
    const started = Date.now();
    while (Date.now() - started < 20_000) {
      victim.push(describeResult(await pool.search(INNOCENT, { tenant: 'ten_victim' })));
    }
    storming = false;
    await storm;
    const failures = victim.filter((r) => !r.startsWith('ok '));
    expect(
      failures,
      `${victim.length} searches; attacker: ${attackerResults.slice(0, 8).join(', ')}; ${childEvents(log)}`,
    ).toEqual([]);
    expect(victim.length).toBeGreaterThan(5);
  }, 60_000);

  it('stops a search child that holds far more than its allowance after rebuilds', async () => {
    const { pool, log } = await startRecordedPool({ size: 2, limits: { cpuMs: 5_000, wallMs: 8_000 } });
    // Peak resident memory of every search child, sampled while the storm runs.
    const peaks = new Map<number, number>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const child of pool.stats().children) {
          if (child.kind !== 'search') continue;
          const rss = rssMb(child.pid);
          if (rss !== null) peaks.set(child.pid, Math.max(peaks.get(child.pid) ?? 0, rss));
        }
        await sleep(20);
      }
    })();
    const started = Date.now();
    for (let i = 0; Date.now() - started < 15_000; i++) {
      const controller = new AbortController();
      const call = pool.search(HOLD_AND_SPIN, { tenant: 'ten_attacker', signal: controller.signal });
      await sleep(120 + ((i * 53) % 150));
      controller.abort();
      await call;
    }
    sampling = false;
    await sampler;
    // Idle (~warm context) + one 128 MB call's hard allowance (4 × 128 + 64 + 128) + a build's
    // (4 × heap + 64 + 128): well under 2 GB for any child that the watch keeps in bounds.
    const worst = Math.max(...peaks.values());
    expect(worst, `${JSON.stringify([...peaks])} ${childEvents(log)}`).toBeLessThan(2_000);
  }, 60_000);
});
