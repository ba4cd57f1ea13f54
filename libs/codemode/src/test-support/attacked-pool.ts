/**
 * What the attack tests on the sandbox pool share: a pool on the real spec whose warnings and
 * errors are kept for the test to read, closed after each test, and readings of a child process.
 */
import { readFileSync } from 'node:fs';
import { afterEach } from 'vitest';
import type { Logger } from '@warden/core';
import { createSandboxPool } from '../sandbox-pool.ts';
import type { SandboxPool, SandboxPoolOptions } from '../sandbox-pool.ts';
import type { SandboxResult } from '../sandbox.types.ts';
import { realSpecStore } from './fixtures.ts';

export interface Logged {
  readonly level: 'info' | 'warn' | 'error';
  readonly msg: string | undefined;
  readonly obj: object;
}

export function recordingLogger(lines: Logged[]): Logger {
  const logger: Logger = {
    debug: () => {},
    info: (obj, msg) => lines.push({ level: 'info', msg, obj }),
    warn: (obj, msg) => lines.push({ level: 'warn', msg, obj }),
    error: (obj, msg) => lines.push({ level: 'error', msg, obj }),
    child: () => logger,
  };
  return logger;
}

const pools: SandboxPool[] = [];

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

/** A ready pool on the real spec, closed after the test, with what it logged. */
export async function startRecordedPool(
  options: Omit<SandboxPoolOptions, 'spec'>,
): Promise<{ pool: SandboxPool; log: Logged[] }> {
  const log: Logged[] = [];
  const pool = createSandboxPool({ spec: await realSpecStore(), logger: recordingLogger(log), ...options });
  pools.push(pool);
  await pool.ready();
  return { pool, log };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function until(condition: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** What the pool said of its children dying, outgrowing their memory or missing a deadline: a test's failure message. */
export function childEvents(log: readonly Logged[]): string {
  return JSON.stringify(
    log
      .filter((l) => /exited|outgrew|deadline|did not stop/.test(l.msg ?? ''))
      .map((l) => ({ msg: l.msg, ...l.obj }))
      .slice(0, 10),
  );
}

/** `ok <result as JSON>` or `<code>: <message>`: one string a test can compare and print. */
export function describeResult(result: SandboxResult): string {
  return result.ok ? `ok ${JSON.stringify(result.result)}` : `${result.error.code}: ${result.error.message}`;
}

/** CPU clock ticks (user + system) of a process, or null once it is gone. */
export function cpuTicks(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}
