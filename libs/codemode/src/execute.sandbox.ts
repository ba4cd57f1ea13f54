/**
 * Execute runs each call in a fresh isolate. One isolate is bootstrapped ahead of time so
 * that creating it is off the call's path; it has never run agent code before its call and
 * is disposed after it.
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
      await prepared.setup.apply(undefined, [
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
    });
    return toResult(outcome, logs, stats, limits);
  }

  /** Shuts the spare isolate down. */
  close(): void {
    this.#spare?.then((spare) => spare.isolate.dispose()).catch(() => undefined);
    this.#spare = undefined;
  }

  async #take(memoryMb: number): Promise<PreparedIsolate> {
    const spare = this.#spare;
    this.#spare = this.#prepare(memoryMb);
    this.#spare.catch(() => undefined);
    const ready = await spare?.catch(() => undefined);
    if (ready && ready.memoryMb === memoryMb && !ready.isolate.isDisposed) return ready;
    ready?.isolate.dispose();
    return this.#prepare(memoryMb);
  }

  async #prepare(memoryMb: number): Promise<PreparedIsolate> {
    const isolate = new ivm.Isolate({
      memoryLimit: memoryMb,
      onCatastrophicError: this.#onCatastrophicError,
    });
    try {
      const context = await isolate.createContext();
      const runtime = await context.evalClosure(ISOLATE_RUNTIME_SOURCE, ['execute', null], {
        filename: 'warden-runtime.js',
        result: { reference: true },
      });
      const [run, setup] = await Promise.all([
        runtime.get('run', { reference: true }),
        runtime.get('setup', { reference: true }),
      ]);
      runtime.release();
      return { memoryMb, isolate, context, run: run as ivm.Reference, setup: setup as ivm.Reference };
    } catch (error) {
      isolate.dispose();
      throw error;
    }
  }
}
