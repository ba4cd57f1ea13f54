/**
 * Attack 26 on the search children's memory accounting (fc2e01f, fbba381): a warm context's
 * build is charged to the process, a search counts only while its code runs, and the parent
 * blames a job with `memory_limit` only when the report had calls > 0 and that job was alone on
 * the child. These tests assert the secure behaviour: another tenant's search never fails
 * because of what one tenant's search code does.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '@warden/core';
import { createSandboxPool } from './sandbox-pool.ts';
import type { SandboxPool, SandboxPoolOptions } from './sandbox-pool.ts';
import type { SandboxResult } from './sandbox.types.ts';
import { realSpecStore } from './test-support/fixtures.ts';

const pools: SandboxPool[] = [];

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

interface Logged {
  readonly level: string;
  readonly msg: string | undefined;
  readonly obj: object;
}

function recordingLogger(lines: Logged[]): Logger {
  const logger: Logger = {
    debug: () => {},
    info: (obj, msg) => lines.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => lines.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => lines.push({ level: 'error', msg, obj }),
    child: () => logger,
  };
  return logger;
}

async function startPool(
  options: Omit<SandboxPoolOptions, 'spec'>,
): Promise<{ pool: SandboxPool; log: Logged[] }> {
  const log: Logged[] = [];
  const pool = createSandboxPool({ spec: await realSpecStore(), logger: recordingLogger(log), ...options });
  pools.push(pool);
  await pool.ready();
  return { pool, log };
}

/** V8 fills a dictionary-mode array in C++ without polling for interrupts. */
const ARRAY_BOMB = 'async () => new Array(2 ** 30).fill(0).length';
const INNOCENT = "async () => spec.paths['/zones'].get.summary";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(condition: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function describeResult(result: SandboxResult): string {
  return result.ok ? `ok ${JSON.stringify(result.result)}` : `${result.error.code}: ${result.error.message}`;
}

function exits(log: Logged[]): string {
  return JSON.stringify(
    log
      .filter((l) => l.msg?.includes('exited') || l.msg?.includes('outgrew'))
      .map((l) => ({ msg: l.msg, ...l.obj })),
  );
}

describe('search children: one tenant cannot make another fail (attack26)', () => {
  it("does not blame another tenant's search for a search aborted while its builtin is stuck allocating", async () => {
    const { pool, log } = await startPool({ size: 2 });
    const attacker = new AbortController();
    const bomb = pool.search(ARRAY_BOMB, { tenant: 'ten_attacker', signal: attacker.signal });
    await until(() => pool.stats().children.some((c) => c.searches === 1), 'the bomb on a child');
    // Let the builtin start: it now ignores the isolate's disposal.
    await sleep(400);
    attacker.abort();
    expect((await bomb).ok).toBe(false);
    // The parent now thinks the bomb's child free: the next search goes there.
    const victim = await pool.search(INNOCENT, { tenant: 'ten_victim' });
    expect(describeResult(victim), exits(log)).toBe('ok "List Zones"');
  }, 60_000);

  it("does not blame another tenant's longer search either, nor report it as crashed", async () => {
    const { pool, log } = await startPool({ size: 2 });
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
    expect(results, exits(log)).toEqual(['ok true', 'ok true', 'ok true']);
  }, 60_000);

  it('runs no code of a search after its result, so the next tenant never waits behind it', async () => {
    const { pool, log } = await startPool({ size: 2, limits: { cpuMs: 3_000, wallMs: 5_000 } });
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
    expect(describeResult(second), `${describeResult(first)} ${exits(log)}`).toBe('ok "List Zones"');
  }, 60_000);
});
