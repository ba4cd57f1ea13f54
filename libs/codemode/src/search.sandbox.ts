/**
 * Search runs in one warm context per child process that already holds the processed
 * spec, deep-frozen together with every intrinsic: a call compiles the agent's code, runs
 * it and leaves nothing behind. Per-call data (what the caller may call, its console)
 * reaches the code as closure arguments, never through the shared global object.
 *
 * Before it is frozen, the spec learns the SDK's names: each operation an SDK method calls
 * carries `sdk` ('dns.records.list'), and `spec.sdk[name]` gives a method's verb, path and
 * operation.
 */
import v8 from 'node:v8';
import ivm from 'isolated-vm';
import { ISOLATE_RUNTIME_SOURCE } from './isolate-runtime.ts';
import { R2_DESCRIPTION } from './r2-description.ts';
import { TAIL_DESCRIPTION } from './tail-description.ts';
import { pinnedSdkMethods } from './sdk/pinned-sdk-methods.ts';
import { annotateSdk } from './sdk/sdk-methods.ts';
import type { AnnotatableDocument } from './sdk/sdk-methods.ts';
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
import type { MemoryWatch } from './child-monitor.ts';
import type { SpecPayload } from './sandbox.protocol.ts';
import type { SandboxLimits, SandboxResult, SearchAccess } from './sandbox.types.ts';

interface WarmContext {
  readonly isolate: ivm.Isolate;
  readonly context: ivm.Context;
  readonly run: ivm.Reference;
  readonly makeAllowed: ivm.Reference;
  readonly makeConsole: ivm.Reference;
}

const PRELUDE = 'const allowed=$0($2),console=$1($3);';

const LINE_BREAK = /\r\n|[\n\r\u2028\u2029]/;
const REPORTED_LINE = / \(line (\d+), column \d+\)$/;

/**
 * A syntax error placed after the agent's last line is V8 reading the wrapper's closing `)`:
 * the code itself ended early. Say so, on the code's own last line.
 */
function pastTheEnd(outcome: RunOutcome | Failure, code: string): RunOutcome | Failure {
  if (('ok' in outcome && outcome.ok) || outcome.code !== 'syntax_error') return outcome;
  const line = Number(REPORTED_LINE.exec(outcome.message)?.[1]);
  const lines = code.split(LINE_BREAK).length;
  if (!(line > lines)) return outcome;
  return {
    code: 'syntax_error',
    message: `SyntaxError: the code ends before it is complete (line ${lines}); a bracket, brace, parenthesis, string or template literal is not closed`,
  };
}

/** Heap for the spec on top of the per-call allowance: measured at 4.2 bytes per serialized byte. */
function specAllowanceMb(serializedBytes: number): number {
  return Math.ceil((serializedBytes * 6) / (1024 * 1024)) + 16;
}

export class SearchSandbox {
  readonly #onCatastrophicError: (message: string) => void;
  readonly #watch: MemoryWatch;
  #spec: SpecPayload | undefined;
  #memoryMb = 128;
  #context: Promise<WarmContext> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** The search running now, by its call's id, so its caller can stop it. */
  #running: { readonly id: number; readonly watchdog: Watchdog } | undefined;
  /** Calls waiting to run (their turn, the warm context), and those of them stopped meanwhile (they end without running). */
  readonly #queued = new Set<number>();
  readonly #aborted = new Set<number>();

  /**
   * `watch` counts the warm context's builds as the process's own memory and each search's
   * code as its call's: a search waiting for a build is not charged with it.
   */
  constructor(onCatastrophicError: (message: string) => void, watch: MemoryWatch) {
    this.#onCatastrophicError = onCatastrophicError;
    this.#watch = watch;
  }

  /** Builds a context on the new spec before dropping the old one; searches queue meanwhile. */
  load(spec: SpecPayload, memoryMb: number): Promise<void> {
    return this.#serialized(async () => {
      const next = this.#build(spec, memoryMb);
      await next;
      const previous = this.#context;
      this.#spec = spec;
      this.#memoryMb = memoryMb;
      this.#context = next;
      previous?.then((warm) => warm.isolate.dispose()).catch(() => undefined);
    });
  }

  search(
    id: number,
    code: string,
    access: SearchAccess | null,
    limits: SandboxLimits,
  ): Promise<SandboxResult> {
    this.#queued.add(id);
    return this.#serialized(async () => {
      try {
        return await this.#search(id, code, access, limits);
      } finally {
        this.#queued.delete(id);
        this.#aborted.delete(id);
      }
    });
  }

  /**
   * Stops search `id` (its caller went away): running, its isolate is disposed, which stops any
   * code (the warm context is built again for the next search); waiting for its turn or for the
   * warm context to be built, it never runs.
   */
  abort(id: number): void {
    if (this.#running?.id === id) this.#running.watchdog.abort();
    else if (this.#queued.has(id)) this.#aborted.add(id);
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(task);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #build(spec: SpecPayload, memoryMb: number): Promise<WarmContext> {
    const heapMb = memoryMb + specAllowanceMb(spec.document.length);
    return this.#watch.build(heapMb, () => this.#buildIn(spec, heapMb));
  }

  async #buildIn(spec: SpecPayload, heapMb: number): Promise<WarmContext> {
    const bytes = spec.document;
    const isolate = new ivm.Isolate({ memoryLimit: heapMb, onCatastrophicError: this.#onCatastrophicError });
    try {
      const processed = v8.deserialize(bytes) as AnnotatableDocument;
      annotateSdk(processed, pinnedSdkMethods.methods());
      // `spec.r2`: the execute runtime's `r2` global, which no OpenAPI operation describes.
      (processed as AnnotatableDocument & { r2?: unknown }).r2 = structuredClone(R2_DESCRIPTION);
      // `spec.tail`: the execute runtime's `tail` global.
      (processed as AnnotatableDocument & { tail?: unknown }).tail = structuredClone(TAIL_DESCRIPTION);
      const document = new ivm.ExternalCopy(processed);
      const context = await isolate.createContext();
      const runtime = await context.evalClosure(
        ISOLATE_RUNTIME_SOURCE,
        ['search', document.copyInto({ release: true })],
        { filename: 'warden-runtime.js', result: { reference: true } },
      );
      const [run, makeAllowed, makeConsole] = await Promise.all(
        (['run', 'makeAllowed', 'makeConsole'] as const).map((name) =>
          runtime.get(name, { reference: true }),
        ),
      );
      runtime.release();
      return {
        isolate,
        context,
        run: run as ivm.Reference,
        makeAllowed: makeAllowed as ivm.Reference,
        makeConsole: makeConsole as ivm.Reference,
      };
    } catch (error) {
      isolate.dispose();
      throw error;
    }
  }

  async #search(
    id: number,
    code: string,
    access: SearchAccess | null,
    limits: SandboxLimits,
  ): Promise<SandboxResult> {
    const logs = new LogBuffer(limits.maxLogChars);
    let warm: WarmContext;
    try {
      warm = await (this.#context ?? Promise.reject(new Error('no spec loaded')));
    } catch {
      this.#rebuild();
      return toResult(
        { code: 'unavailable', message: 'the API description is not loaded yet; retry shortly' },
        logs,
        { cpuMs: 0, wallMs: 0 },
        limits,
      );
    }
    // Waiting until now (its turn, the warm context): from here on it runs, unless stopped meanwhile
    // (`search` forgets the id once it has ended).
    if (this.#aborted.has(id)) {
      return toResult(
        { code: 'aborted', message: 'the call was cancelled' },
        logs,
        { cpuMs: 0, wallMs: 0 },
        limits,
      );
    }
    const watchdog = new Watchdog(warm.isolate, limits);
    this.#running = { id, watchdog };
    let outcome: RunOutcome | Failure;
    try {
      outcome = await this.#watch.call(limits.memoryMb, async () => {
        const value = await warm.context.evalClosure(
          wrapCode(PRELUDE, code),
          [
            warm.makeAllowed.derefInto(),
            warm.makeConsole.derefInto(),
            new ivm.ExternalCopy(access).copyInto({ release: true }),
            new ivm.Callback((level: unknown, text: unknown) => logs.add(level, text)),
          ],
          { filename: CODE_FILENAME, lineOffset: -1, result: { reference: true } },
        );
        return runCompiled(warm.run, value, limits.maxResultChars);
      });
    } catch (error) {
      outcome = pastTheEnd(classifyFailure(error, watchdog, limits), code);
    } finally {
      this.#running = undefined;
    }
    const stats = watchdog.finish();
    if (warm.isolate.isDisposed) this.#rebuild();
    return toResult(outcome, logs, stats, limits);
  }

  /** After a deadline or the memory limit took the context down, builds the next one right away. */
  #rebuild(): void {
    if (!this.#spec) return;
    this.#context = this.#build(this.#spec, this.#memoryMb);
    this.#context.catch(() => undefined);
  }
}
