/**
 * Shared pieces of the benchmark suites: argument parsing, percentiles, a fixed-duration
 * timing loop, a closed-loop HTTP load generator over keep-alive sockets and an RSS sampler.
 * Only node built-ins: the figures should not depend on which HTTP client happens to be hoisted.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { availableParallelism, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** `--name 3` or `--name=3`; the fallback when absent. Throws on a value that is not a positive number. */
export function numberArg(args: readonly string[], name: string, fallback: number): number {
  let raw: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === `--${name}`) raw = args[i + 1];
    else if (arg.startsWith(`--${name}=`)) raw = arg.slice(name.length + 3);
  }
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(`--${name}: expected a positive number, got ${raw}`);
  return value;
}

/** `--name value` or `--name=value`, as a string. */
export function stringArg(args: readonly string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === `--${name}`) return args[i + 1];
    if (arg.startsWith(`--${name}=`)) return arg.slice(name.length + 3);
  }
  return undefined;
}

export function flagArg(args: readonly string[], name: string): boolean {
  return args.includes(`--${name}`);
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function round(value: number, digits = 2): number {
  return Number(value.toFixed(digits));
}

/**
 * The machine is shared: every report carries the load and core count seen while it ran,
 * so a figure is never read without the conditions it was measured under.
 */
export function machineInfo(prefix: string): Record<string, number | string> {
  const [one, five] = loadavg();
  return {
    [`${prefix}_load_1m`]: round(one ?? 0),
    [`${prefix}_load_5m`]: round(five ?? 0),
  };
}

/**
 * What was measured: other people commit to and edit this working tree while suites run, so
 * the commit and the number of uncommitted files go with every report.
 */
export function environmentInfo(): Record<string, number | string> {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, {
        cwd: REPO_ROOT,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    } catch {
      return '';
    }
  };
  return {
    node_version: process.version,
    cores: availableParallelism(),
    git_commit: git('rev-parse', '--short', 'HEAD').trim() || 'unknown',
    git_uncommitted_files: git('status', '--porcelain').split('\n').filter(Boolean).length,
  };
}

export interface RateOptions {
  /** Measured time. */
  readonly seconds: number;
  /** Unmeasured time first, so JIT tiers, caches and pools settle. */
  readonly warmupSeconds: number;
  /** Operations between clock reads: keeps `performance.now()` out of sub-microsecond loops. */
  readonly batch?: number;
}

export interface RateResult {
  readonly perSecond: number;
  readonly operations: number;
  readonly seconds: number;
}

async function loopFor(
  op: () => unknown,
  seconds: number,
  batch: number,
): Promise<{ operations: number; elapsed: number }> {
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let operations = 0;
  let now = started;
  while (now < deadline) {
    for (let i = 0; i < batch; i++) {
      const result = op();
      // Synchronous baselines stay synchronous: awaiting them would charge them a microtask.
      if (result instanceof Promise) await result;
    }
    operations += batch;
    now = performance.now();
  }
  return { operations, elapsed: (now - started) / 1000 };
}

/** Runs `op` back to back for a fixed time after a warm-up; one operation in flight at a time. */
export async function measureRate(op: () => unknown, options: RateOptions): Promise<RateResult> {
  const batch = options.batch ?? 1;
  if (options.warmupSeconds > 0) await loopFor(op, options.warmupSeconds, batch);
  const { operations, elapsed } = await loopFor(op, options.seconds, batch);
  return { perSecond: operations / elapsed, operations, seconds: elapsed };
}

export interface LoadResult {
  readonly concurrency: number;
  readonly completed: number;
  readonly failed: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  /** The first failure seen, to show in the report rather than a bare count. */
  readonly firstError: string | null;
}

/**
 * A closed loop: `concurrency` workers (numbered, so a call can pick its tenant or connection)
 * each issue the next call as soon as the previous one answered, for a fixed time after a warm-up. Throughput and latency come from the same calls;
 * failed calls are counted separately and excluded from both.
 */
export async function runLoad(
  call: (worker: number) => Promise<void>,
  options: { concurrency: number; seconds: number; warmupSeconds: number },
): Promise<LoadResult> {
  const phase = async (seconds: number, record: boolean) => {
    const latencies: number[] = [];
    let failed = 0;
    let firstError: string | null = null;
    const started = performance.now();
    const deadline = started + seconds * 1000;
    await Promise.all(
      Array.from({ length: options.concurrency }, async (_, worker) => {
        while (performance.now() < deadline) {
          const t0 = performance.now();
          try {
            await call(worker);
            if (record) latencies.push(performance.now() - t0);
          } catch (error) {
            failed++;
            firstError ??= error instanceof Error ? error.message : String(error);
          }
        }
      }),
    );
    // The last calls may finish after the deadline: divide by the time actually spent.
    return { latencies, failed, firstError, elapsed: (performance.now() - started) / 1000 };
  };
  if (options.warmupSeconds > 0) await phase(options.warmupSeconds, false);
  const { latencies, failed, firstError, elapsed } = await phase(options.seconds, true);
  return {
    concurrency: options.concurrency,
    completed: latencies.length,
    failed,
    seconds: elapsed,
    perSecond: latencies.length / elapsed,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    p99Ms: percentile(latencies, 99),
    firstError,
  };
}

/**
 * Calls of several kinds made in turn by one worker (a, b, c, a, b, c, …) for `seconds` after
 * `warmupSeconds`: each kind's latencies are taken under the same machine state, so their
 * difference is not the drift between two phases run seconds apart. Any failure throws.
 */
export async function runAlternating(
  calls: Readonly<Record<string, () => Promise<void>>>,
  options: { seconds: number; warmupSeconds: number },
): Promise<Record<string, { p50Ms: number; p95Ms: number; completed: number }>> {
  const kinds = Object.entries(calls);
  const latencies = new Map<string, number[]>(kinds.map(([kind]) => [kind, []]));
  const turns = async (seconds: number, record: boolean) => {
    const deadline = performance.now() + seconds * 1000;
    while (performance.now() < deadline) {
      for (const [kind, call] of kinds) {
        const t0 = performance.now();
        await call();
        if (record) latencies.get(kind)?.push(performance.now() - t0);
      }
    }
  };
  if (options.warmupSeconds > 0) await turns(options.warmupSeconds, false);
  await turns(options.seconds, true);
  return Object.fromEntries(
    [...latencies].map(([kind, samples]) => [
      kind,
      { p50Ms: percentile(samples, 50), p95Ms: percentile(samples, 95), completed: samples.length },
    ]),
  );
}

/** Flat `<prefix>_p50_ms` etc. keys, as the runner's table view prefers. */
export function loadFigures(prefix: string, result: LoadResult): Record<string, number | string> {
  return {
    [`${prefix}_p50_ms`]: round(result.p50Ms),
    [`${prefix}_p95_ms`]: round(result.p95Ms),
    [`${prefix}_p99_ms`]: round(result.p99Ms),
    [`${prefix}_per_s`]: round(result.perSecond, 1),
    [`${prefix}_calls`]: result.completed,
    [`${prefix}_failed`]: result.failed,
    ...(result.firstError ? { [`${prefix}_first_error`]: result.firstError } : {}),
  };
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface HttpClient {
  request(options: {
    method: string;
    path: string;
    headers?: Record<string, string>;
    body?: unknown;
  }): Promise<HttpResponse>;
  close(): void;
}

/**
 * node:http over a keep-alive agent: connections are reused, so a figure measures requests,
 * not TCP handshakes. `maxSockets` should be at least the concurrency, or calls queue in the agent.
 */
export function createHttpClient(origin: string, options: { maxSockets: number }): HttpClient {
  const url = new URL(origin);
  const agent = new Agent({
    keepAlive: true,
    maxSockets: options.maxSockets,
    maxFreeSockets: options.maxSockets,
  });
  return {
    request({ method, path, headers = {}, body }) {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      return new Promise<HttpResponse>((resolve, reject) => {
        const req = httpRequest(
          {
            agent,
            host: url.hostname,
            port: url.port,
            method,
            path,
            headers: {
              ...headers,
              ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
            );
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(payload);
      });
    },
    close() {
      agent.destroy();
    },
  };
}

/** Samples this process's RSS on a timer; `stop()` returns the peak in MB. */
export function sampleRss(intervalMs = 20): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage.rss());
      return peak / 1024 / 1024;
    },
  };
}

/** Linux `USER_HZ`: /proc reports CPU time in these ticks (100 on every mainstream kernel). */
const CLOCK_TICKS_PER_S = 100;

function procStatCpuMs(pid: number): number {
  return procStatTimes(pid).own;
}

/**
 * CPU time (ms) of a process itself (`own`), and of its children that have exited and been
 * reaped (`reaped`: cutime and cstime).
 */
function procStatTimes(pid: number): { own: number; reaped: number } {
  // Fields after the parenthesised command name (which may itself contain spaces).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime and cstime are fields 14 to 17 of the whole line, 12 to 15 after the name.
  const ms = (index: number) => (Number(fields[index]) * 1000) / CLOCK_TICKS_PER_S;
  return { own: ms(11) + ms(12), reaped: ms(13) + ms(14) };
}

function childPids(pid: number): number[] {
  const pids: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    if (text) pids.push(...text.split(/\s+/).map(Number));
  }
  return pids;
}

/**
 * CPU time (ms) used so far by a process (`self`) and by all its descendants (`descendants`: the
 * connector's sandbox children), those that exited and were reaped included: a child recycled
 * during a measurement still counts for what it used. Linux only; null where /proc cannot be
 * read, so figures are omitted rather than wrong.
 */
export function processTreeCpuMs(pid: number): { self: number; descendants: number } | null {
  const tree = (p: number): number => {
    const times = procStatTimes(p);
    let total = times.own + times.reaped;
    for (const child of childPids(p)) total += tree(child);
    return total;
  };
  try {
    const { own, reaped } = procStatTimes(pid);
    return { self: own, descendants: reaped + childPids(pid).reduce((sum, child) => sum + tree(child), 0) };
  } catch {
    return null;
  }
}

/**
 * CPU time (ms) used so far by each PostgreSQL and Redis server process, by pid. With a
 * `database`, PostgreSQL backends of other databases are left out (the server is shared with
 * other people's tests); background processes (WAL writer, checkpointer…) are kept, since they
 * work for every database. Redis is a single shared process and is counted whole.
 */
function serverCpuMs(
  database: string | null,
  own: { postmasterPid?: number; redisPid?: number } = {},
): Map<number, { kind: 'postgres' | 'redis'; ms: number }> {
  const out = new Map<number, { kind: 'postgres' | 'redis'; ms: number }>();
  // A private server of the run's own: its processes alone, background ones included.
  if (own.postmasterPid !== undefined || own.redisPid !== undefined) {
    const add = (pid: number, kind: 'postgres' | 'redis') => {
      try {
        out.set(pid, { kind, ms: procStatCpuMs(pid) });
      } catch {
        // Exited meanwhile.
      }
    };
    if (own.postmasterPid !== undefined) {
      add(own.postmasterPid, 'postgres');
      try {
        for (const child of childPids(own.postmasterPid)) add(child, 'postgres');
      } catch {
        // The postmaster is gone.
      }
    }
    if (own.redisPid !== undefined) add(own.redisPid, 'redis');
    return out;
  }
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (name === 'redis-server') out.set(pid, { kind: 'redis', ms: procStatCpuMs(pid) });
      if (name !== 'postgres') continue;
      if (database !== null) {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
        // Backends show their client as `host(port)` or `[local]`; background processes do not.
        const backend = /\(\d+\)|\[local\]/.test(cmdline);
        if (backend && !cmdline.includes(` ${database} `)) continue;
      }
      out.set(pid, { kind: 'postgres', ms: procStatCpuMs(pid) });
    } catch {
      // The process exited between readdir and read.
    }
  }
  return out;
}

/** Whole-machine busy and total CPU time (ms, summed over cores) from /proc/stat. */
function machineCpuMs(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] as string;
    const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = values.reduce((a, b) => a + b, 0);
    // idle + iowait are not busy; guest time is already inside user time, hence the slice.
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    return { busy: ((total - idle) * 1000) / CLOCK_TICKS_PER_S, total: (total * 1000) / CLOCK_TICKS_PER_S };
  } catch {
    return null;
  }
}

/** Where the machine's CPU went during a measurement, in ms; null parts could not be read. */
export interface CpuAccount {
  readonly wallMs: number;
  /** This process (load generator, in-process fakes). */
  readonly benchMs: number;
  /** The service process itself and its descendants (sandbox children). */
  readonly serviceMs: number | null;
  readonly sandboxMs: number | null;
  readonly postgresMs: number;
  readonly redisMs: number;
  /** Whole machine, all cores; `otherMs` is what none of the above used: other people's work. */
  readonly machineBusyMs: number | null;
  readonly machineCapacityMs: number | null;
  readonly otherMs: number | null;
}

/**
 * Starts accounting CPU by owner: on a shared machine every throughput figure comes with how
 * much CPU each part of the system used for it, and how much went to unrelated processes.
 * `servicePid` is the process under test (its descendants are reported apart); a process that
 * exits before `stop()` can report its own CPU time there instead.
 */
export function startCpuAccount(
  options: {
    servicePid?: number | null;
    database?: string | null;
    /** Private servers of the run: count exactly their processes instead of the shared ones. */
    postmasterPid?: number;
    redisPid?: number;
  } = {},
): {
  stop(overrides?: { serviceMs?: number }): CpuAccount;
} {
  const servicePid = options.servicePid ?? null;
  const database = options.database ?? null;
  const own = {
    ...(options.postmasterPid !== undefined ? { postmasterPid: options.postmasterPid } : {}),
    ...(options.redisPid !== undefined ? { redisPid: options.redisPid } : {}),
  };
  const wall = performance.now();
  const bench = process.cpuUsage();
  const service = servicePid === null ? null : processTreeCpuMs(servicePid);
  const servers = serverCpuMs(database, own);
  // Connections opened and closed within the measurement (an export child's pool) exit before
  // stop(): polling keeps the last CPU time seen of every server process, exited ones included.
  const lastSeen = new Map(servers);
  const poll = () => {
    for (const [pid, seen] of serverCpuMs(database, own)) lastSeen.set(pid, seen);
  };
  const poller = setInterval(poll, 500);
  poller.unref();
  const machine = machineCpuMs();
  return {
    stop(overrides = {}) {
      clearInterval(poller);
      const benchUsage = process.cpuUsage(bench);
      const serviceNow = servicePid === null ? null : processTreeCpuMs(servicePid);
      poll();
      const serversNow = lastSeen;
      const machineNow = machineCpuMs();
      const benchMs = (benchUsage.user + benchUsage.system) / 1000;
      const serviceMs =
        overrides.serviceMs ?? (service && serviceNow ? serviceNow.self - service.self : null);
      const sandboxMs =
        service && serviceNow ? Math.max(0, serviceNow.descendants - service.descendants) : null;
      // Per process, so one that exited meanwhile (a closed connection) cannot make a total go
      // negative; one that started meanwhile counts whole (up to its last poll if it exited).
      let postgresMs = 0;
      let redisMs = 0;
      for (const [pid, now] of serversNow) {
        const used = now.ms - (servers.get(pid)?.ms ?? 0);
        if (now.kind === 'postgres') postgresMs += used;
        else redisMs += used;
      }
      const machineBusyMs = machine && machineNow ? machineNow.busy - machine.busy : null;
      const ours = benchMs + (serviceMs ?? 0) + (sandboxMs ?? 0) + postgresMs + redisMs;
      return {
        wallMs: performance.now() - wall,
        benchMs,
        serviceMs,
        sandboxMs,
        postgresMs,
        redisMs,
        machineBusyMs,
        machineCapacityMs: machine && machineNow ? machineNow.total - machine.total : null,
        otherMs: machineBusyMs === null ? null : Math.max(0, machineBusyMs - ours),
      };
    },
  };
}

/**
 * Flat figures of a CpuAccount: CPU ms per unit of work for each owner, plus how busy the
 * machine was and the share unrelated processes took (both as % of all cores).
 */
export function cpuFigures(
  prefix: string,
  cpu: CpuAccount,
  units: number,
  unit: string,
): Record<string, number> {
  const per = (ms: number) => round(ms / Math.max(1, units), 3);
  const out: Record<string, number> = {
    [`${prefix}_bench_cpu_ms_per_${unit}`]: per(cpu.benchMs),
    [`${prefix}_postgres_cpu_ms_per_${unit}`]: per(cpu.postgresMs),
    [`${prefix}_redis_cpu_ms_per_${unit}`]: per(cpu.redisMs),
  };
  if (cpu.serviceMs !== null) out[`${prefix}_service_cpu_ms_per_${unit}`] = per(cpu.serviceMs);
  if (cpu.sandboxMs !== null) out[`${prefix}_sandbox_cpu_ms_per_${unit}`] = per(cpu.sandboxMs);
  if (cpu.machineBusyMs !== null && cpu.machineCapacityMs) {
    out[`${prefix}_machine_busy_pct`] = round((100 * cpu.machineBusyMs) / cpu.machineCapacityMs, 1);
    out[`${prefix}_other_processes_cpu_pct`] = round((100 * (cpu.otherMs ?? 0)) / cpu.machineCapacityMs, 1);
  }
  return out;
}
