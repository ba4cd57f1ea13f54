/**
 * `npm run bench -- execute [--json] [--seconds 8] [--warmup 2] [--levels 1,16,64] [--log-level info] [--cpu-prof]`:
 * `POST /api/v1/execute_tool` end to end over real HTTP, at concurrency 1, 16 and 64, with
 * the same upstream GET sent straight to the fake Cloudflare in the same run as the baseline.
 *
 * Set-up, all on loopback:
 * - The connector runs as a child process (`node --no-node-snapshot services/connector/src/main.ts`,
 *   as `npm start` does), so it has its own event loop and its CPU is not shared with the load
 *   generator's; its logs (LOG_LEVEL info by default, as in production) go to a file.
 * - A fresh PostgreSQL database (the service migrates it on start) and the real Redis.
 * - The fake Cloudflare in this process with its own rate limit off; a fresh fake user per run,
 *   so Redis budget keys never collide with another run's. The tenant budget is raised to
 *   100000/1 (the settings API caps a window at 100,000 requests) so Warden never refuses.
 * - One connected account; every call runs `cloudflare.request({method: 'GET', path: '/zones/<id>'})`
 *   and returns the zone id, which is checked.
 * - Load: closed loop, node:http with keep-alive sockets (one per worker); `--seconds` measured
 *   after `--warmup` unmeasured per level. Direct calls use the same client code.
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
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { FAKE_CF_ALL_PERMISSIONS, createTestDatabase, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare, TestDatabase } from '@warden/testing';
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
  runLoad,
  startCpuAccount,
  stringArg,
} from './bench-utils.ts';
import type { CpuAccount, HttpClient, LoadResult } from './bench-utils.ts';
import { specFixturePath } from '@warden/testing';

const SPEC_PATH = specFixturePath();
const DEFAULT_LEVELS = [1, 16, 64];
const READY_TIMEOUT_MS = 180_000;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Connector {
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

async function startConnector(
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

async function stopConnector(connector: Connector): Promise<void> {
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

async function json(
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

interface Phase {
  readonly load: LoadResult;
  readonly cpu: CpuAccount;
}

/** One load level, with where the machine's CPU went while it ran. */
async function measure(
  call: () => Promise<void>,
  options: { concurrency: number; seconds: number; warmupSeconds: number },
  accounting: { servicePid: number | null; database: string },
): Promise<Phase> {
  if (options.warmupSeconds > 0) {
    await runLoad(call, { ...options, seconds: options.warmupSeconds, warmupSeconds: 0 });
  }
  const cpu = startCpuAccount(accounting);
  const load = await runLoad(call, { ...options, warmupSeconds: 0 });
  return { load, cpu: cpu.stop() };
}

function phaseFigures(prefix: string, phase: Phase): Record<string, unknown> {
  return {
    ...loadFigures(prefix, phase.load),
    ...cpuFigures(prefix, phase.cpu, phase.load.completed, 'call'),
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const seconds = numberArg(args, 'seconds', 8);
  const warmupSeconds = numberArg(args, 'warmup', 2);
  const logLevel = stringArg(args, 'log-level') ?? 'info';
  const cpuProf = flagArg(args, 'cpu-prof');
  // `--levels 16` narrows a profiling run to one level; 1 always runs (it is the latency baseline).
  const levels = [
    ...new Set([1, ...(stringArg(args, 'levels')?.split(',').map(Number) ?? DEFAULT_LEVELS)]),
  ].filter((n) => Number.isInteger(n) && n > 0);
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-execute-'));
  const adminToken = randomBytes(32).toString('hex');
  let cf: FakeCloudflare | null = null;
  let db: TestDatabase | null = null;
  let connector: Connector | null = null;
  const clients: HttpClient[] = [];
  const started = machineInfo('start');
  try {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, budget: null });
    const user = cf.state.createUser({ email: `bench-${randomBytes(6).toString('hex')}@example.com` });
    const account = cf.state.createAccount({ name: 'Bench', members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'bench.example.com' });
    const token = cf.state.createUserToken({ userId: user.id, permissions: FAKE_CF_ALL_PERMISSIONS });

    db = await createTestDatabase({ migrate: false });
    // The bench needs no connection of its own: the service migrates and uses it.
    await db.db.close();
    // PostgreSQL CPU is counted for this database's backends only: the server is shared.
    const database = new URL(db.url).pathname.slice(1);
    const profileDir = path.join(dir, 'cpu-profiles');
    connector = await startConnector(
      dir,
      {
        DATABASE_URL: db.url,
        REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
        DATA_DIR: path.join(dir, 'data'),
        WARDEN_ADMIN_TOKEN: adminToken,
        CLOUDFLARE_API_BASE: cf.url,
        CLOUDFLARE_SPEC_PATH: SPEC_PATH,
        LOG_LEVEL: logLevel,
      },
      ['--no-node-snapshot', ...(cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
    );
    const servicePid = connector.child.pid ?? null;

    const setup = createHttpClient(connector.origin, { maxSockets: 1 });
    clients.push(setup);
    const created = await json(
      setup,
      'POST',
      '/admin/v1/tenants',
      { authorization: `Bearer ${adminToken}` },
      { name: 'Bench tenant' },
      201,
    );
    const tenantAuth = { authorization: `Bearer ${created.api_key as string}` };
    await json(
      setup,
      'POST',
      '/api/v1/connected_accounts',
      tenantAuth,
      { identifier: 'bench-agent', authorization: { type: 'api_token', api_token: token.value } },
      201,
    );
    await json(setup, 'PATCH', '/api/v1/settings', tenantAuth, { budget: '100000/1' }, 200);

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

    const figures: Record<string, unknown> = {};
    const timing = { seconds, warmupSeconds };
    // The baseline right before the c1 run it is subtracted from, so both see the same machine.
    const directC1 = await measure(directGet, { concurrency: 1, ...timing }, { servicePid: null, database });
    Object.assign(figures, phaseFigures('direct', directC1));
    const upstreamBefore = cf.requestCount();
    let executeCalls = 0;
    const executeLevels = new Map<number, Phase>();
    for (const concurrency of levels) {
      const phase = await measure(execute, { concurrency, ...timing }, { servicePid, database });
      executeLevels.set(concurrency, phase);
      executeCalls += phase.load.completed;
      Object.assign(figures, phaseFigures(`c${concurrency}_execute`, phase));
    }
    // Every call (warm-ups included) should reach Cloudflare exactly once.
    const warmupCalls = cf.requestCount() - upstreamBefore - executeCalls;
    const directC16 = await measure(
      directGet,
      { concurrency: 16, ...timing },
      { servicePid: null, database },
    );
    Object.assign(figures, phaseFigures('direct_c16', directC16));

    const c1 = executeLevels.get(1) as Phase;
    const result: Record<string, unknown> = {
      ...environmentInfo(),
      method: 'connector as a child process; load generator and fake Cloudflare in the bench process',
      seconds_per_level: seconds,
      warmup_seconds_per_level: warmupSeconds,
      sandbox_pool_size: 'default (cores)',
      log_level: logLevel,
      ...started,
      added_latency_p50_ms: round(c1.load.p50Ms - directC1.load.p50Ms),
      added_latency_p95_ms: round(c1.load.p95Ms - directC1.load.p95Ms),
      ...figures,
      upstream_requests_in_warmups_and_checks: warmupCalls,
      ...machineInfo('end'),
    };
    for (const c of clients) c.close();
    clients.length = 0;
    await stopConnector(connector);
    connector = null;
    if (cpuProf) {
      result.cpu_profile_dir = profileDir;
      process.stderr.write(`connector CPU profile in ${profileDir}\n`);
    }
    return result;
  } finally {
    for (const c of clients) c.close();
    if (connector) await stopConnector(connector).catch(() => {});
    await cf?.close().catch(() => {});
    await db?.drop().catch(() => {});
    // Profiles are kept for reading; everything else of the run goes.
    if (!cpuProf) rmSync(dir, { recursive: true, force: true });
  }
}
