/** Child-side pieces shared by search and execute: watchdog, captured logs, outcomes. */
import type ivm from 'isolated-vm';
import { fitResult } from './result-budget.ts';
import type { SandboxErrorCode, SandboxLimits, SandboxResult } from './sandbox.types.ts';

/** Agent code is compiled under this name; locations in its errors refer to it. */
export const CODE_FILENAME = 'code.js';

type StopReason = 'wall' | 'cpu' | 'abort';

/**
 * Enforces the wall-clock deadline and the CPU budget from the child's event loop, which
 * stays free while the isolate runs on its own thread: disposing the isolate stops any
 * code, including async loops and microtask floods that an eval timeout would not see.
 */
export class Watchdog {
  readonly #isolate: ivm.Isolate;
  readonly #limits: SandboxLimits;
  readonly #started = performance.now();
  readonly #cpuStart: bigint;
  #deadline: NodeJS.Timeout;
  #wallMs: number;
  readonly #poll: NodeJS.Timeout;
  #cpuNs = 0n;
  #reason: StopReason | undefined;

  constructor(isolate: ivm.Isolate, limits: SandboxLimits) {
    this.#isolate = isolate;
    this.#limits = limits;
    this.#cpuStart = isolate.cpuTime;
    this.#wallMs = limits.wallMs;
    this.#deadline = setTimeout(() => this.#stop('wall'), limits.wallMs);
    this.#poll = setInterval(() => this.#checkCpu(), Math.max(5, Math.min(100, limits.cpuMs / 10)));
  }

  get reason(): StopReason | undefined {
    return this.#reason;
  }

  abort(): void {
    this.#stop('abort');
  }

  /** The wall-clock limit, with what `extend` added. */
  get wallMs(): number {
    return this.#wallMs;
  }

  /** Moves the wall-clock deadline out by `ms` (a tail is running). */
  extend(ms: number): void {
    if (this.#reason) return;
    this.#wallMs += ms;
    clearTimeout(this.#deadline);
    const left = this.#wallMs - (performance.now() - this.#started);
    this.#deadline = setTimeout(() => this.#stop('wall'), Math.max(0, left));
  }

  /** Stops watching; returns the call's CPU and wall time. */
  finish(): { cpuMs: number; wallMs: number } {
    clearTimeout(this.#deadline);
    clearInterval(this.#poll);
    this.#sampleCpu();
    return {
      cpuMs: Number(this.#cpuNs / 1000n) / 1000,
      wallMs: Math.round(performance.now() - this.#started),
    };
  }

  #sampleCpu(): void {
    if (!this.#isolate.isDisposed) this.#cpuNs = this.#isolate.cpuTime - this.#cpuStart;
  }

  #checkCpu(): void {
    this.#sampleCpu();
    if (this.#cpuNs > BigInt(this.#limits.cpuMs) * 1_000_000n) this.#stop('cpu');
  }

  #stop(reason: StopReason): void {
    if (this.#reason !== undefined || this.#isolate.isDisposed) return;
    this.#sampleCpu();
    this.#reason = reason;
    this.#isolate.dispose();
  }
}

/**
 * Console output of one call, capped at `maxChars`: the output is kept up to the cap (the line
 * that crosses it cut with `…`), then a marker says how many lines were left out.
 */
export class LogBuffer {
  readonly #lines: string[] = [];
  readonly #max: number;
  #chars = 0;
  #full = false;
  #dropped = 0;

  constructor(maxChars: number) {
    this.#max = maxChars;
  }

  add(level: unknown, text: unknown): void {
    if (this.#full) {
      this.#dropped++;
      return;
    }
    const line = `${level === 'warn' || level === 'error' ? `${String(level)}: ` : ''}${String(text)}`;
    const room = this.#max - this.#chars;
    if (line.length <= room) {
      this.#chars += line.length;
      this.#lines.push(line);
      return;
    }
    this.#full = true;
    if (room > 1) this.#lines.push(`${line.slice(0, room - 1)}…`);
    else this.#dropped++;
  }

  lines(): string[] {
    if (!this.#full) return [...this.#lines];
    const dropped = this.#dropped === 1 ? '1 more line' : `${this.#dropped} more lines`;
    return [...this.#lines, `… log output cut at ${this.#max} characters; ${dropped} left out`];
  }
}

export interface Failure {
  readonly code: SandboxErrorCode;
  readonly message: string;
}

const COMPILE_LOCATION = /\s*\[code\.js:(\d+):(\d+)\]$/;

/** Turns an error thrown by isolated-vm in the child into something safe for the agent. */
export function classifyFailure(error: unknown, watchdog: Watchdog, limits: SandboxLimits): Failure {
  if (watchdog.reason === 'wall') {
    return { code: 'timeout', message: `the code did not finish within ${watchdog.wallMs} ms` };
  }
  if (watchdog.reason === 'cpu') {
    return { code: 'timeout', message: `the code used more than ${limits.cpuMs} ms of CPU time` };
  }
  if (watchdog.reason === 'abort') return { code: 'aborted', message: 'the call was cancelled' };
  const name = error instanceof Error ? error.name : 'Error';
  const text = error instanceof Error ? error.message : String(error);
  if (/^Isolate was disposed during execution due to memory limit/.test(text)) {
    return {
      code: 'memory_limit',
      message: `the code used more than the ${limits.memoryMb} MB memory limit`,
    };
  }
  if (/^(Isolate (is|was) disposed|Promise was abandoned)/.test(text)) {
    return { code: 'sandbox_crashed', message: 'the sandbox stopped unexpectedly; retry' };
  }
  const location = COMPILE_LOCATION.exec(text);
  if (name === 'SyntaxError' && location) {
    return {
      code: 'syntax_error',
      message: `SyntaxError: ${text.replace(COMPILE_LOCATION, '')} (line ${location[1]}, column ${location[2]})`,
    };
  }
  return { code: 'execution_error', message: `${name}: ${text}`.slice(0, 2000) };
}

/** The runtime's `run()` result, as copied out of the isolate. */
export type RunOutcome =
  | { readonly ok: true; readonly json: string }
  | { readonly ok: false; readonly code: SandboxErrorCode; readonly message: string };

export function toResult(
  outcome: RunOutcome | Failure,
  logs: LogBuffer,
  stats: { cpuMs: number; wallMs: number },
  limits: SandboxLimits,
): SandboxResult {
  const common = { logs: logs.lines(), stats: { upstreamRequests: 0, ...stats } };
  if (!('ok' in outcome) || !outcome.ok) {
    return { ok: false, error: { code: outcome.code, message: outcome.message }, ...common };
  }
  const fitted = fitResult(outcome.json, limits.resultTokenBudget);
  return {
    ok: true,
    result: fitted.value,
    ...(fitted.truncated ? { truncated: fitted.truncated } : {}),
    ...common,
  };
}

/**
 * Runs the agent's compiled function through the runtime's `run` (which awaits it and
 * serializes its result inside the isolate), copying the outcome out.
 */
export async function runCompiled(
  run: ivm.Reference,
  compiled: ivm.Reference,
  maxResultChars: number,
): Promise<RunOutcome> {
  return (await run.apply(undefined, [compiled.derefInto({ release: true }), maxResultChars], {
    result: { promise: true, copy: true },
  })) as RunOutcome;
}

/**
 * Wraps agent code as the body of a function compiled on its own, so whatever the text
 * does it stays inside that body. Line 1 of the agent's code is line 1 in errors.
 */
export function wrapCode(prelude: string, code: string): string {
  return `"use strict";${prelude}return (\n${code}\n);`;
}
