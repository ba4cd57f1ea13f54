/**
 * Execute runs each call in a fresh isolate. One isolate is bootstrapped ahead of time so
 * that creating it is off the call's path; it has never run agent code before its call and
 * is disposed after it. The next spare is built only once a call has ended: building it
 * blocks this process's thread for about a millisecond, which a running call would wait for.
 */
import ivm from 'isolated-vm';
import { ISOLATE_RUNTIME_SOURCE } from './isolate-runtime.ts';
import {
  CODE_FILENAME,
  LogBuffer,
  Watchdog,
  classifyFailure,
  runCompiled,
  toResult,
  wrapCode,
} from './sandbox-call.ts';
import type { Failure, RunOutcome } from './sandbox-call.ts';
import type { UpstreamOutcome } from './sandbox.protocol.ts';
import type { SandboxLimits, SandboxResult } from './sandbox.types.ts';

/** Hands a request payload (already copied out of the isolate) to the parent; never rejects. */
export type RequestUpstream = (payload: unknown) => Promise<UpstreamOutcome>;

interface PreparedIsolate {
  readonly memoryMb: number;
  readonly isolate: ivm.Isolate;
  readonly context: ivm.Context;
  readonly run: ivm.Reference;
  readonly setup: ivm.Reference;
}

export class ExecuteSandbox {
  readonly #onCatastrophicError: (message: string) => void;
  readonly #running = new Map<number, Watchdog>();
  #spare: Promise<PreparedIsolate> | undefined;
  #closed = false;

  constructor(onCatastrophicError: (message: string) => void) {
    this.#onCatastrophicError = onCatastrophicError;
  }

  abort(id: number): void {
    this.#running.get(id)?.abort();
  }

  async execute(
    id: number,
    code: string,
    accountId: string | null,
    limits: SandboxLimits,
    requestUpstream: RequestUpstream,
  ): Promise<SandboxResult> {
    const logs = new LogBuffer(limits.maxLogChars);
    let prepared: PreparedIsolate;
    try {
      prepared = await this.#take(limits.memoryMb);
    } catch {
      return toResult(
        { code: 'sandbox_crashed', message: 'could not start a sandbox; retry' },
        logs,
        { cpuMs: 0, wallMs: 0 },
        limits,
      );
    }
    const watchdog = new Watchdog(prepared.isolate, limits);
    this.#running.set(id, watchdog);
    let outcome: RunOutcome | Failure;
    try {
      // Runtime code only (no agent code has run in this isolate yet), so it may block this
      // thread; the agent's code is compiled and run asynchronously, under the watchdog.
      prepared.setup.applySync(undefined, [
        new ivm.Reference(requestUpstream),
        new ivm.Callback((level: unknown, text: unknown) => logs.add(level, text)),
        accountId,
      ]);
      const value = await prepared.context.evalClosure(wrapCode('', code), [], {
        filename: CODE_FILENAME,
        lineOffset: -1,
        result: { reference: true },
      });
      outcome = await runCompiled(prepared.run, value, limits.maxResultChars);
    } catch (error) {
      outcome = classifyFailure(error, watchdog, limits);
    } finally {
      this.#running.delete(id);
    }
    const stats = watchdog.finish();
    // Disposing takes a moment; the result goes out first. Work the code left running
    // until then can only reach the parent, which ignores requests of finished calls.
    setImmediate(() => {
      if (!prepared.isolate.isDisposed) prepared.isolate.dispose();
      this.#refill(limits.memoryMb);
    });
    return toResult(outcome, logs, stats, limits);
  }

  /** Shuts the spare isolate down. */
  close(): void {
    this.#closed = true;
    this.#spare?.then((spare) => spare.isolate.dispose()).catch(() => undefined);
    this.#spare = undefined;
  }

  async #take(memoryMb: number): Promise<PreparedIsolate> {
    const spare = this.#spare;
    this.#spare = undefined;
    const ready = await spare?.catch(() => undefined);
    if (ready && ready.memoryMb === memoryMb && !ready.isolate.isDisposed) return ready;
    ready?.isolate.dispose();
    return this.#prepare(memoryMb);
  }

  /** Builds the next call's isolate, unless one is already there. */
  #refill(memoryMb: number): void {
    if (this.#closed || this.#spare) return;
    this.#spare = this.#prepare(memoryMb);
    this.#spare.catch(() => undefined);
  }

  /**
   * Synchronous on purpose: each async isolated-vm call is a hop to the isolate's thread and
   * back, and bootstrapping an isolate that way took twice the CPU and wall time.
   */
  async #prepare(memoryMb: number): Promise<PreparedIsolate> {
    const isolate = new ivm.Isolate({
      memoryLimit: memoryMb,
      onCatastrophicError: this.#onCatastrophicError,
    });
    try {
      const context = isolate.createContextSync();
      const runtime = context.evalClosureSync(ISOLATE_RUNTIME_SOURCE, ['execute', null], {
        filename: 'warden-runtime.js',
        result: { reference: true },
      });
      const run = runtime.getSync('run', { reference: true });
      const setup = runtime.getSync('setup', { reference: true });
      runtime.release();
      return { memoryMb, isolate, context, run, setup };
    } catch (error) {
      isolate.dispose();
      throw error;
    }
  }
}
