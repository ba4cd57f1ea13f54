import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WardenError, isWardenError, noopLogger } from '@warden/core';
import type { Logger } from '@warden/core';
import { validateUpstreamRequest } from './request-validation.ts';
import type { ChildMessage, ParentMessage, SpecPayload, UpstreamOutcome } from './sandbox.protocol.ts';
import { DEFAULT_LIMITS } from './sandbox.types.ts';
import type {
  ExecuteOptions,
  SandboxErrorCode,
  SandboxLimits,
  SandboxResult,
  SearchOptions,
  Upstream,
  UpstreamResponse,
} from './sandbox.types.ts';

/** Where the processed spec is; a `SpecStore` from `@warden/cloudflare` fits. */
export interface SpecSource {
  current(): { readonly version: string; readonly documentFile: string };
}

export interface SandboxPoolOptions {
  /** Child processes; default: the number of cores. */
  readonly size?: number;
  /** A spec store, or the path of a processed document file (`LoadedSpec.documentFile`). */
  readonly spec: SpecSource | string;
  readonly limits?: Partial<SandboxLimits>;
  readonly logger?: Logger;
  /** Concurrent executions per child before calls queue. */
  readonly maxExecutionsPerChild?: number;
  /** How long past a call's deadline the parent waits for its child before killing it. */
  readonly killGraceMs?: number;
  /**
   * Executions after which a child is replaced. isolated-vm keeps about a kilobyte of native
   * memory per isolate it ever created; recycling bounds that.
   */
  readonly recycleAfterExecutions?: number;
}

export interface SandboxChildStats {
  readonly pid: number;
  readonly ready: boolean;
  readonly retiring: boolean;
  readonly specVersion: string | null;
  readonly searches: number;
  readonly executions: number;
}

export interface SandboxPoolStats {
  readonly size: number;
  /** Children whose process is up and answering. */
  readonly alive: number;
  /** Alive children that hold the current spec. */
  readonly ready: number;
  readonly specVersion: string | null;
  readonly queued: number;
  /** Children replaced after they died. */
  readonly restarts: number;
  /** Children replaced after `recycleAfterExecutions`. */
  readonly recycled: number;
  readonly children: readonly SandboxChildStats[];
}

export interface SandboxPool {
  /** Runs search code against the spec (`spec`, `allowed(method, path)`, `console`). */
  search(code: string, options?: SearchOptions): Promise<SandboxResult>;
  /** Runs execute code in a fresh isolate (`cloudflare.request`, `accountId`, `console`). */
  execute(code: string, options: ExecuteOptions): Promise<SandboxResult>;
  /** Resolves when every child is up and holds the current spec. */
  ready(): Promise<void>;
  /** Loads the spec source's current document into every child. */
  reloadSpec(): Promise<void>;
  stats(): SandboxPoolStats;
  close(): Promise<void>;
}

interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly jobs: Map<number, Job>;
  started: boolean;
  exited: boolean;
  /** Takes no new calls and exits when its last one ends. */
  retiring: boolean;
  specVersion: string | null;
  searches: number;
  executions: number;
  executed: number;
}

interface Job {
  readonly id: number;
  readonly kind: 'search' | 'execute';
  readonly message: Extract<ParentMessage, { type: 'search' | 'execute' }>;
  readonly limits: SandboxLimits;
  readonly upstream?: Upstream;
  /** Cancels upstream requests still running when the job ends. */
  readonly controller: AbortController;
  readonly finish: (result: SandboxResult) => void;
  child?: Child;
  upstreamRequests: number;
  /** Set when the parent had to kill the child for this job. */
  killedFor?: SandboxErrorCode;
  timers: NodeJS.Timeout[];
}

const CHILD_ENTRY = fileURLToPath(new URL('./sandbox.child.ts', import.meta.url));
const PACKAGE_DIR = path.dirname(path.dirname(CHILD_ENTRY));

/** All a child may read under Node's permission model: its own code and isolated-vm. */
function childReadableDirs(): string[] {
  const require = createRequire(import.meta.url);
  const ivmEntry = require.resolve('isolated-vm');
  const gypBuild = createRequire(ivmEntry).resolve('node-gyp-build');
  return [PACKAGE_DIR, path.dirname(ivmEntry), path.dirname(gypBuild)];
}

function failed(code: SandboxErrorCode, message: string, upstreamRequests = 0): SandboxResult {
  return { ok: false, error: { code, message }, logs: [], stats: { upstreamRequests, wallMs: 0, cpuMs: 0 } };
}

function pickResponse(response: UpstreamResponse): UpstreamResponse {
  return {
    success: response.success,
    status: response.status,
    result: response.result,
    errors: response.errors,
    messages: response.messages,
    ...(response.result_info !== undefined ? { result_info: response.result_info } : {}),
  };
}

export function createSandboxPool(options: SandboxPoolOptions): SandboxPool {
  const size = options.size ?? availableParallelism();
  const limits: SandboxLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const logger = (options.logger ?? noopLogger).child({ component: 'sandbox-pool' });
  const maxExecutions = options.maxExecutionsPerChild ?? 16;
  const killGraceMs = options.killGraceMs ?? 2_000;
  const recycleAfter = options.recycleAfterExecutions ?? 5_000;
  const readableDirs = childReadableDirs();
  const children = new Set<Child>();
  const queue: Job[] = [];
  const readyWaiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>();
  const specWaiters = new Map<Child, (error?: string) => void>();
  let nextId = 1;
  let restarts = 0;
  let recycled = 0;
  let failedStarts = 0;
  let closing = false;
  let specVersion: string | null = null;
  let spec = readSpec().then((payload) => {
    specVersion ??= payload?.version ?? null;
    return payload;
  });

  /**
   * Children get the processed document from the parent (a few MB, once per start or
   * reload), so they need no read access to the data directory at all.
   */
  async function readSpec(): Promise<SpecPayload | null> {
    try {
      let file = options.spec;
      let version: string | undefined;
      if (typeof file !== 'string') {
        const current = file.current();
        file = current.documentFile;
        version = current.version;
      }
      const document = await readFile(file);
      version ??= createHash('sha256').update(document).digest('hex').slice(0, 20);
      return { version, document };
    } catch (error) {
      logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'no spec to load yet');
      return null;
    }
  }

  function post(child: Child, message: ParentMessage): boolean {
    if (child.exited || !child.process.connected) return false;
    try {
      child.process.send(message);
      return true;
    } catch (error) {
      logger.warn(
        { pid: child.pid, err: error instanceof Error ? error.message : String(error) },
        'send failed',
      );
      return false;
    }
  }

  function spawnChild(): void {
    const proc = fork(CHILD_ENTRY, [], {
      // Nothing of the parent's environment: no credentials, no connection strings.
      env: {},
      execArgv: [
        '--no-node-snapshot',
        '--disable-warning=SecurityWarning',
        '--permission',
        '--allow-addons',
        ...readableDirs.map((dir) => `--allow-fs-read=${dir}${path.sep}`),
        // node-gyp-build probes this file to pick the isolated-vm binary.
        '--allow-fs-read=/etc/alpine-release',
      ],
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const child: Child = {
      process: proc,
      pid: proc.pid ?? -1,
      jobs: new Map(),
      started: false,
      exited: false,
      retiring: false,
      specVersion: null,
      searches: 0,
      executions: 0,
      executed: 0,
    };
    children.add(child);
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      logger.warn({ pid: child.pid, stderr: chunk.slice(0, 2_000) }, 'sandbox child wrote to stderr');
    });
    proc.on('message', (message: ChildMessage) => onMessage(child, message));
    proc.on('error', (error) => {
      logger.error({ pid: child.pid, err: error.message }, 'sandbox child error');
    });
    proc.on('exit', (code, signal) => onExit(child, code, signal));
  }

  function onExit(child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    if (child.exited) return;
    child.exited = true;
    children.delete(child);
    specWaiters.get(child)?.('the sandbox process exited');
    specWaiters.delete(child);
    for (const job of child.jobs.values()) {
      settle(
        job,
        failed(
          job.killedFor ?? 'sandbox_crashed',
          job.killedFor === 'timeout'
            ? `the code did not finish within ${job.limits.wallMs} ms`
            : 'the sandbox process stopped while running this call; retry',
          job.upstreamRequests,
        ),
      );
    }
    if (closing || child.retiring) return;
    restarts++;
    failedStarts = child.started ? 0 : failedStarts + 1;
    logger.warn({ pid: child.pid, code, signal, failedStarts }, 'sandbox child exited; replacing it');
    const delay = failedStarts === 0 ? 0 : Math.min(5_000, 100 * 2 ** failedStarts);
    setTimeout(() => {
      if (!closing) spawnChild();
    }, delay).unref();
  }

  function onMessage(child: Child, message: ChildMessage): void {
    switch (message.type) {
      case 'started':
        child.started = true;
        void spec.then((payload) => {
          if (payload) post(child, { type: 'load-spec', spec: payload, searchMemoryMb: limits.memoryMb });
        });
        drain();
        notifyReady();
        return;
      case 'spec-loaded':
        child.specVersion = message.version;
        specWaiters.get(child)?.();
        specWaiters.delete(child);
        drain();
        notifyReady();
        return;
      case 'spec-failed':
        logger.error(
          { pid: child.pid, version: message.version, err: message.message },
          'a sandbox could not load the spec',
        );
        specWaiters.get(child)?.(message.message);
        specWaiters.delete(child);
        return;
      case 'result': {
        const job = child.jobs.get(message.id);
        if (!job) return;
        settle(job, {
          ...message.result,
          stats: { ...message.result.stats, upstreamRequests: job.upstreamRequests },
        });
        return;
      }
      case 'upstream':
        void relayUpstream(child, message);
        return;
    }
  }

  async function relayUpstream(
    child: Child,
    message: Extract<ChildMessage, { type: 'upstream' }>,
  ): Promise<void> {
    const job = child.jobs.get(message.id);
    if (!job?.upstream) return;
    let outcome: UpstreamOutcome;
    if (job.upstreamRequests >= job.limits.maxUpstreamRequests) {
      outcome = {
        ok: false,
        code: 'too_many_requests',
        message: `cloudflare.request: this execution reached its limit of ${job.limits.maxUpstreamRequests} requests`,
      };
    } else {
      try {
        const request = validateUpstreamRequest(message.request);
        job.upstreamRequests++;
        const response = await job.upstream(request, {
          signal: job.controller.signal,
          sequence: job.upstreamRequests,
        });
        outcome = { ok: true, response: pickResponse(response) };
      } catch (error) {
        if (isWardenError(error)) {
          outcome = { ok: false, code: error.code, message: error.message };
        } else {
          logger.error({ err: error }, 'upstream failed');
          outcome = {
            ok: false,
            code: 'upstream_error',
            message: 'cloudflare.request failed upstream; retry',
          };
        }
      }
    }
    if (child.jobs.get(message.id) !== job) return;
    if (!post(child, { type: 'upstream-outcome', id: message.id, seq: message.seq, outcome })) {
      post(child, {
        type: 'upstream-outcome',
        id: message.id,
        seq: message.seq,
        outcome: {
          ok: false,
          code: 'upstream_error',
          message: 'the upstream response could not be passed on',
        },
      });
    }
  }

  function settle(job: Job, result: SandboxResult): void {
    for (const timer of job.timers) clearTimeout(timer);
    job.controller.abort();
    const index = queue.indexOf(job);
    if (index >= 0) queue.splice(index, 1);
    const child = job.child;
    if (child?.jobs.delete(job.id)) {
      if (job.kind === 'search') child.searches--;
      else child.executions--;
      if (job.kind === 'execute' && ++child.executed >= recycleAfter && !child.retiring && !closing) {
        child.retiring = true;
        recycled++;
        spawnChild();
      }
      if (child.retiring && child.jobs.size === 0 && child.process.connected) child.process.disconnect();
    }
    job.finish(result);
    drain();
  }

  /**
   * A child runs one search at a time (its warm context is single-threaded), so a search
   * only goes to a child that holds a spec and has no search in flight: a slow search never
   * holds up others that an idle child could serve, and a call's deadline starts when it
   * really starts.
   */
  function pickChild(kind: Job['kind']): Child | undefined {
    let best: Child | undefined;
    for (const child of children) {
      if (!child.started || child.exited || child.retiring) continue;
      if (
        kind === 'search'
          ? child.searches > 0 || child.specVersion === null
          : child.executions >= maxExecutions
      ) {
        continue;
      }
      if (!best || child.executions < best.executions) best = child;
    }
    return best;
  }

  function dispatch(job: Job, child: Child): void {
    job.child = child;
    child.jobs.set(job.id, job);
    if (job.kind === 'search') child.searches++;
    else child.executions++;
    // The child's watchdog enforces the deadline; this only catches a child that stopped answering.
    job.timers.push(
      setTimeout(() => {
        job.killedFor = 'timeout';
        logger.warn({ pid: child.pid, job: job.id }, 'sandbox child missed a deadline; killing it');
        child.process.kill('SIGKILL');
      }, job.limits.wallMs + killGraceMs),
    );
    if (!post(child, job.message))
      settle(job, failed('sandbox_crashed', 'the sandbox process is gone; retry'));
  }

  function drain(): void {
    for (let i = 0; i < queue.length;) {
      const job = queue[i] as Job;
      const child = pickChild(job.kind);
      if (!child) {
        i++;
        continue;
      }
      queue.splice(i, 1);
      dispatch(job, child);
    }
  }

  function submit(
    kind: Job['kind'],
    message: Job['message'],
    jobLimits: SandboxLimits,
    upstream?: Upstream,
    signal?: AbortSignal,
  ): Promise<SandboxResult> {
    if (closing) return Promise.resolve(failed('unavailable', 'the sandbox pool is closed'));
    if (signal?.aborted) return Promise.resolve(failed('aborted', 'the call was cancelled'));
    return new Promise((resolve) => {
      const onAbort = (): void => {
        if (job.child) post(job.child, { type: 'abort', id: job.id });
        settle(job, failed('aborted', 'the call was cancelled', job.upstreamRequests));
      };
      const job: Job = {
        id: message.id,
        kind,
        message,
        limits: jobLimits,
        ...(upstream ? { upstream } : {}),
        controller: new AbortController(),
        upstreamRequests: 0,
        timers: [],
        finish: (result) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(result);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const child = pickChild(kind);
      if (child) {
        dispatch(job, child);
        return;
      }
      queue.push(job);
      job.timers.push(
        setTimeout(
          () => settle(job, failed('unavailable', 'no sandbox became free in time; retry shortly')),
          jobLimits.wallMs,
        ),
      );
    });
  }

  function isCurrent(child: Child): boolean {
    return child.started && !child.exited && !child.retiring && child.specVersion === specVersion;
  }

  function notifyReady(): void {
    if ([...children].filter(isCurrent).length < size) return;
    for (const waiter of readyWaiters) waiter.resolve();
    readyWaiters.clear();
  }

  for (let i = 0; i < size; i++) spawnChild();

  return {
    async search(code, searchOptions = {}) {
      if (!(await spec)) return failed('unavailable', 'the API description is not loaded; retry shortly');
      return submit(
        'search',
        {
          type: 'search',
          id: nextId++,
          code,
          access: searchOptions.access ?? null,
          limits,
        },
        limits,
      );
    },

    execute(code, executeOptions) {
      const jobLimits = { ...limits, ...executeOptions.limits };
      return submit(
        'execute',
        {
          type: 'execute',
          id: nextId++,
          code,
          accountId: executeOptions.accountId ?? null,
          limits: jobLimits,
        },
        jobLimits,
        executeOptions.upstream,
        executeOptions.signal,
      );
    },

    ready() {
      if (closing) return Promise.reject(new WardenError('unavailable', 'the sandbox pool is closed'));
      return new Promise((resolve, reject) => {
        readyWaiters.add({ resolve, reject });
        notifyReady();
      });
    },

    async reloadSpec() {
      const next = await readSpec();
      if (!next) throw new WardenError('unavailable', 'the spec could not be read', { dependency: 'spec' });
      spec = Promise.resolve(next);
      specVersion = next.version;
      const results = await Promise.all(
        [...children]
          .filter((child) => child.started && !child.exited && !child.retiring)
          .map(
            (child) =>
              new Promise<string | undefined>((resolve) => {
                specWaiters.get(child)?.('superseded by a newer reload');
                specWaiters.set(child, resolve);
                if (!post(child, { type: 'load-spec', spec: next, searchMemoryMb: limits.memoryMb })) {
                  specWaiters.delete(child);
                  resolve('the sandbox process is gone');
                }
              }),
          ),
      );
      const errors = results.filter((e) => e !== undefined);
      if (errors.length > 0) {
        throw new WardenError('unavailable', `the spec could not be loaded in a sandbox: ${errors[0]}`, {
          dependency: 'spec',
        });
      }
      notifyReady();
    },

    stats() {
      const list = [...children];
      return {
        size,
        alive: list.filter((c) => c.started && !c.exited && !c.retiring).length,
        ready: list.filter(isCurrent).length,
        specVersion,
        queued: queue.length,
        restarts,
        recycled,
        children: list.map((c) => ({
          pid: c.pid,
          ready: isCurrent(c),
          retiring: c.retiring,
          specVersion: c.specVersion,
          searches: c.searches,
          executions: c.executions,
        })),
      };
    },

    async close() {
      if (closing) return;
      closing = true;
      const closed = new WardenError('unavailable', 'the sandbox pool is closed');
      for (const waiter of readyWaiters) waiter.reject(closed);
      readyWaiters.clear();
      const pending = [...queue, ...[...children].flatMap((child) => [...child.jobs.values()])];
      for (const job of pending) settle(job, failed('unavailable', closed.message, job.upstreamRequests));
      await Promise.all(
        [...children].map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exited) return resolve();
              child.process.once('exit', () => resolve());
              child.process.kill('SIGKILL');
            }),
        ),
      );
    },
  };
}
