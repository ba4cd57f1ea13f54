/**
 * `npm run bench -- execute [--json] [--seconds 8] [--warmup 2] [--levels 1,16,64] [--log-level info] [--cpu-prof] [--no-mcp] [--egress-limit 0]`:
 * `POST /api/v1/execute_tool` end to end over real HTTP, at concurrency 1, 16 and 64, with
 * the same upstream GET sent straight to the fake Cloudflare in the same run as the baseline,
 * and the same call over MCP (streamable HTTP, the official SDK client) at concurrency 1 and 16.
 *
 * MCP against REST (issue 20: `mcp_over_rest_p50_ms`, at most 1 ms) is taken from one phase in
 * which a single worker makes a direct GET, a REST execute and an MCP execute in turn
 * (`c1_alternating_*`): phases run seconds apart drift on a shared machine by more than that
 * 1 ms (the same commit measured MCP 3.6 ms faster than REST in one run and 1.7 ms slower in
 * the next), while in turns the difference held at 0.45–0.47 ms. `rest_execute_added_p50_ms` and
 * `mcp_execute_added_p50_ms` stay as before: each phase's p50 less the direct phase's, run alone.
 *
 * It also measures, in the same run, the floor of one execute (issue 20): a fresh isolate
 * created, a trivial script compiled and run and the isolate disposed (`floor_isolate_cpu_ms`,
 * in this process, no IPC); one audit-sized INSERT round trip (`floor_postgres_cpu_ms`, client
 * and server CPU); one Redis EVALSHA of the budget script (`floor_redis_cpu_ms`, client and
 * server); one direct GET to the fake Cloudflare (`floor_upstream_cpu_ms`, client and fake, both
 * in this process); their sum `floor_cpu_ms`; and `execute_cpu_ms_per_call`, the CPU of one
 * execute at concurrency 16 in every process it uses (service, sandbox children, PostgreSQL,
 * Redis), with `execute_to_floor_ratio` (issue 20's target: at most 2).
 *
 * The floor is measured on an otherwise idle machine, one thing at a time, while the c16 phase
 * keeps every core busy. Where cores slow each other down (hyperthreads, a hypervisor), that alone
 * makes `execute_cpu_ms_per_call` larger, so the bench also times the isolate loop in one process
 * per core at once (`floor_isolate_saturated_cpu_ms`, see `floor-isolate.ts`), with
 * `floor_saturated_cpu_ms` (the same sum with that isolate part) and
 * `execute_to_saturated_floor_ratio`. They show how much of the gap is the machine's; the target
 * stays `execute_to_floor_ratio`. `pg_round_trips_per_call` counts the statements clients
 * sent per call (pg_stat_statements) and `calibration_loop_ms` times a fixed pure-JS loop, so
 * figures from different machines can be compared.
 *
 * Set-up, all on loopback:
 * - The connector runs as a child process (`node --no-node-snapshot services/connector/src/main.ts`,
 *   as `npm start` does), so it has its own event loop and its CPU is not shared with the load
 *   generator's; its logs (LOG_LEVEL info by default, as in production) go to a file.
 * - PostgreSQL and Redis servers of the run's own (`private-servers.ts`), so their CPU and
 *   statement counts are this run's alone on a machine others share; the service migrates.
 * - The fake Cloudflare in this process with its own rate limit off; a fresh fake user per run,
 *   so Redis budget keys never collide with another run's. The deployment's budget is raised to
 *   100000/1 (`CLOUDFLARE_BUDGET`; tenants may only lower it) so Warden never refuses, and the
 *   egress limit is off (`CLOUDFLARE_EGRESS_LIMIT=0`): on by default it keeps one egress IP to
 *   Cloudflare's 200 requests per second, which capped c16 at about 197 calls/s with cores to
 *   spare, so the figure measured the limit, not Warden. A deployment that needs more than 200
 *   requests a second spreads its replicas over egress IPs (`CLOUDFLARE_EGRESS_POOL`).
 *   `--egress-limit 200` runs with the default on, to see what its Redis scripts cost per call
 *   (two more per upstream request; throughput is then capped near the limit).
 * - One connected account; every call runs `cloudflare.request({method: 'GET', path: '/zones/<id>'})`
 *   and returns the zone id, which is checked.
 * - Load: closed loop, node:http with keep-alive sockets (one per worker); `--seconds` measured
 *   after `--warmup` unmeasured per level. Direct calls use the same client code.
 *
 * For each execute level it also reports where a call waited, from the service's own /metrics
 * (`warden_upstream_request_duration_seconds`, `warden_audit_append_duration_seconds`):
 * `*_upstream_answer_ms_mean` (Cloudflare's answer, here the fake's), `*_audit_append_ms_mean`
 * (an append from the call to its commit, group-commit waits included) and
 * `*_audit_appends_per_call`.
 *
 * Besides latency and throughput it reports, per level, the CPU used per call by the connector,
 * its sandbox children, PostgreSQL, Redis and this process (from /proc), how busy the machine's
 * cores were and how much of them unrelated processes took: on a shared 2-core machine a
 * throughput figure means little without them.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Client as McpClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { createRedisWindows } from '@warden/ratelimit';
import { FAKE_CF_ALL_PERMISSIONS, freePort, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import {
  REPO_ROOT,
  cpuFigures,
  createHttpClient,
  environmentInfo,
  flagArg,
  loadFigures,
  machineInfo,
  numberArg,
  round,
  runAlternating,
  runLoad,
  startCpuAccount,
  stringArg,
} from './bench-utils.ts';
import type { CpuAccount, HttpClient, LoadResult } from './bench-utils.ts';
import { floorIsolateCpuMs, saturatedFloorIsolateCpuMs } from './floor-isolate.ts';
import { startPostgres, startRedis, waitForRedis } from './private-servers.ts';
import type { PrivatePostgres, PrivateRedis } from './private-servers.ts';
import { specFixturePath } from '@warden/testing';

const SPEC_PATH = specFixturePath();
const DEFAULT_LEVELS = [1, 16, 64];
const MCP_LEVELS = [1, 16];
const DATABASE = 'warden';

/** Wall time of a fixed pure-JS loop: the machine's single-thread speed, for comparing runs. */
function calibrationLoopMs(): number {
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const start = performance.now();
    let x = 0;
    for (let i = 0; i < 20_000_000; i++) x = (x * 31 + i) | 0;
    if (x === 42) process.stdout.write('');
    runs.push(performance.now() - start);
  }
  return Math.min(...runs);
}

/** An audit-sized row (the columns and sizes of an upstream request's record). */
const FLOOR_ROW = {
  id: 'aud_floor000000000000000',
  tenant_id: 'ten_floor00000000000000',
  kind: 'upstream_request',
  action: 'cloudflare.request',
  outcome: 'success',
  execution_id: 'exe_floor00000000000000',
  identifier: 'bench-agent',
  upstream_path: '/zones/0123456789abcdef0123456789abcdef',
  prev_hash: 'a'.repeat(64),
  hash: 'b'.repeat(64),
};
const READY_TIMEOUT_MS = 180_000;

export interface Connector {
  readonly origin: string;
  readonly child: ChildProcess;
  readonly logFile: string;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-4000);
  } catch {
    return '(no log)';
  }
}

export async function startConnector(
  dir: string,
  env: Record<string, string>,
  nodeArgs: string[],
): Promise<Connector> {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const logFile = path.join(dir, 'connector.log');
  // A file, not a pipe: draining a pipe would cost the load generator CPU on every log line.
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...nodeArgs, 'services/connector/src/main.ts'], {
    cwd: REPO_ROOT,
    // Only what the service needs, so nothing from this shell (NODE_OPTIONS…) changes how it runs.
    env: {
      ...(process.env.PATH ? { PATH: process.env.PATH } : {}),
      HOST: '127.0.0.1',
      PORT: String(port),
      PUBLIC_URL: origin,
      ...env,
    },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last: string;
  while (!exited(child)) {
    try {
      const res = await fetch(`${origin}/readyz`, { signal: AbortSignal.timeout(5_000) });
      last = `${res.status} ${await res.text()}`;
      if (res.status === 200) return { origin, child, logFile };
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `connector not ready within ${READY_TIMEOUT_MS} ms (last /readyz: ${last}):\n${logTail(logFile)}`,
      );
    }
    await delay(250);
  }
  throw new Error(`connector exited before it was ready (code ${child.exitCode}):\n${logTail(logFile)}`);
}

export async function stopConnector(connector: Connector): Promise<void> {
  const { child } = connector;
  if (exited(child)) return;
  const exit = once(child, 'exit');
  child.kill('SIGTERM');
  // The service drains for up to 25 s; a benchmark should not wait that long for a stuck one.
  const timedOut = await Promise.race([exit.then(() => false), delay(30_000).then(() => true)]);
  if (timedOut) {
    child.kill('SIGKILL');
    await exit;
  }
}

export async function json(
  client: HttpClient,
  method: string,
  pathname: string,
  headers: Record<string, string>,
  body: unknown,
  expected: number,
): Promise<Record<string, unknown>> {
  const res = await client.request({ method, path: pathname, headers, body });
  const text = res.body.toString('utf8');
  if (res.status !== expected) throw new Error(`${method} ${pathname}: ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/**
 * A tenant made through the admin API with one connected account (`bench-agent`) holding
 * `apiToken`; returns the tenant's authorization header.
 */
export async function benchTenant(
  client: HttpClient,
  adminToken: string,
  apiToken: string,
): Promise<{ authorization: string }> {
  const created = await json(
    client,
    'POST',
    '/admin/v1/tenants',
    { authorization: `Bearer ${adminToken}` },
    { name: 'Bench tenant' },
    201,
  );
  const tenantAuth = { authorization: `Bearer ${created.api_key as string}` };
  await json(
    client,
    'POST',
    '/api/v1/connected_accounts',
    tenantAuth,
    { identifier: 'bench-agent', authorization: { type: 'api_token', api_token: apiToken } },
    201,
  );
  return tenantAuth;
}

/** Seconds and count of a histogram of the connector's /metrics, summed over its label sets. */
interface StepTotals {
  readonly upstreamSeconds: number;
  readonly upstreamCount: number;
  readonly auditSeconds: number;
  readonly auditCount: number;
}

function histogramTotal(metrics: string, name: string, part: 'sum' | 'count'): number {
  let total = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith(`${name}_${part}{`) || line.startsWith(`${name}_${part} `)) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}

/** What the service's step histograms held at this moment (see step-timings.ts). */
async function stepTotals(client: HttpClient): Promise<StepTotals> {
  const response = await client.request({ method: 'GET', path: '/metrics' });
  const body = response.body.toString('utf8');
  return {
    upstreamSeconds: histogramTotal(body, 'warden_upstream_request_duration_seconds', 'sum'),
    upstreamCount: histogramTotal(body, 'warden_upstream_request_duration_seconds', 'count'),
    auditSeconds: histogramTotal(body, 'warden_audit_append_duration_seconds', 'sum'),
    auditCount: histogramTotal(body, 'warden_audit_append_duration_seconds', 'count'),
  };
}

interface Phase {
  readonly load: LoadResult;
  readonly cpu: CpuAccount;
  /** How the service's step histograms grew during the phase (execute phases only). */
  readonly steps: StepTotals | null;
}

/** One load level, with where the machine's CPU went while it ran. */
async function measure(
  call: () => Promise<void>,
  options: { concurrency: number; seconds: number; warmupSeconds: number },
  accounting: { servicePid: number | null; database: string; postmasterPid?: number; redisPid?: number },
  metrics: HttpClient | null = null,
): Promise<Phase> {
  if (options.warmupSeconds > 0) {
    await runLoad(call, { ...options, seconds: options.warmupSeconds, warmupSeconds: 0 });
  }
  const before = metrics ? await stepTotals(metrics) : null;
  const cpu = startCpuAccount(accounting);
  const load = await runLoad(call, { ...options, warmupSeconds: 0 });
  const cpuAccount = cpu.stop();
  const after = metrics ? await stepTotals(metrics) : null;
  const steps =
    before && after
      ? {
          upstreamSeconds: after.upstreamSeconds - before.upstreamSeconds,
          upstreamCount: after.upstreamCount - before.upstreamCount,
          auditSeconds: after.auditSeconds - before.auditSeconds,
          auditCount: after.auditCount - before.auditCount,
        }
      : null;
  return { load, cpu: cpuAccount, steps };
}

/**
 * Load, CPU and, for execute phases, where a call waited: Cloudflare's mean answer time and the
 * mean audit append (from the service's /metrics), with appends per call.
 */
function phaseFigures(prefix: string, phase: Phase): Record<string, unknown> {
  const { steps } = phase;
  const mean = (seconds: number, count: number) => (count > 0 ? round((seconds * 1000) / count, 3) : null);
  return {
    ...loadFigures(prefix, phase.load),
    ...cpuFigures(prefix, phase.cpu, phase.load.completed, 'call'),
    ...(steps
      ? {
          [`${prefix}_upstream_answer_ms_mean`]: mean(steps.upstreamSeconds, steps.upstreamCount),
          [`${prefix}_audit_append_ms_mean`]: mean(steps.auditSeconds, steps.auditCount),
          [`${prefix}_audit_appends_per_call`]:
            phase.load.completed > 0 ? round(steps.auditCount / phase.load.completed, 2) : null,
        }
      : {}),
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const seconds = numberArg(args, 'seconds', 8);
  const warmupSeconds = numberArg(args, 'warmup', 2);
  const logLevel = stringArg(args, 'log-level') ?? 'info';
  const cpuProf = flagArg(args, 'cpu-prof');
  // 0 (off) unless asked: see the header. A deployment's default is 200.
  const egressLimit = numberArg(args, 'egress-limit', 0);
  // `--levels 16` narrows a profiling run to one level; 1 always runs (it is the latency baseline).
  const levels = [
    ...new Set([1, ...(stringArg(args, 'levels')?.split(',').map(Number) ?? DEFAULT_LEVELS)]),
  ].filter((n) => Number.isInteger(n) && n > 0);
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-execute-'));
  const adminToken = randomBytes(32).toString('hex');
  const withMcp = !flagArg(args, 'no-mcp');
  let cf: FakeCloudflare | null = null;
  let postgres: PrivatePostgres | null = null;
  let redisServer: PrivateRedis | null = null;
  let admin: pg.Client | null = null;
  let redis: Redis | null = null;
  let connector: Connector | null = null;
  const mcpClients: McpClient[] = [];
  const clients: HttpClient[] = [];
  const started = machineInfo('start');
  try {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, budget: null });
    const user = cf.state.createUser({ email: `bench-${randomBytes(6).toString('hex')}@example.com` });
    const account = cf.state.createAccount({ name: 'Bench', members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'bench.example.com' });
    const token = cf.state.createUserToken({ userId: user.id, permissions: FAKE_CF_ALL_PERMISSIONS });

    postgres = startPostgres(await freePort(), DATABASE);
    redisServer = startRedis(await freePort());
    admin = new pg.Client({ connectionString: postgres.adminUrl });
    await admin.connect();
    await admin.query(`create database ${DATABASE}`);
    await admin.query('create extension if not exists pg_stat_statements');
    redis = await waitForRedis(redisServer.url);
    const database = DATABASE;
    const servers = { postmasterPid: postgres.postmasterPid, redisPid: redisServer.pid };
    const profileDir = path.join(dir, 'cpu-profiles');
    connector = await startConnector(
      dir,
      {
        DATABASE_URL: postgres.url,
        REDIS_URL: redisServer.url,
        DATA_DIR: path.join(dir, 'data'),
        WARDEN_ADMIN_TOKEN: adminToken,
        CLOUDFLARE_API_BASE: cf.url,
        CLOUDFLARE_SPEC_PATH: SPEC_PATH,
        CLOUDFLARE_BUDGET: '100000/1',
        CLOUDFLARE_EGRESS_LIMIT: String(egressLimit),
        LOG_LEVEL: logLevel,
      },
      ['--no-node-snapshot', ...(cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
    );
    const servicePid = connector.child.pid ?? null;

    const setup = createHttpClient(connector.origin, { maxSockets: 1 });
    clients.push(setup);
    const tenantAuth = await benchTenant(setup, adminToken, token.value);

    const executeBody = {
      tool_name: 'cloudflare_execute',
      identifier: 'bench-agent',
      params: {
        code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zone.id}' })).result.id`,
      },
    };
    const maxSockets = Math.max(...levels);
    const warden = createHttpClient(connector.origin, { maxSockets });
    const direct = createHttpClient(cf.origin, { maxSockets });
    clients.push(warden, direct);

    const execute = async () => {
      const res = await warden.request({
        method: 'POST',
        path: '/api/v1/execute_tool',
        headers: tenantAuth,
        body: executeBody,
      });
      if (res.status !== 200)
        throw new Error(`execute_tool answered ${res.status}: ${res.body.toString('utf8')}`);
      const answer = JSON.parse(res.body.toString('utf8')) as { data: unknown; error?: { code: string } };
      if (answer.error || answer.data !== zone.id)
        throw new Error(`execute_tool failed: ${res.body.toString('utf8')}`);
    };
    const directGet = async () => {
      const res = await direct.request({
        method: 'GET',
        path: `/client/v4/zones/${zone.id}`,
        headers: { authorization: `Bearer ${token.value}`, accept: 'application/json' },
      });
      if (res.status !== 200)
        throw new Error(`direct GET answered ${res.status}: ${res.body.toString('utf8')}`);
      const answer = JSON.parse(res.body.toString('utf8')) as { result: { id: string } };
      if (answer.result.id !== zone.id) throw new Error('direct GET returned another zone');
    };
    // Proves the path works before anything is timed.
    await execute();
    await directGet();

    /** Statements clients sent to the service's database so far (top level, not in functions). */
    const statements = async (): Promise<number> => {
      const { rows } = await (admin as pg.Client).query<{ n: string }>(
        `select coalesce(sum(s.calls), 0)::text as n from pg_stat_statements s
         join pg_database d on d.oid = s.dbid where d.datname = $1 and s.toplevel`,
        [DATABASE],
      );
      return Number(rows[0]?.n ?? 0);
    };

    const figures: Record<string, unknown> = {};
    const timing = { seconds, warmupSeconds };
    // The baseline right before the c1 run it is subtracted from, so both see the same machine.
    const directC1 = await measure(
      directGet,
      { concurrency: 1, ...timing },
      { servicePid: null, database, ...servers },
    );
    Object.assign(figures, phaseFigures('direct', directC1));
    const upstreamBefore = cf.requestCount();
    let executeCalls = 0;
    const executeLevels = new Map<number, Phase>();
    let roundTrips: number | null = null;
    for (const concurrency of levels) {
      // At 16 the warm-up runs first on its own, so the statement count covers measured calls only.
      if (concurrency === 16 && warmupSeconds > 0) {
        await runLoad(execute, { concurrency, seconds: warmupSeconds, warmupSeconds: 0 });
      }
      const before = concurrency === 16 ? await statements() : 0;
      const phase = await measure(
        execute,
        { concurrency, ...timing, ...(concurrency === 16 ? { warmupSeconds: 0 } : {}) },
        { servicePid, database, ...servers },
        setup,
      );
      if (concurrency === 16) roundTrips = (await statements()) - before;
      executeLevels.set(concurrency, phase);
      executeCalls += phase.load.completed;
      Object.assign(figures, phaseFigures(`c${concurrency}_execute`, phase));
    }
    const c16 = executeLevels.get(16);
    if (roundTrips !== null && c16) {
      figures.pg_round_trips_per_call = round(roundTrips / c16.load.completed, 2);
    }

    // The same call over MCP (streamable HTTP). The official SDK client connects once to prove
    // the endpoint; the timed calls are the same JSON-RPC `tools/call` POSTs it sends, made with
    // the bench's lean HTTP client so the client library's own CPU does not count as Warden's.
    if (withMcp) {
      const minted = await json(
        setup,
        'POST',
        '/api/v1/mcp/tokens',
        tenantAuth,
        { identifier: 'bench-agent', expiry: '1d' },
        201,
      );
      const mcpUrl = new URL(`${connector.origin}/mcp`);
      const bearer = { Authorization: `Bearer ${minted.token as string}` };
      const client = new McpClient({ name: 'warden-bench', version: '1.0.0' });
      const transport = new StreamableHTTPClientTransport(mcpUrl, { requestInit: { headers: bearer } });
      await client.connect(transport);
      mcpClients.push(client);
      const checked = await client.callTool({ name: 'cloudflare_execute', arguments: executeBody.params });
      if (checked.isError) throw new Error(`MCP execute failed: ${JSON.stringify(checked.content)}`);
      const mcpHeaders = {
        authorization: bearer.Authorization,
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': transport.protocolVersion ?? '2025-06-18',
      };
      let rpcId = 0;
      const mcpExecute = async () => {
        const res = await warden.request({
          method: 'POST',
          path: '/mcp',
          headers: mcpHeaders,
          body: {
            jsonrpc: '2.0',
            id: ++rpcId,
            method: 'tools/call',
            params: { name: 'cloudflare_execute', arguments: executeBody.params },
          },
        });
        const text = res.body.toString('utf8');
        if (res.status !== 200 || !text.includes(zone.id) || text.includes('"isError":true')) {
          throw new Error(`MCP execute failed: ${res.status} ${text}`);
        }
      };
      await mcpExecute();
      // MCP against REST (issue 20: at most 1 ms more), taken in turns by one worker with the
      // direct call, so the comparison is not the drift between phases run seconds apart.
      const turns = await runAlternating({ direct: directGet, rest: execute, mcp: mcpExecute }, timing);
      const p50 = (kind: string) => turns[kind]?.p50Ms ?? Number.NaN;
      Object.assign(figures, {
        c1_alternating_direct_p50_ms: round(p50('direct')),
        c1_alternating_rest_p50_ms: round(p50('rest')),
        c1_alternating_mcp_p50_ms: round(p50('mcp')),
        c1_alternating_calls_each: turns.rest?.completed ?? 0,
        mcp_over_rest_p50_ms: round(p50('mcp') - p50('rest')),
      });
      for (const concurrency of MCP_LEVELS) {
        const phase = await measure(
          mcpExecute,
          { concurrency, ...timing },
          { servicePid, database, ...servers },
          setup,
        );
        Object.assign(figures, phaseFigures(`c${concurrency}_mcp_execute`, phase));
        if (concurrency === 1)
          figures.mcp_execute_added_p50_ms = round(phase.load.p50Ms - directC1.load.p50Ms);
      }
    }
    // Every call (warm-ups included) should reach Cloudflare exactly once.
    const warmupCalls = cf.requestCount() - upstreamBefore - executeCalls;
    const directC16 = await measure(
      directGet,
      { concurrency: 16, ...timing },
      { servicePid: null, database, ...servers },
    );
    Object.assign(figures, phaseFigures('direct_c16', directC16));

    // The floor of one execute, measured now, on the same machine in the same state.
    const floorIsolate = await floorIsolateCpuMs(300);
    const floorIsolateSaturated = await saturatedFloorIsolateCpuMs(300);
    await admin.query(
      `create table if not exists bench_floor (id text, tenant_id text, seq bigint, occurred_at timestamptz,
        kind text, action text, outcome text, execution_id text, identifier text, upstream_path text,
        prev_hash text, hash text, payload jsonb)`,
    );
    const floorDb = new pg.Client({ connectionString: postgres.adminUrl });
    await floorDb.connect();
    const insert = (i: number) =>
      floorDb.query(
        'insert into bench_floor values ($1, $2, $3, now(), $4, $5, $6, $7, $8, $9, $10, $11, $12)',
        [
          FLOOR_ROW.id,
          FLOOR_ROW.tenant_id,
          i,
          FLOOR_ROW.kind,
          FLOOR_ROW.action,
          FLOOR_ROW.outcome,
          FLOOR_ROW.execution_id,
          FLOOR_ROW.identifier,
          FLOOR_ROW.upstream_path,
          FLOOR_ROW.prev_hash,
          FLOOR_ROW.hash,
          JSON.stringify(FLOOR_ROW),
        ],
      );
    for (let i = 0; i < 100; i++) await insert(i);
    const INSERTS = 2000;
    let floorAccount = startCpuAccount({ servicePid: null, database, ...servers });
    for (let i = 0; i < INSERTS; i++) await insert(i);
    let cpu = floorAccount.stop();
    const floorPostgres = (cpu.benchMs + cpu.postgresMs) / INSERTS;
    await floorDb.end();
    // The window's take: the one script an admission runs. One answered request first, so the
    // takes that follow (well within a second of it) are admitted without waiting for a probe.
    const windows = createRedisWindows({ redis, keyPrefix: 'bench:floor' });
    const spec = { capacity: 1_000_000, windowSeconds: 300 };
    const takeOnce = async () => {
      const take = await windows.take('cf:user:floor', 'rest', spec);
      if (!take.allowed) throw new Error(`the floor window refused a take (${take.reason})`);
      return take;
    };
    const first = await takeOnce();
    await windows.settle(first.ticket, spec, { answered: true, quota: null, blockMs: 0 });
    const TAKES = 2000;
    floorAccount = startCpuAccount({ servicePid: null, database, ...servers });
    for (let i = 0; i < TAKES; i++) await takeOnce();
    cpu = floorAccount.stop();
    const floorRedis = (cpu.benchMs + cpu.redisMs) / TAKES;
    const floorUpstream = directC1.cpu.benchMs / Math.max(1, directC1.load.completed);
    const floorCpu = floorIsolate + floorPostgres + floorRedis + floorUpstream;
    const floorSaturatedCpu = floorIsolateSaturated + floorPostgres + floorRedis + floorUpstream;
    Object.assign(figures, {
      calibration_loop_ms: round(calibrationLoopMs(), 1),
      floor_isolate_cpu_ms: round(floorIsolate, 3),
      floor_postgres_cpu_ms: round(floorPostgres, 3),
      floor_redis_cpu_ms: round(floorRedis, 3),
      floor_upstream_cpu_ms: round(floorUpstream, 3),
      floor_cpu_ms: round(floorCpu, 3),
      floor_isolate_saturated_cpu_ms: round(floorIsolateSaturated, 3),
      floor_saturated_cpu_ms: round(floorSaturatedCpu, 3),
    });
    if (c16) {
      const perCall = (ms: number | null) => (ms ?? 0) / Math.max(1, c16.load.completed);
      const executeCpu =
        perCall(c16.cpu.serviceMs) +
        perCall(c16.cpu.sandboxMs) +
        perCall(c16.cpu.postgresMs) +
        perCall(c16.cpu.redisMs);
      figures.execute_cpu_ms_per_call = round(executeCpu, 3);
      figures.execute_to_floor_ratio = round(executeCpu / floorCpu, 2);
      figures.execute_to_saturated_floor_ratio = round(executeCpu / floorSaturatedCpu, 2);
    }

    const c1 = executeLevels.get(1) as Phase;
    const result: Record<string, unknown> = {
      ...environmentInfo(),
      method: 'connector as a child process; load generator and fake Cloudflare in the bench process',
      seconds_per_level: seconds,
      warmup_seconds_per_level: warmupSeconds,
      sandbox_pool_size: 'default (cores)',
      egress_limit: egressLimit === 0 ? 'off (CLOUDFLARE_EGRESS_LIMIT=0)' : egressLimit,
      log_level: logLevel,
      ...started,
      added_latency_p50_ms: round(c1.load.p50Ms - directC1.load.p50Ms),
      rest_execute_added_p50_ms: round(c1.load.p50Ms - directC1.load.p50Ms),
      added_latency_p95_ms: round(c1.load.p95Ms - directC1.load.p95Ms),
      ...figures,
      upstream_requests_in_warmups_and_checks: warmupCalls,
      ...machineInfo('end'),
    };
    for (const c of clients) c.close();
    clients.length = 0;
    for (const client of mcpClients) await client.close().catch(() => {});
    mcpClients.length = 0;
    await stopConnector(connector);
    connector = null;
    if (cpuProf) {
      result.cpu_profile_dir = profileDir;
      process.stderr.write(`connector CPU profile in ${profileDir}\n`);
    }
    return result;
  } finally {
    for (const c of clients) c.close();
    for (const client of mcpClients) await client.close().catch(() => {});
    if (connector) await stopConnector(connector).catch(() => {});
    await cf?.close().catch(() => {});
    redis?.disconnect();
    await admin?.end().catch(() => {});
    postgres?.stop();
    redisServer?.stop();
    // Profiles are kept for reading; everything else of the run goes.
    if (!cpuProf) rmSync(dir, { recursive: true, force: true });
  }
}
