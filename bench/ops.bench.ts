/**
 * `npm run bench -- ops [--json] [--seconds 20] [--warmup 5] [--concurrency 8] [--idle 5]`:
 * the sizing figures of docs/operations.md for one `cloudflare_execute` tool call (one upstream
 * GET) end to end: calls per second per core of the connector, PostgreSQL statements and WAL
 * bytes per call, Redis commands per call.
 *
 * PostgreSQL and Redis are private instances this suite starts on free loopback ports (initdb
 * into a temporary directory with pg_stat_statements loaded; `redis-server --save ''`), so
 * statement counts, WAL and command statistics are this run's alone. The connector runs as a
 * child process (as `npm start` runs it) with its production log level, against the fake
 * Cloudflare in this process. An idle window first measures what the service does with no
 * calls (job schedulers, heartbeats); per-call figures have that background subtracted.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { FAKE_CF_ALL_PERMISSIONS, specFixturePath, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { startConnectorProcess } from '../services/connector/src/test-support/connector-process.ts';
import type { ConnectorProcess } from '../services/connector/src/test-support/connector-process.ts';
import { freePort } from '../services/connector/src/test-support/free-port.ts';
import {
  createHttpClient,
  environmentInfo,
  machineInfo,
  numberArg,
  processTreeCpuMs,
  round,
  runLoad,
} from './bench-utils.ts';
import type { HttpClient } from './bench-utils.ts';
import { startPostgres, startRedis, waitForRedis } from './private-servers.ts';
import type { PrivatePostgres, PrivateRedis } from './private-servers.ts';

const DATABASE = 'warden';

interface Counters {
  /** Statements clients sent (pg_stat_statements `toplevel`); `nestedStatements` ran inside functions. */
  readonly statements: number;
  readonly nestedStatements: number;
  readonly databaseBytes: number;
  readonly statementsWalBytes: number;
  readonly walBytes: number;
  readonly redisCommands: Map<string, number>;
  readonly serviceCpuMs: number;
  readonly postgresCpuMs: number;
  readonly redisCpuMs: number;
  readonly at: number;
}

async function counters(
  admin: pg.Client,
  redis: Redis,
  pids: { service: number; postmaster: number; redis: number },
): Promise<Counters> {
  const { rows } = await admin.query<{
    calls: string;
    nested: string;
    wal_bytes: string;
    lsn: string;
    size: string;
  }>(
    `select coalesce(sum(s.calls) filter (where s.toplevel), 0) as calls,
            coalesce(sum(s.calls) filter (where not s.toplevel), 0) as nested,
            coalesce(sum(s.wal_bytes), 0) as wal_bytes,
            pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0') as lsn,
            pg_database_size($1) as size
       from pg_stat_statements s join pg_database d on d.oid = s.dbid
      where d.datname = $1`,
    [DATABASE],
  );
  const info = await redis.info('commandstats');
  const commands = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    commands.set(match[1] as string, Number(match[2]));
  }
  const tree = (pid: number) => {
    const cpu = processTreeCpuMs(pid);
    return cpu ? cpu.self + cpu.descendants : Number.NaN;
  };
  const row = rows[0] as { calls: string; nested: string; wal_bytes: string; lsn: string; size: string };
  return {
    statements: Number(row.calls),
    nestedStatements: Number(row.nested),
    databaseBytes: Number(row.size),
    statementsWalBytes: Number(row.wal_bytes),
    walBytes: Number(row.lsn),
    redisCommands: commands,
    serviceCpuMs: tree(pids.service),
    postgresCpuMs: tree(pids.postmaster),
    redisCpuMs: tree(pids.redis),
    at: performance.now(),
  };
}

interface Window {
  readonly seconds: number;
  readonly statements: number;
  readonly nestedStatements: number;
  readonly databaseBytes: number;
  readonly statementsWalBytes: number;
  readonly walBytes: number;
  readonly redisCommands: Map<string, number>;
  readonly serviceCpuMs: number;
  readonly postgresCpuMs: number;
  readonly redisCpuMs: number;
}

function between(before: Counters, after: Counters): Window {
  const redisCommands = new Map<string, number>();
  for (const [name, calls] of after.redisCommands) {
    // The suite's own INFO calls are not the service's.
    if (name === 'info') continue;
    const delta = calls - (before.redisCommands.get(name) ?? 0);
    if (delta > 0) redisCommands.set(name, delta);
  }
  return {
    seconds: (after.at - before.at) / 1000,
    statements: after.statements - before.statements,
    nestedStatements: after.nestedStatements - before.nestedStatements,
    databaseBytes: after.databaseBytes - before.databaseBytes,
    statementsWalBytes: after.statementsWalBytes - before.statementsWalBytes,
    walBytes: after.walBytes - before.walBytes,
    redisCommands,
    serviceCpuMs: after.serviceCpuMs - before.serviceCpuMs,
    postgresCpuMs: after.postgresCpuMs - before.postgresCpuMs,
    redisCpuMs: after.redisCpuMs - before.redisCpuMs,
  };
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/** Resident memory (MB) of a process and its descendants (the connector and its sandboxes). */
function treeRssMb(pid: number): number {
  const rss = (p: number) =>
    Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
  const children = (p: number): number[] =>
    readdirSync(`/proc/${p}/task`).flatMap((task) =>
      readFileSync(`/proc/${p}/task/${task}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
    );
  const walk = (p: number): number => rss(p) + children(p).reduce((total, child) => total + walk(child), 0);
  return walk(pid) / 1024;
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const seconds = numberArg(args, 'seconds', 20);
  const warmupSeconds = numberArg(args, 'warmup', 5);
  const concurrency = numberArg(args, 'concurrency', 8);
  const idleSeconds = numberArg(args, 'idle', 5);
  const started = machineInfo('start');
  const adminToken = randomBytes(32).toString('hex');
  const dataDir = mkdtempSync(path.join(tmpdir(), 'warden-ops-data-'));
  let postgres: PrivatePostgres | null = null;
  let redisServer: PrivateRedis | null = null;
  let cf: FakeCloudflare | null = null;
  let connector: ConnectorProcess | null = null;
  let admin: pg.Client | null = null;
  let redis: Redis | null = null;
  const clients: HttpClient[] = [];
  try {
    postgres = startPostgres(await freePort(), DATABASE);
    redisServer = startRedis(await freePort());
    admin = new pg.Client({ connectionString: postgres.adminUrl });
    await admin.connect();
    await admin.query(`create database ${DATABASE}`);
    await admin.query('create extension if not exists pg_stat_statements');
    redis = await waitForRedis(redisServer.url);

    cf = await startFakeCloudflare({ specPath: specFixturePath(), budget: null });
    const user = cf.state.createUser({ email: `ops-${randomBytes(6).toString('hex')}@example.com` });
    const account = cf.state.createAccount({ name: 'Ops', members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'ops.example.com' });
    const token = cf.state.createUserToken({ userId: user.id, permissions: FAKE_CF_ALL_PERMISSIONS });

    connector = await startConnectorProcess('ops', {
      DATABASE_URL: postgres.url,
      REDIS_URL: redisServer.url,
      DATA_DIR: dataDir,
      WARDEN_ADMIN_TOKEN: adminToken,
      CLOUDFLARE_API_BASE: cf.url,
      CLOUDFLARE_SPEC_PATH: specFixturePath(),
      CLOUDFLARE_BUDGET: '100000/1',
      LOG_LEVEL: 'info',
    });
    const setup = createHttpClient(connector.url, { maxSockets: 1 });
    clients.push(setup);
    const call = async (method: string, pathname: string, auth: string, body: unknown, expected: number) => {
      const res = await setup.request({
        method,
        path: pathname,
        headers: { authorization: `Bearer ${auth}` },
        body,
      });
      if (res.status !== expected)
        throw new Error(`${method} ${pathname}: ${res.status} ${res.body.toString()}`);
      return JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
    };
    const tenant = await call('POST', '/admin/v1/tenants', adminToken, { name: 'Ops tenant' }, 201);
    const apiKey = tenant.api_key as string;
    await call(
      'POST',
      '/api/v1/connected_accounts',
      apiKey,
      { identifier: 'ops-agent', authorization: { type: 'api_token', api_token: token.value } },
      201,
    );

    const warden = createHttpClient(connector.url, { maxSockets: concurrency });
    clients.push(warden);
    const body = {
      tool_name: 'cloudflare_execute',
      identifier: 'ops-agent',
      params: {
        code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zone.id}' })).result.id`,
      },
    };
    const execute = async () => {
      const res = await warden.request({
        method: 'POST',
        path: '/api/v1/execute_tool',
        headers: { authorization: `Bearer ${apiKey}` },
        body,
      });
      const text = res.body.toString('utf8');
      if (res.status !== 200) throw new Error(`execute_tool answered ${res.status}: ${text}`);
      const answer = JSON.parse(text) as { data: unknown; error?: unknown };
      if (answer.error || answer.data !== zone.id) throw new Error(`execute_tool failed: ${text}`);
    };
    await execute();
    await runLoad(execute, { concurrency, seconds: warmupSeconds, warmupSeconds: 0 });

    const pids = { service: connector.pid, postmaster: postgres.postmasterPid, redis: redisServer.pid };
    const idleStart = await counters(admin, redis, pids);
    await delay(idleSeconds * 1000);
    const idle = between(idleStart, await counters(admin, redis, pids));
    const loadStart = await counters(admin, redis, pids);
    const load = await runLoad(execute, { concurrency, seconds, warmupSeconds: 0 });
    const busy = between(loadStart, await counters(admin, redis, pids));
    const connectorRssMb = treeRssMb(connector.pid);
    if (load.failed > 0) throw new Error(`${load.failed} calls failed, the first: ${load.firstError}`);

    const calls = load.completed;
    /** Per call, with what the idle service did in as much time taken out. */
    const perCall = (busyValue: number, idleValue: number) =>
      (busyValue - (idleValue * busy.seconds) / idle.seconds) / calls;
    const redisByCommand = Object.fromEntries(
      [...busy.redisCommands.entries()]
        .map(([name, n]) => [name, round(perCall(n, idle.redisCommands.get(name) ?? 0), 2)] as const)
        .filter(([, n]) => n >= 0.01)
        .sort((a, b) => b[1] - a[1]),
    );
    const topStatements = await admin.query<{ query: string; calls: string }>(
      `select left(regexp_replace(s.query, '\\s+', ' ', 'g'), 120) as query, s.calls
         from pg_stat_statements s join pg_database d on d.oid = s.dbid
        where d.datname = $1 and s.toplevel order by s.calls desc limit 8`,
      [DATABASE],
    );
    const serviceCpuMsPerCall = perCall(busy.serviceCpuMs, idle.serviceCpuMs);
    const postgresCpuMsPerCall = perCall(busy.postgresCpuMs, idle.postgresCpuMs);
    const redisCpuMsPerCall = perCall(busy.redisCpuMs, idle.redisCpuMs);
    return {
      ...environmentInfo(),
      method:
        'cloudflare_execute with one upstream GET; connector child process; private PostgreSQL and Redis; fake Cloudflare in the bench process',
      concurrency,
      seconds: round(load.seconds, 1),
      idle_seconds: round(idle.seconds, 1),
      ...started,
      calls,
      calls_per_s: round(load.perSecond, 1),
      p50_ms: round(load.p50Ms),
      p95_ms: round(load.p95Ms),
      connector_rss_mb_after_load: Math.round(connectorRssMb),
      connector_cpu_ms_per_call: round(serviceCpuMsPerCall, 3),
      calls_per_s_per_connector_core: round(1000 / serviceCpuMsPerCall, 1),
      postgres_cpu_ms_per_call: round(postgresCpuMsPerCall, 3),
      redis_cpu_ms_per_call: round(redisCpuMsPerCall, 3),
      // Connector, PostgreSQL and Redis on the same cores, as on a single host.
      calls_per_s_per_core_all_parts: round(
        1000 / (serviceCpuMsPerCall + postgresCpuMsPerCall + redisCpuMsPerCall),
        1,
      ),
      postgres_statements_per_call: round(perCall(busy.statements, idle.statements), 2),
      postgres_nested_statements_per_call: round(perCall(busy.nestedStatements, idle.nestedStatements), 2),
      // Table and index growth (audit records mostly); relations grow in pages, so a rough figure.
      postgres_database_bytes_per_call: Math.round(perCall(busy.databaseBytes, idle.databaseBytes)),
      postgres_wal_bytes_per_call: Math.round(perCall(busy.walBytes, idle.walBytes)),
      postgres_statement_wal_bytes_per_call: Math.round(
        perCall(busy.statementsWalBytes, idle.statementsWalBytes),
      ),
      redis_commands_per_call: round(perCall(sum(busy.redisCommands), sum(idle.redisCommands)), 2),
      redis_commands_per_call_by_command: JSON.stringify(redisByCommand),
      idle_postgres_statements_per_s: round(idle.statements / idle.seconds, 2),
      idle_redis_commands_per_s: round(sum(idle.redisCommands) / idle.seconds, 2),
      idle_wal_bytes_per_s: Math.round(idle.walBytes / idle.seconds),
      top_statements: JSON.stringify(topStatements.rows.map((r) => [Number(r.calls), r.query])),
      ...machineInfo('end'),
    };
  } finally {
    for (const c of clients) c.close();
    await connector?.stop().catch(() => {});
    await cf?.close().catch(() => {});
    await admin?.end().catch(() => {});
    redis?.disconnect();
    redisServer?.stop();
    postgres?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
