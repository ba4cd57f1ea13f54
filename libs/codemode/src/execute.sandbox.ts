/**
 * Execute runs each call in a fresh isolate. One isolate is bootstrapped ahead of time so
 * that creating it is off the call's path; it has never run agent code before its call and
 * is disposed after it. The next spare is built only once a call has ended: building it
 * blocks this process's thread for about a millisecond, which a running call would wait for.
 *
 * The spare is built as far as it can be without its call: the runtime is loaded (from V8's
 * code cache) and `cloudflare` and `console` are installed, leading to whichever call takes the
 * isolate. The call then only sets `accountId`.
 *
 * The code cache is made once per process by a warm-up call of Warden's own (fixed code and a
 * stub upstream) in an isolate that no agent code ever runs in: V8 caches the functions compiled
 * so far, so a cache made after a call holds the runtime's request, result and error paths too,
 * which every isolate would otherwise compile again on its first call.
 *
 * SDK-style calls (`cloudflare.dns.records.list(…)`) look their method up in this process's
 * table through a synchronous callback, once per name and isolate; the table is parsed on the
 * first lookup, so isolates that never use the SDK style cost nothing more.
 */
import ivm from 'isolated-vm';
import { ISOLATE_RUNTIME_SCRIPT, SDK_ISOLATE_RUNTIME_SCRIPT } from './isolate-runtime.ts';
import { pinnedSdkMethods } from './sdk/pinned-sdk-methods.ts';
import type { SdkMethods } from './sdk/sdk-methods.ts';
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

/** Where an isolate's `cloudflare.request` and `console` lead: the call that took it. */
interface CallBindings {
  requestUpstream: RequestUpstream | null;
  logs: LogBuffer | null;
}

export interface PreparedIsolate {
  readonly memoryMb: number;
  readonly isolate: ivm.Isolate;
  readonly context: ivm.Context;
  readonly run: ivm.Reference;
  readonly begin: ivm.Reference;
  readonly call: CallBindings;
}

const RUNTIME_FILENAME = 'warden-runtime.js';
const WARM_UP_MEMORY_MB = 32;
/** How long calls wait for the warm-up at most (it takes a few milliseconds). */
const WARM_UP_TIMEOUT_MS = 5_000;
/** Warden's own code for the warm-up call: the paths every call takes, and the error path. */
const WARM_UP_CODE = `async () => {
  console.log('warm-up');
  const answer = await cloudflare.request({ method: 'GET', path: '/zones', query: { per_page: 1 } });
  try {
    await cloudflare.request({ method: 'POST', path: '/zones', body: { name: 'warm-up.example' } });
  } catch (error) {
    return { zones: answer.result.length, refused: error.code };
  }
  return null;
}`;

const NOT_STARTED: UpstreamOutcome = {
  ok: false,
  code: 'aborted',
  message: 'cloudflare.request: no call owns this sandbox',
};

export class ExecuteSandbox {
  readonly #onCatastrophicError: (message: string) => void;
  /** `describeMethod` and `methodNames` for the runtime, or null for `cloudflare.request` only. */
  readonly #sdk: readonly [ivm.Callback, ivm.Callback] | null;
  readonly #running = new Map<number, Watchdog>();
  #spare: Promise<PreparedIsolate> | undefined;
  /** V8's code cache of the runtime script (see above); undefined until made, or if V8 refused it. */
  #runtimeCache: ivm.ExternalCopy<ArrayBuffer> | undefined;
  /** The warm-up that makes `#runtimeCache`, until it has ended. */
  #warming: Promise<void> | undefined;
  #closed = false;

  /**
   * `sdk`: the SDK method table calls look up, or null to offer only `cloudflare.request`.
   * `warmUp`: the warm-up's code and time limit (tests only; Warden's own by default).
   */
  constructor(
    onCatastrophicError: (message: string) => void,
    sdk: SdkMethods | null = pinnedSdkMethods,
    warmUp: { readonly code: string; readonly timeoutMs: number } = {
      code: WARM_UP_CODE,
      timeoutMs: WARM_UP_TIMEOUT_MS,
    },
  ) {
    this.#onCatastrophicError = onCatastrophicError;
    this.#sdk = sdk
      ? [new ivm.Callback((name: unknown) => sdk.describe(name)), new ivm.Callback(() => sdk.names())]
      : null;
    this.#warming = this.#warmUp(warmUp.code, warmUp.timeoutMs).finally(() => {
      this.#warming = undefined;
    });
  }

  abort(id: number): void {
    this.#running.get(id)?.abort();
  }

  /** A tail of call `id` runs: its wall-clock deadline moves out by `ms`. */
  extend(id: number, ms: number): void {
    this.#running.get(id)?.extend(ms);
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
      prepared.call.requestUpstream = requestUpstream;
      prepared.call.logs = logs;
      // Runtime code only (no agent code has run in this isolate yet), so it may block this
      // thread; the agent's code is compiled and run asynchronously, under the watchdog.
      prepared.begin.applySync(undefined, [accountId]);
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
      // Work the code left running until the isolate is disposed reaches no call any more.
      prepared.call.requestUpstream = null;
      prepared.call.logs = null;
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

  /** Size of the runtime's code cache once made (0 before), for tests. */
  get runtimeCacheBytes(): number {
    return this.#runtimeCache?.copy().byteLength ?? 0;
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
    return this.prepare(memoryMb);
  }

  /** Builds the next call's isolate, unless one is already there. */
  #refill(memoryMb: number): void {
    if (this.#closed || this.#spare) return;
    this.#spare = this.prepare(memoryMb);
    this.#spare.catch(() => undefined);
  }

  /**
   * Builds a call-ready isolate (public so the bench can time the start of one). Synchronous on
   * purpose: each async isolated-vm call is a hop to the isolate's thread and back, and
   * bootstrapping an isolate that way took twice the CPU and wall time.
   */
  async prepare(memoryMb: number): Promise<PreparedIsolate> {
    if (this.#warming) await this.#warming;
    return this.#build(memoryMb);
  }

  #build(memoryMb: number): PreparedIsolate {
    const isolate = new ivm.Isolate({
      memoryLimit: memoryMb,
      onCatastrophicError: this.#onCatastrophicError,
    });
    try {
      const context = isolate.createContextSync();
      const runtime = this.#loadRuntime(isolate, context);
      const run = runtime.getSync('run', { reference: true });
      const begin = runtime.getSync('begin', { reference: true });
      const setup = runtime.getSync('setup', { reference: true });
      runtime.release();
      const call: CallBindings = { requestUpstream: null, logs: null };
      setup.applySync(undefined, [
        new ivm.Reference((payload: unknown) =>
          call.requestUpstream ? call.requestUpstream(payload) : Promise.resolve(NOT_STARTED),
        ),
        new ivm.Callback((level: unknown, text: unknown) => call.logs?.add(level, text)),
        ...(this.#sdk ?? []),
      ]);
      setup.release();
      return { memoryMb, isolate, context, run, begin, call };
    } catch (error) {
      isolate.dispose();
      throw error;
    }
  }

  /**
   * Makes the runtime's code cache: a call of Warden's own runs in an isolate of its own (a
   * request answered, one refused and caught, a log line), then the runtime is compiled again
   * in that isolate, which V8 answers from the isolate's compilation cache with every function
   * compiled so far. Without it (a failure, or no end within `timeoutMs`: its isolate is then
   * disposed, so calls never wait longer) the first isolate makes the cache, as before.
   */
  async #warmUp(code: string, timeoutMs: number): Promise<void> {
    let prepared: PreparedIsolate | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      prepared = this.#build(WARM_UP_MEMORY_MB);
      const isolate = prepared.isolate;
      timer = setTimeout(() => {
        if (!isolate.isDisposed) isolate.dispose();
      }, timeoutMs);
      const answers: UpstreamOutcome[] = [
        { ok: true, response: { success: true, status: 200, result: [], errors: [], messages: [] } },
        { ok: false, code: 'policy_denied', message: 'warm-up' },
      ];
      prepared.call.requestUpstream = () => Promise.resolve(answers.shift() ?? NOT_STARTED);
      prepared.call.logs = new LogBuffer(1_000);
      prepared.begin.applySync(undefined, [null]);
      const value = await prepared.context.evalClosure(wrapCode('', code), [], {
        filename: CODE_FILENAME,
        lineOffset: -1,
        result: { reference: true },
      });
      const outcome = await runCompiled(prepared.run, value, 10_000);
      if (!outcome.ok) return;
      const script = prepared.isolate.compileScriptSync(this.#runtimeSource(), {
        filename: RUNTIME_FILENAME,
        produceCachedData: true,
      }) as ivm.Script & ivm.CachedDataResult;
      if (script.cachedData) this.#runtimeCache = script.cachedData;
      script.release();
    } catch {
      // The first isolate built makes a cache of the runtime alone.
    } finally {
      clearTimeout(timer);
      if (prepared && !prepared.isolate.isDisposed) prepared.isolate.dispose();
    }
  }

  #runtimeSource(): string {
    // Without an SDK table the SDK part is left out, so it costs such isolates nothing.
    return this.#sdk ? SDK_ISOLATE_RUNTIME_SCRIPT : ISOLATE_RUNTIME_SCRIPT;
  }

  /** Runs the runtime script in a fresh context, compiled from the code cache when there is one. */
  #loadRuntime(isolate: ivm.Isolate, context: ivm.Context): ivm.Reference {
    const cached = this.#runtimeCache;
    // isolated-vm sets these on the script; its type declarations leave them out.
    const script = isolate.compileScriptSync(this.#runtimeSource(), {
      filename: RUNTIME_FILENAME,
      ...(cached ? { cachedData: cached } : { produceCachedData: true }),
    }) as ivm.Script & ivm.CachedDataResult & { readonly cachedDataRejected?: boolean };
    if (!cached && script.cachedData) this.#runtimeCache = script.cachedData;
    // V8 refuses a cache it cannot use (another V8 build or flags); make a new one next time.
    if (cached && script.cachedDataRejected) this.#runtimeCache = undefined;
    const factory = script.runSync(context, { reference: true });
    script.release();
    try {
      return factory.applySync(undefined, ['execute', null], { result: { reference: true } });
    } finally {
      factory.release();
    }
  }
}
