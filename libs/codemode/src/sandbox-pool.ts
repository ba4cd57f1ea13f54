import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism, getPriority, setPriority } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WardenError, isWardenError, noopLogger, procStatFields } from '@warden/core';
import type { Logger } from '@warden/core';
import type { MemoryReport } from './child-monitor.ts';
import { steerNiceness } from './cpu-fairness.ts';
import type { TenantCpu } from './cpu-fairness.ts';
import { placeExecution } from './placement.ts';
import { validateUpstreamRequest } from './request-validation.ts';
import { isR2Payload, validateR2Request } from './r2-validation.ts';
import { MAX_TAIL_SECONDS, isTailPayload, validateTailRequest } from './tail-validation.ts';
import type { ChildMessage, ParentMessage, SpecPayload, UpstreamOutcome } from './sandbox.protocol.ts';
import { DEFAULT_LIMITS } from './sandbox.types.ts';
import type {
  ExecuteOptions,
  R2Upstream,
  SandboxErrorCode,
  TailUpstream,
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
  /**
   * Search child processes, and how many execute children one tenant spreads its calls over;
   * default: the number of cores.
   */
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
  /** Started execute children kept serving no tenant, so a tenant without a child need not wait for one. */
  readonly spareChildren?: number;
  /** Execute children at most; beyond it a tenant without a child waits for one to be handed back. */
  readonly maxExecuteChildren?: number;
  /** How long an execute child runs no call before it goes back to the spares. */
  readonly releaseIdleMs?: number;
  /** How long a child handed back may take to show that nothing of its tenant still runs before it is stopped. */
  readonly releaseTimeoutMs?: number;
  /**
   * Searches one tenant may run at once; default one less than the search children (at least
   * one), so another tenant's search always finds a child free of this tenant's.
   */
  readonly maxTenantSearches?: number;
  /** Calls one tenant may have waiting for a sandbox; beyond it they are refused at once. */
  readonly maxQueuedPerTenant?: number;
  /**
   * The children's scheduling niceness (0-19, default 10): agent code runs below the service, so
   * a tenant's CPU-bound code cannot starve what every tenant's calls need (HTTP, the rate
   * budget's Redis, the audit's PostgreSQL).
   */
  readonly childNice?: number;
  /**
   * Steers CPU between tenants through their execute children's niceness (`cpu-fairness.ts`),
   * from `childNice` up to 19; default on where `/proc` tells each process's CPU (Linux) and the
   * service may give a priority back (CAP_SYS_NICE, which root has). Without that privilege a
   * tenant steered down could never come back, so the pool does not steer.
   */
  readonly fairCpu?: boolean;
}

export type SandboxChildKind = 'search' | 'execute';

export interface SandboxChildStats {
  readonly pid: number;
  /** Search children hold the spec and run one search at a time; execute children serve one tenant at a time. */
  readonly kind: SandboxChildKind;
  readonly ready: boolean;
  readonly retiring: boolean;
  /** The tenant an execute child serves; null for a spare and for search children. */
  readonly tenant: string | null;
  readonly specVersion: string | null;
  readonly searches: number;
  readonly executions: number;
  /** Its scheduling niceness: a tenant taking more than its share of CPU runs lower (`fairCpu`). */
  readonly nice: number;
}

export interface SandboxPoolStats {
  /** Search children wanted. */
  readonly size: number;
  /** Children whose process is up and answering. */
  readonly alive: number;
  /** Alive search children that hold the current spec. */
  readonly ready: number;
  /** Started execute children that serve no tenant. */
  readonly spares: number;
  readonly specVersion: string | null;
  readonly queued: number;
  /** Children replaced after they died. */
  readonly restarts: number;
  /** Children replaced after `recycleAfterExecutions`. */
  readonly recycled: number;
  /** Calls run again on a fresh child after theirs died. */
  readonly retried: number;
  /** Execute children handed back to the spares once nothing of their tenant ran any more. */
  readonly released: number;
  /** Children stopped because their memory outgrew what their calls may use. */
  readonly memoryStops: number;
  readonly children: readonly SandboxChildStats[];
}

export interface SandboxPool {
  /** Runs search code against the spec (`spec`, `allowed(method, path)`, `console`). */
  search(code: string, options: SearchOptions): Promise<SandboxResult>;
  /** Runs execute code in a fresh isolate (`cloudflare.request`, `accountId`, `console`). */
  execute(code: string, options: ExecuteOptions): Promise<SandboxResult>;
  /** Resolves when every search child holds the current spec and the warm execute children are up. */
  ready(): Promise<void>;
  /** Loads the spec source's current document into every child. */
  reloadSpec(): Promise<void>;
  stats(): SandboxPoolStats;
  close(): Promise<void>;
}

interface Child {
  readonly kind: SandboxChildKind;
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
  /** The tenant whose executions it runs; null: a spare. */
  tenant: string | null;
  /** Runs a retried call alone. */
  exclusive: boolean;
  /** Its threads' niceness. */
  nice: number;
  /** CPU clock ticks it had used at the last fairness step, and when (`performance.now()`). */
  cpuTicks: number;
  cpuReadAt: number;
  /** Set while the child is being handed back; fires if it does not go quiet in time. */
  releasing: NodeJS.Timeout | null;
  /** When it last ran no call. */
  idleSince: number;
  /** Its report when its memory outgrew its calls' allowance. */
  memoryReport: MemoryReport | null;
  /**
   * The search whose caller went away, until the child says it ended (its result for it), with
   * the timer that kills the child if it does not within `killGraceMs`: code stuck in a builtin
   * that never polls for the stop keeps the child's one isolate thread, so no other search may
   * go to it meanwhile.
   */
  stopping: { readonly id: number; readonly timer: NodeJS.Timeout } | null;
}

/** Whose call it is, the limits it runs under and where its requests go. */
interface CallContext {
  readonly tenant: string;
  readonly limits: SandboxLimits;
  readonly upstream?: Upstream;
  readonly signal?: AbortSignal;
  readonly r2?: R2Upstream;
  readonly tail?: TailUpstream;
}

interface Job {
  id: number;
  readonly kind: SandboxChildKind;
  message: Extract<ParentMessage, { type: 'search' | 'execute' }>;
  readonly tenant: string;
  readonly limits: SandboxLimits;
  readonly upstream?: Upstream;
  readonly r2?: R2Upstream;
  readonly tail?: TailUpstream;
  /** Cancels upstream requests still running when the job ends. */
  readonly controller: AbortController;
  readonly finish: (result: SandboxResult) => void;
  child?: Child;
  upstreamRequests: number;
  /** Set when the parent had to kill the child for this job. */
  killedFor?: SandboxErrorCode;
  /** Runs again, alone on a fresh child, after its child died; never a second time. */
  retried: boolean;
  timers: NodeJS.Timeout[];
  /** When it was handed to its child (`performance.now()`), for its deadline. */
  dispatchedAt?: number;
  /** Wall-clock time its tails added to the deadline (`extendForTail`). */
  extraWallMs: number;
}

/**
 * A tail's deadline extension beyond its `seconds`: creating the session, connecting and
 * deleting it. An execution's tails may add at most `MAX_TAIL_EXTENSION_MS` in all.
 */
const TAIL_GRACE_MS = 10_000;
const MAX_TAIL_EXTENSION_MS = MAX_TAIL_SECONDS * 1000 + 2 * TAIL_GRACE_MS;

/** How long a spare beyond the floor may stay unused before it is stopped. */
const SPARE_RETIRE_MS = 60_000;
const SWEEP_MS = 1_000;
/** How often CPU between tenants is looked at and steered. */
const FAIR_CPU_MS = 500;
/** Linux's USER_HZ: `/proc/<pid>/stat` counts CPU in these. */
const CLOCK_TICKS_PER_S = 100;

/** CPU clock ticks (user + system) a process has used, or null once it is gone. */
function cpuTicksOf(pid: number): number | null {
  const fields = procStatFields(pid);
  // Fields 14 and 15 of proc(5): utime and stime.
  return fields ? Number(fields[11]) + Number(fields[12]) : null;
}

/** CAP_SYS_NICE, which root has: what giving a thread a higher priority back needs. */
const CAP_SYS_NICE = 23n;

/** Whether this process may give a thread's priority back (Linux: CAP_SYS_NICE in effect). */
function mayGiveBackPriority(): boolean {
  try {
    const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return effective !== undefined && (BigInt(`0x${effective}`) & (1n << CAP_SYS_NICE)) !== 0n;
  } catch {
    return false;
  }
}

/**
 * Sets the niceness of every thread of process `pid`. Linux's niceness is per thread, and a
 * thread inherits it from the one that starts it, so the threads are walked until a walk finds
 * every one at `nice` (one started during a walk by a thread not yet changed is caught by the
 * next). Where `/proc` does not list them, the process's niceness is set. False if not
 * permitted: giving a priority back needs a privilege the service may not have.
 */
function reniceThreads(pid: number, nice: number): boolean {
  const set = (id: number): boolean => {
    try {
      if (getPriority(id) !== nice) {
        setPriority(id, nice);
        return true;
      }
    } catch (error) {
      // A SystemError: the errno's name is in `info`. ESRCH: the thread ended meanwhile.
      const code = (error as { info?: { code?: string } }).info?.code;
      if (code === 'EACCES' || code === 'EPERM') throw error;
    }
    return false;
  };
  try {
    for (let walk = 0; walk < 10; walk++) {
      let tids: string[];
      try {
        tids = readdirSync(`/proc/${pid}/task`);
      } catch {
        set(pid);
        return true;
      }
      let changed = false;
      for (const tid of tids) if (set(Number(tid))) changed = true;
      if (!changed) return true;
    }
    return true;
  } catch {
    return false;
  }
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
    ...(response.pending_approval === true ? { pending_approval: true as const } : {}),
  };
}

/**
 * Why a settled call's signal aborts; one instance, because `abort()` without a reason builds a
 * DOMException with a stack trace on every call. An AbortError, as fetch expects.
 */
const CALL_ENDED = new DOMException('the call has ended', 'AbortError');

export function createSandboxPool(options: SandboxPoolOptions): SandboxPool {
  const size = options.size ?? availableParallelism();
  const limits: SandboxLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const logger = (options.logger ?? noopLogger).child({ component: 'sandbox-pool' });
  const maxExecutions = options.maxExecutionsPerChild ?? 16;
  const killGraceMs = options.killGraceMs ?? 2_000;
  const recycleAfter = options.recycleAfterExecutions ?? 5_000;
  const spareChildren = options.spareChildren ?? 1;
  const maxExecuteChildren = Math.max(options.maxExecuteChildren ?? Math.max(8, 4 * size), 1);
  const releaseIdleMs = options.releaseIdleMs ?? 5_000;
  const releaseTimeoutMs = options.releaseTimeoutMs ?? 5_000;
  const maxTenantSearches = Math.max(options.maxTenantSearches ?? size - 1, 1);
  const maxQueuedPerTenant = Math.max(options.maxQueuedPerTenant ?? 256, 1);
  const serviceNice = getPriority();
  const childNice = Math.max(Math.min(Math.max(options.childNice ?? 10, 0), 19), serviceNice);
  /** Steering CPU between tenants; stops for good if giving a priority back is refused. */
  let fairCpu =
    options.fairCpu ??
    (process.platform === 'linux' && cpuTicksOf(process.pid) !== null && mayGiveBackPriority());
  /** Execute children kept however idle: one tenant's calls can spread over the cores at once. */
  const executeFloor = Math.min(Math.max(size, spareChildren), maxExecuteChildren);
  const placement = { spread: size, maxExecutionsPerChild: maxExecutions };
  const readableDirs = childReadableDirs();
  const children = new Set<Child>();
  const queue: Job[] = [];
  const readyWaiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>();
  const specWaiters = new Map<Child, (error?: string) => void>();
  let nextId = 1;
  let restarts = 0;
  let recycled = 0;
  let retried = 0;
  let released = 0;
  let memoryStops = 0;
  let failedStarts = 0;
  /** Execute children are not started again before this (back-off after failed starts). */
  let spawnAfter = 0;
  let maintainTimer: NodeJS.Timeout | undefined;
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

  function spawnChild(kind: SandboxChildKind): void {
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
      kind,
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
      tenant: null,
      exclusive: false,
      // It starts at the service's priority (Warden's own start-up code, which a flooding tenant's
      // threads would otherwise slow down) and goes down to `childNice` before it runs any call.
      nice: serviceNice,
      cpuTicks: 0,
      cpuReadAt: 0,
      releasing: null,
      idleSince: performance.now(),
      memoryReport: null,
      stopping: null,
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

  /** Lets a child exit; one whose isolate thread is stuck in a builtin never would, so it is killed after a grace. */
  function stop(child: Child): void {
    if (child.process.connected) child.process.disconnect();
    setTimeout(() => {
      if (!child.exited) child.process.kill('SIGKILL');
    }, killGraceMs).unref();
  }

  /**
   * A call that died with its child runs again, once, alone on a fresh child, if nothing of it
   * can have reached Cloudflare: a search never does, an execution only before its first
   * upstream request. The others of the child are the same tenant's calls (a child serves one
   * tenant at a time), so nothing of another tenant is ever lost with it.
   */
  function onExit(child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    if (child.exited) return;
    child.exited = true;
    children.delete(child);
    clearTimeout(child.stopping?.timer);
    child.stopping = null;
    clearTimeout(child.releasing ?? undefined);
    specWaiters.get(child)?.('the sandbox process exited');
    specWaiters.delete(child);
    const jobs = [...child.jobs.values()];
    // Alone on its child, the call whose child outgrew its memory is the one that used it;
    // memory that grew while no call ran belongs to none of the calls the parent sees.
    const culprit =
      child.memoryReport && child.memoryReport.calls > 0 && jobs.length === 1 ? jobs[0] : undefined;
    for (const job of jobs) {
      if (job.killedFor === 'timeout') {
        settle(
          job,
          failed(
            'timeout',
            `the code did not finish within ${job.limits.wallMs + job.extraWallMs} ms`,
            job.upstreamRequests,
          ),
        );
      } else if (job === culprit) {
        settle(
          job,
          failed('memory_limit', `the code used more than the ${job.limits.memoryMb} MB memory limit`),
        );
      } else if (!closing && !job.retried && (job.kind === 'search' || job.upstreamRequests === 0)) {
        retry(job);
      } else {
        settle(
          job,
          failed(
            'sandbox_crashed',
            'the sandbox process stopped while running this call; retry',
            job.upstreamRequests,
          ),
        );
      }
    }
    if (closing || child.retiring) {
      drain();
      return;
    }
    restarts++;
    failedStarts = child.started ? 0 : failedStarts + 1;
    logger.warn(
      {
        pid: child.pid,
        kind: child.kind,
        tenant: child.tenant ?? undefined,
        calls: jobs.length,
        code,
        signal,
        memory: child.memoryReport ?? undefined,
        failedStarts,
      },
      'sandbox child exited; replacing it',
    );
    const delay = failedStarts === 0 ? 0 : Math.min(5_000, 100 * 2 ** failedStarts);
    if (child.kind === 'search') {
      setTimeout(() => {
        if (!closing) spawnChild('search');
      }, delay).unref();
    } else {
      spawnAfter = performance.now() + delay;
    }
    drain();
  }

  function onMessage(child: Child, message: ChildMessage): void {
    switch (message.type) {
      case 'started':
        if (child.nice < childNice && !setNice(child, childNice)) {
          // Lowering a priority needs no privilege; a platform without it runs children as the service.
          logger.warn({ pid: child.pid }, 'could not lower the sandbox child priority');
        }
        child.started = true;
        child.idleSince = performance.now();
        if (child.kind === 'search') {
          void spec.then((payload) => {
            if (payload) post(child, { type: 'load-spec', spec: payload, searchMemoryMb: limits.memoryMb });
          });
        }
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
        if (!job) {
          stopped(child, message.id);
          return;
        }
        settle(job, {
          ...message.result,
          stats: { ...message.result.stats, upstreamRequests: job.upstreamRequests },
        });
        return;
      }
      case 'upstream':
        void relayUpstream(child, message);
        return;
      case 'released':
        if (!child.releasing) return;
        clearTimeout(child.releasing);
        child.releasing = null;
        // The next tenant starts at the base: a child steered down that cannot come back is replaced.
        if (child.nice !== childNice && !setNice(child, childNice)) {
          child.retiring = true;
          stop(child);
          maintain();
          return;
        }
        child.tenant = null;
        child.idleSince = performance.now();
        released++;
        drain();
        return;
      case 'memory-exceeded':
        if (child.memoryReport) return;
        child.memoryReport = message.report;
        memoryStops++;
        logger.warn(
          { pid: child.pid, kind: child.kind, tenant: child.tenant ?? undefined, ...message.report },
          'sandbox child outgrew the memory its calls may use; stopping it',
        );
        child.process.kill('SIGKILL');
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
    const r2 = isR2Payload(message.request);
    const tail = !r2 && isTailPayload(message.request);
    const channel = r2 ? 'r2' : tail ? 'tail.worker' : 'cloudflare.request';
    if (job.upstreamRequests >= job.limits.maxUpstreamRequests) {
      outcome = {
        ok: false,
        code: 'too_many_requests',
        message: `${channel}: this execution reached its limit of ${job.limits.maxUpstreamRequests} requests`,
      };
    } else {
      try {
        if (tail) {
          const request = validateTailRequest(message.request);
          if (!job.tail)
            throw new WardenError('invalid_request', 'tail.worker: tails are not available here');
          extendForTail(job, request.seconds * 1000 + TAIL_GRACE_MS);
          job.upstreamRequests++;
          const response = await job.tail(request, {
            signal: job.controller.signal,
            sequence: job.upstreamRequests,
          });
          outcome = { ok: true, response };
        } else if (r2) {
          const request = validateR2Request(message.request);
          if (!job.r2) throw new WardenError('invalid_request', `r2.${request.op}: R2 is not available here`);
          job.upstreamRequests++;
          const response = await job.r2(request, {
            signal: job.controller.signal,
            sequence: job.upstreamRequests,
          });
          outcome = { ok: true, response };
        } else {
          const request = validateUpstreamRequest(message.request);
          job.upstreamRequests++;
          const response = await job.upstream(request, {
            signal: job.controller.signal,
            sequence: job.upstreamRequests,
          });
          outcome = { ok: true, response: pickResponse(response) };
        }
      } catch (error) {
        if (isWardenError(error)) {
          outcome = { ok: false, code: error.code, message: error.message };
        } else {
          logger.error({ err: error }, 'upstream failed');
          outcome = {
            ok: false,
            code: 'upstream_error',
            message: `${channel} failed upstream; retry`,
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

  /**
   * Moves a running execution's deadline out by `ms` for a tail (its seconds and the grace to
   * create, connect and delete it), in the child's watchdog and the parent's kill timer, so the
   * wall-clock limit counts from what the tail leaves of it. Refuses past `MAX_TAIL_EXTENSION_MS`.
   */
  function extendForTail(job: Job, ms: number): void {
    if (job.extraWallMs + ms > MAX_TAIL_EXTENSION_MS) {
      throw new WardenError(
        'invalid_request',
        `tail.worker: one execution's tails may add at most ${MAX_TAIL_EXTENSION_MS / 1000} s to its deadline (each its seconds + ${TAIL_GRACE_MS / 1000} s); run another execution for more`,
        { field: 'seconds' },
      );
    }
    const child = job.child;
    if (!child) return;
    job.extraWallMs += ms;
    post(child, { type: 'extend', id: job.id, ms });
    for (const timer of job.timers.splice(0)) clearTimeout(timer);
    armKill(job, child);
  }

  /** The parent's backstop: kills a child that missed the job's deadline by `killGraceMs`. */
  function armKill(job: Job, child: Child): void {
    const deadline = (job.dispatchedAt ?? performance.now()) + job.limits.wallMs + job.extraWallMs;
    job.timers.push(
      setTimeout(
        () => {
          job.killedFor = 'timeout';
          logger.warn(
            { pid: child.pid, job: job.id, tenant: job.tenant },
            'sandbox child missed a deadline; killing it',
          );
          child.process.kill('SIGKILL');
        },
        Math.max(0, deadline - performance.now()) + killGraceMs,
      ),
    );
  }

  /**
   * Search `id`, running on `child`, lost its caller: the caller has its answer, and the
   * child takes no other search until it says this one ended, or is killed after `killGraceMs`.
   */
  function awaitStop(child: Child, id: number): void {
    if (child.exited) return;
    const timer = setTimeout(() => {
      if (child.exited || child.stopping?.id !== id) return;
      logger.warn({ pid: child.pid }, 'sandbox child did not stop a cancelled search; killing it');
      child.process.kill('SIGKILL');
    }, killGraceMs).unref();
    child.stopping = { id, timer };
  }

  /** The child says a cancelled search ended: it may take the next. */
  function stopped(child: Child, id: number): void {
    if (child.stopping?.id !== id) return;
    clearTimeout(child.stopping.timer);
    child.stopping = null;
    drain();
  }

  /** Takes a job off its child. */
  function detach(job: Job): Child | undefined {
    const child = job.child;
    job.child = undefined;
    if (!child?.jobs.delete(job.id)) return undefined;
    if (job.kind === 'search') child.searches--;
    else child.executions--;
    if (job.retried) child.exclusive = false;
    if (child.jobs.size === 0) child.idleSince = performance.now();
    return child;
  }

  function settle(job: Job, result: SandboxResult): void {
    for (const timer of job.timers) clearTimeout(timer);
    job.controller.abort(CALL_ENDED);
    const index = queue.indexOf(job);
    if (index >= 0) queue.splice(index, 1);
    const child = detach(job);
    if (child) {
      if (job.kind === 'execute' && ++child.executed >= recycleAfter && !child.retiring && !closing) {
        child.retiring = true;
        recycled++;
        spawnChild(child.kind);
      }
      if (child.retiring && child.jobs.size === 0) stop(child);
    }
    job.finish(result);
    drain();
  }

  function retry(job: Job): void {
    for (const timer of job.timers) clearTimeout(timer);
    job.timers = [];
    detach(job);
    job.retried = true;
    retried++;
    // A new id: nothing the dead child sent about the first attempt can reach the second.
    job.id = nextId++;
    job.message = { ...job.message, id: job.id };
    logger.warn({ tenant: job.tenant, kind: job.kind }, 'running a call again after its sandbox died');
    // Ahead of its tenant's other waiting calls, not of other tenants' (placing is round-robin by tenant).
    const at = queue.findIndex((other) => other.tenant === job.tenant);
    if (at < 0) queue.push(job);
    else queue.splice(at, 0, job);
    waitInQueue(job);
  }

  function waitInQueue(job: Job): void {
    job.timers.push(
      setTimeout(
        () => settle(job, failed('unavailable', 'no sandbox became free in time; retry shortly')),
        job.limits.wallMs,
      ),
    );
  }

  function usableForExecute(child: Child): boolean {
    return child.kind === 'execute' && child.started && !child.exited && !child.retiring && !child.releasing;
  }

  function* executeSlots(): Generator<Child> {
    for (const child of children) if (usableForExecute(child)) yield child;
  }

  /**
   * A search child runs one search at a time (its warm context is single-threaded), so a
   * search only goes to one that holds a spec and has no search in flight: a slow search never
   * holds up others that an idle child could serve, a call's deadline starts when it really
   * starts, and a search that brings its process down takes only itself with it.
   */
  function pickChild(job: Job): Child | undefined {
    if (job.kind === 'execute') return placeExecution(executeSlots(), job.tenant, job.retried, placement);
    // A tenant running as many searches as it may waits, whatever is free: another tenant's
    // search then finds a child this one does not hold.
    let running = 0;
    for (const child of children) {
      if (child.kind !== 'search') continue;
      for (const other of child.jobs.values()) if (other.tenant === job.tenant) running++;
    }
    if (running >= maxTenantSearches) return undefined;
    for (const child of children) {
      if (
        child.kind === 'search' &&
        child.started &&
        !child.exited &&
        !child.retiring &&
        child.specVersion !== null &&
        child.searches === 0 &&
        child.stopping === null
      ) {
        return child;
      }
    }
    return undefined;
  }

  function dispatch(job: Job, child: Child): void {
    job.child = child;
    child.jobs.set(job.id, job);
    if (job.kind === 'search') {
      child.searches++;
    } else {
      child.executions++;
      child.tenant = job.tenant;
      if (job.retried) child.exclusive = true;
    }
    // The child's watchdog enforces the deadline; this only catches a child that stopped answering.
    job.dispatchedAt = performance.now();
    armKill(job, child);
    if (!post(child, job.message))
      settle(job, failed('sandbox_crashed', 'the sandbox process is gone; retry'));
  }

  /**
   * Places waiting calls, fair between tenants: each tenant's oldest call is offered a child
   * before any tenant's second, so a tenant with many calls waiting does not keep another's
   * first call behind all of its own.
   */
  function drain(): void {
    if (queue.length > 0) {
      const byTenant = new Map<string, Job[]>();
      for (const job of queue) {
        const own = byTenant.get(job.tenant);
        if (own) own.push(job);
        else byTenant.set(job.tenant, [job]);
      }
      const placed = new Set<Job>();
      for (let round = 0; byTenant.size > 0; round++) {
        for (const [tenant, jobs] of byTenant) {
          const job = jobs[round];
          if (!job) {
            byTenant.delete(tenant);
            continue;
          }
          const child = pickChild(job);
          if (!child) {
            // Where a call of this tenant finds no child, its later ones find none either
            // (placement depends on the tenant and the children alone); a retry, placed alone, aside.
            if (!job.retried) byTenant.delete(tenant);
            continue;
          }
          placed.add(job);
          for (const timer of job.timers.splice(0)) clearTimeout(timer);
          dispatch(job, child);
        }
      }
      if (placed.size > 0) {
        const waiting = queue.filter((job) => !placed.has(job));
        queue.splice(0, queue.length, ...waiting);
      }
    }
    maintain();
  }

  /**
   * Keeps execute children for every tenant that needs one: `spareChildren` started and serving
   * nobody, and for each waiting tenant one more for its calls and one for each of its retries,
   * as far as it may hold more (`size`, retries included), up to `maxExecuteChildren`. At that
   * cap, an idle child of another tenant is handed back only for a tenant that holds none: one
   * tenant's retries or stacked calls never take a child from another.
   */
  function maintain(): void {
    if (closing) return;
    let total = 0;
    let spares = 0;
    const held = new Map<string, number>();
    const idle: Child[] = [];
    for (const child of children) {
      if (child.kind !== 'execute' || child.exited || child.retiring) continue;
      total++;
      if (child.tenant === null || child.releasing) {
        spares++;
      } else {
        // A child running a retry alone is its tenant's too.
        held.set(child.tenant, (held.get(child.tenant) ?? 0) + 1);
        if (!child.exclusive && child.jobs.size === 0) idle.push(child);
      }
    }
    // What each waiting tenant asks for: a child per retry (each runs alone), one for its other calls.
    const asks = new Map<string, { retries: number; others: number }>();
    for (const job of queue) {
      if (job.kind !== 'execute') continue;
      const ask = asks.get(job.tenant) ?? { retries: 0, others: 0 };
      if (job.retried) ask.retries++;
      else ask.others = 1;
      asks.set(job.tenant, ask);
    }
    let wanted = spareChildren - spares;
    // Tenants holding no child, which alone may have another tenant's idle child handed back.
    let homeless = 0;
    for (const [tenant, ask] of asks) {
      const holds = held.get(tenant) ?? 0;
      // Never more than the tenant may hold at once (`size`), retries included.
      const more = Math.min(ask.retries + ask.others, size - holds);
      if (more <= 0) continue;
      wanted += more;
      if (holds === 0) homeless++;
    }
    wanted = Math.max(wanted, executeFloor - total);
    if (wanted <= 0) return;
    const now = performance.now();
    if (now < spawnAfter) {
      maintainTimer ??= setTimeout(() => {
        maintainTimer = undefined;
        maintain();
      }, spawnAfter - now).unref();
      return;
    }
    for (; wanted > 0 && total < maxExecuteChildren; wanted--, total++) spawnChild('execute');
    // At the cap, a tenant with no child gets the longest-idle child of a tenant not waiting; a
    // tenant that holds one (its retries, its stacked calls) waits for its own, and a spare is
    // not worth taking a child from anyone.
    let handBack = Math.min(wanted, homeless);
    if (handBack <= 0) return;
    idle.sort((a, b) => a.idleSince - b.idleSince);
    for (const child of idle) {
      if (handBack <= 0) break;
      if (child.tenant !== null && asks.has(child.tenant)) continue;
      release(child);
      handBack--;
    }
  }

  /**
   * Hands an idle execute child back to the spares once it shows that nothing of its tenant
   * still runs there: code can outlive its call, and a builtin that ignores interrupts keeps
   * its thread busy after its isolate is disposed, until V8 aborts the process.
   */
  function release(child: Child): void {
    child.releasing = setTimeout(() => {
      logger.warn(
        { pid: child.pid, tenant: child.tenant ?? undefined },
        'sandbox child kept working after its calls ended; stopping it',
      );
      child.process.kill('SIGKILL');
    }, releaseTimeoutMs);
    if (!post(child, { type: 'release' })) child.process.kill('SIGKILL');
  }

  /** Hands back children idle for `releaseIdleMs` and stops spares nobody needed for a minute. */
  function sweep(): void {
    const now = performance.now();
    let executeChildren = 0;
    let spares = 0;
    for (const child of children) {
      if (child.kind !== 'execute' || child.exited || child.retiring) continue;
      executeChildren++;
      if (child.tenant === null && child.started) spares++;
    }
    for (const child of children) {
      if (!usableForExecute(child) || child.jobs.size > 0) continue;
      if (child.tenant !== null) {
        if (now - child.idleSince >= releaseIdleMs) release(child);
      } else if (
        spares > spareChildren &&
        executeChildren > executeFloor &&
        now - child.idleSince >= SPARE_RETIRE_MS
      ) {
        child.retiring = true;
        stop(child);
        spares--;
        executeChildren--;
      }
    }
  }
  const sweeper = setInterval(sweep, SWEEP_MS);
  sweeper.unref();

  /** Sets a child's niceness; false if refused (giving a priority back needs CAP_SYS_NICE): it keeps the one it had. */
  function setNice(child: Child, nice: number): boolean {
    const givesBack = nice < child.nice;
    if (!reniceThreads(child.pid, nice)) {
      if (givesBack && fairCpu) {
        // Steering on could only push tenants down from now on: it stops.
        fairCpu = false;
        logger.warn(
          { pid: child.pid, nice: child.nice },
          'giving a sandbox child its priority back was refused (it needs CAP_SYS_NICE): CPU steering between tenants stops; children steered down are replaced when their tenant hands them back',
        );
      }
      return false;
    }
    child.nice = nice;
    return true;
  }

  /** One step of CPU fairness between tenants (`cpu-fairness.ts`). */
  function steerCpu(): void {
    if (!fairCpu) return;
    const now = performance.now();
    const byTenant = new Map<string, { usedCores: number; nice: number; children: Child[] }>();
    for (const child of children) {
      if (child.kind !== 'execute' || child.exited || !child.started) continue;
      const ticks = cpuTicksOf(child.pid);
      if (ticks === null) continue;
      const usedCores =
        child.cpuReadAt > 0
          ? (ticks - child.cpuTicks) / CLOCK_TICKS_PER_S / ((now - child.cpuReadAt) / 1000)
          : 0;
      child.cpuTicks = ticks;
      child.cpuReadAt = now;
      if (child.tenant === null) continue;
      const entry = byTenant.get(child.tenant) ?? { usedCores: 0, nice: child.nice, children: [] };
      entry.usedCores += usedCores;
      entry.nice = Math.max(entry.nice, child.nice);
      entry.children.push(child);
      byTenant.set(child.tenant, entry);
    }
    const tenants: TenantCpu[] = [...byTenant].map(([tenant, { usedCores, nice }]) => ({
      tenant,
      usedCores,
      nice,
    }));
    // A tenant whose calls wait for a child of its own: the one starting for it needs CPU.
    const waiting = new Set<string>();
    for (const job of queue) {
      if (job.kind === 'execute' && !byTenant.has(job.tenant)) waiting.add(job.tenant);
    }
    for (const tenant of waiting) tenants.push({ tenant, usedCores: 0, nice: childNice, waiting: true });
    const steered = steerNiceness(tenants, { baseNice: childNice, maxNice: 19 });
    for (const [tenant, entry] of byTenant) {
      const nice = steered.get(tenant) ?? entry.nice;
      if (steered.has(tenant)) logger.debug({ tenant, nice }, 'sandbox CPU share steered');
      // A child the tenant took since the last step joins the others.
      for (const child of entry.children) if (child.nice !== nice) setNice(child, nice);
    }
  }
  const fairness = fairCpu ? setInterval(steerCpu, FAIR_CPU_MS) : undefined;
  fairness?.unref();

  function submit(message: Job['message'], call: CallContext): Promise<SandboxResult> {
    const { tenant, upstream, signal, r2, tail } = call;
    if (closing) return Promise.resolve(failed('unavailable', 'the sandbox pool is closed'));
    if (signal?.aborted) return Promise.resolve(failed('aborted', 'the call was cancelled'));
    return new Promise((resolve) => {
      const onAbort = (): void => {
        const child = job.child;
        const id = job.id;
        if (child) post(child, { type: 'abort', id });
        settle(job, failed('aborted', 'the call was cancelled', job.upstreamRequests));
        if (child && job.kind === 'search') awaitStop(child, id);
      };
      const job: Job = {
        id: message.id,
        kind: message.type,
        message,
        tenant,
        limits: call.limits,
        ...(upstream ? { upstream } : {}),
        ...(r2 ? { r2 } : {}),
        ...(tail ? { tail } : {}),
        controller: new AbortController(),
        upstreamRequests: 0,
        retried: false,
        timers: [],
        extraWallMs: 0,
        finish: (result) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(result);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const child = pickChild(job);
      if (child) {
        dispatch(job, child);
        maintain();
        return;
      }
      let waitingOfTenant = 0;
      for (const other of queue) if (other.tenant === tenant) waitingOfTenant++;
      if (waitingOfTenant >= maxQueuedPerTenant) {
        settle(
          job,
          failed(
            'rate_limited',
            `${waitingOfTenant} calls of this organization are already waiting for a sandbox on this replica; retry once some have finished`,
          ),
        );
        return;
      }
      queue.push(job);
      waitInQueue(job);
      maintain();
    });
  }

  function isCurrent(child: Child): boolean {
    return (
      child.kind === 'search' &&
      child.started &&
      !child.exited &&
      !child.retiring &&
      child.specVersion === specVersion
    );
  }

  function notifyReady(): void {
    let current = 0;
    let executing = 0;
    for (const child of children) {
      if (isCurrent(child)) current++;
      else if (child.kind === 'execute' && child.started && !child.exited && !child.retiring) executing++;
    }
    if (current < size || executing < executeFloor) return;
    for (const waiter of readyWaiters) waiter.resolve();
    readyWaiters.clear();
  }

  for (let i = 0; i < size; i++) spawnChild('search');
  for (let i = 0; i < executeFloor; i++) spawnChild('execute');

  return {
    async search(code, searchOptions) {
      if (!(await spec)) return failed('unavailable', 'the API description is not loaded; retry shortly');
      return submit(
        { type: 'search', id: nextId++, code, access: searchOptions.access ?? null, limits },
        {
          tenant: searchOptions.tenant,
          limits,
          ...(searchOptions.signal ? { signal: searchOptions.signal } : {}),
        },
      );
    },

    execute(code, executeOptions) {
      const jobLimits = { ...limits, ...executeOptions.limits };
      return submit(
        {
          type: 'execute',
          id: nextId++,
          code,
          accountId: executeOptions.accountId ?? null,
          limits: jobLimits,
        },
        { ...executeOptions, limits: jobLimits },
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
          .filter((child) => child.kind === 'search' && child.started && !child.exited && !child.retiring)
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
        spares: list.filter((c) => usableForExecute(c) && c.tenant === null).length,
        specVersion,
        queued: queue.length,
        restarts,
        recycled,
        retried,
        released,
        memoryStops,
        children: list.map((c) => ({
          pid: c.pid,
          kind: c.kind,
          ready: c.kind === 'search' ? isCurrent(c) : c.started && !c.exited && !c.retiring,
          retiring: c.retiring,
          tenant: c.tenant,
          specVersion: c.specVersion,
          searches: c.searches,
          executions: c.executions,
          nice: c.nice,
        })),
      };
    },

    async close() {
      if (closing) return;
      closing = true;
      clearInterval(sweeper);
      clearInterval(fairness);
      clearTimeout(maintainTimer);
      const closed = new WardenError('unavailable', 'the sandbox pool is closed');
      for (const waiter of readyWaiters) waiter.reject(closed);
      readyWaiters.clear();
      const pending = [...queue, ...[...children].flatMap((child) => [...child.jobs.values()])];
      for (const job of pending) settle(job, failed('unavailable', closed.message, job.upstreamRequests));
      await Promise.all(
        [...children].map(
          (child) =>
            new Promise<void>((resolve) => {
              clearTimeout(child.releasing ?? undefined);
              if (child.exited) return resolve();
              child.process.once('exit', () => resolve());
              child.process.kill('SIGKILL');
            }),
        ),
      );
    },
  };
}
