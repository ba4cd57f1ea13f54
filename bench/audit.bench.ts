/**
 * `npm run bench -- audit [--json] [--seconds 5] [--export-rows 1000000] [--formats ndjson,ocsf,cef]
 *  [--other-formats-rows 200000] [--export-timeout 180]`: the audit trail's write path and its
 * export, on a fresh PostgreSQL database that is dropped at the end: on the `DATABASE_URL` server,
 * or without it on a server of the run's own (`private-servers.ts`), stopped at the end.
 *
 * - Inserts go through `AuditStore.append`, one execution's records per append (an
 *   upstream_request and its tool_call, as execute_tool writes them), with a pool of 10
 *   connections (the service's DATABASE_POOL_SIZE default). `audit_insert_per_s` is records per
 *   second with 8 concurrent appenders over 4 tenants (two per chain, so appends of one tenant
 *   contend on its chain head as they do in the service); `audit_insert_single_per_s` is one
 *   appender. Every chain is verified afterwards: a fast but broken chain is not a result.
 * - The export table is filled with `--export-rows` realistic rows of one tenant by INSERT ...
 *   SELECT generate_series (hashes are not a valid chain: the export does not check them), after
 *   `runAuditMaintenance` so they land in real day partitions (checked: none in the default one).
 * - Each format is exported by a child process (`AuditStore.stream` → `createAuditExportStream` →
 *   a sink that counts and discards bytes), so its RSS is the export's own: the baseline is
 *   sampled after start-up and connecting, the peak is the larger of 10 ms sampling and the
 *   kernel's max RSS; the heap left after a full GC shows whether the export retained anything.
 *   Throughput per 100,000 rows shows whether the stream slows down as it goes. NDJSON exports
 *   every row; OCSF and CEF the first `--other-formats-rows` (formatting is what differs). An
 *   export still running after `--export-timeout` seconds stops and says so.
 * - EXPLAIN ANALYZE of the stream's keyset query at the first and the middle page, against the
 *   same page as a row comparison: the evidence for why the export slows down as it goes.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import {
  createAuditExportStream,
  createAuditStore,
  runAuditMaintenance,
  sha256Hex,
  verifyChain,
} from '@warden/audit';
import type { AuditEvent, AuditRecordInput, AuditStore, ExportFormat } from '@warden/audit';
import { createDb } from '@warden/db';
import type { Db } from '@warden/db';
import { createTestDatabase, freePort } from '@warden/testing';
import type { TestDatabase } from '@warden/testing';
import { sql } from 'kysely';
import type { RawBuilder } from 'kysely';
import { startPostgres } from './private-servers.ts';
import {
  cpuFigures,
  environmentInfo,
  machineInfo,
  numberArg,
  round,
  runLoad,
  sampleRss,
  startCpuAccount,
  stringArg,
} from './bench-utils.ts';

const THIS_FILE = fileURLToPath(import.meta.url);
const RETENTION_DAYS = 90;
const POOL_SIZE = 10;
const CONCURRENT_APPENDERS = 8;
const CONCURRENT_TENANTS = 4;
const EXPORT_TENANT = 'ten_benchexport000000000';
const BLOCK_ROWS = 100_000;

const CODE = `async () => {
  const zones = await cloudflare.request({ method: 'GET', path: '/zones', query: { name: 'example.com' } });
  return zones.result.map((zone) => ({ id: zone.id, status: zone.status }));
}`;
const CODE_SHA256 = sha256Hex(CODE);

/** What one execute_tool call with one upstream GET appends: the request, then the call. */
function executionRecords(identifier: string, sequence: number): AuditRecordInput[] {
  const now = new Date();
  const base = {
    execution_id: `exe_${sequence.toString(36).padStart(20, '0')}`,
    identifier,
    caller: {
      type: 'api_key' as const,
      id: 'key_bench000000000000000',
      client_name: null,
      client_version: null,
      ip: '10.0.12.7',
    },
    agent_run_id: 'run-2026-11-21-nightly',
    tool_name: 'cloudflare_execute',
    connected_account_id: 'ca_bench0000000000000000',
  };
  return [
    {
      ...base,
      occurred_at: new Date(now.getTime() - 3).toISOString(),
      kind: 'upstream_request',
      action: 'cloudflare.request',
      outcome: 'success',
      upstream: {
        method: 'GET',
        path_template: '/zones',
        path: '/zones',
        status: 200,
        cf_ray: `8f${sequence.toString(16).padStart(14, '0')}-AMS`,
      },
      error: null,
      duration_ms: 41,
      request_bytes: 0,
      response_bytes: 1874,
      code_sha256: null,
      code: null,
    },
    {
      ...base,
      occurred_at: new Date(now.getTime() - 48).toISOString(),
      kind: 'tool_call',
      action: 'tool.execute',
      outcome: 'success',
      upstream: null,
      error: null,
      duration_ms: 48,
      request_bytes: CODE.length,
      response_bytes: 96,
      code_sha256: CODE_SHA256,
      code: CODE,
    },
  ];
}

async function insertFigures(
  store: AuditStore,
  db: Db,
  prefix: string,
  options: { appenders: number; tenants: number; seconds: number; database: string },
): Promise<Record<string, unknown>> {
  // Distinct tenants per figure, so each chain verified below holds only that figure's appends.
  const tenants = Array.from(
    { length: options.tenants },
    (_, i) => `ten_bench${options.appenders}x${i.toString().padStart(12, '0')}`,
  );
  let sequence = 0;
  const call = async (worker: number) => {
    const tenant = tenants[worker % tenants.length] as string;
    await store.append(tenant, executionRecords(`agent-${worker}`, sequence++), {
      retentionDays: RETENTION_DAYS,
    });
  };
  // The warm-up also creates each chain head, so the measured appends are all steady-state ones.
  await runLoad(call, { concurrency: options.appenders, seconds: 1, warmupSeconds: 0 });
  const cpu = startCpuAccount();
  const load = await runLoad(call, {
    concurrency: options.appenders,
    seconds: options.seconds,
    warmupSeconds: 0,
  });
  const account = cpu.stop();
  if (load.failed > 0) throw new Error(`${prefix}: ${load.failed} appends failed: ${load.firstError}`);
  const records = load.completed * 2;
  let verified = 0;
  for (const tenant of tenants) {
    const report = await verifyChain(db.kysely, tenant);
    if (!report.ok)
      throw new Error(
        `${prefix}: the chain of ${tenant} does not verify: ${JSON.stringify(report.problems[0])}`,
      );
    verified += report.checked;
  }
  return {
    [`${prefix}_per_s`]: Math.round(records / load.seconds),
    [`${prefix}_appends_per_s`]: round(load.perSecond, 1),
    [`${prefix}_append_p50_ms`]: round(load.p50Ms),
    [`${prefix}_append_p95_ms`]: round(load.p95Ms),
    [`${prefix}_appenders`]: options.appenders,
    [`${prefix}_tenants`]: options.tenants,
    [`${prefix}_records_verified`]: verified,
    ...cpuFigures(prefix, account, records, 'record'),
  };
}

/** Fills the export tenant with realistic rows, in blocks so no single statement runs for minutes. */
async function populate(db: Db, rows: number): Promise<{ seconds: number }> {
  const started = performance.now();
  // 40 ms apart, ending now: a million rows span about 11 hours, inside the partitions maintenance made.
  const end = Date.now();
  for (let first = 1; first <= rows; first += BLOCK_ROWS) {
    const last = Math.min(rows, first + BLOCK_ROWS - 1);
    await sql`
      insert into audit_events (id, tenant_id, seq, occurred_at, expires_on, kind, action, outcome, execution_id,
        identifier, caller_type, caller_id, client_name, client_version, caller_ip, agent_run_id, tool_name,
        connected_account_id, upstream_method, upstream_path_template, upstream_path, upstream_status, cf_ray,
        error_code, error_message, duration_ms, request_bytes, response_bytes, code_sha256, code, prev_hash, hash)
      select
        'aud_' || substr(md5('id' || g), 1, 20), ${EXPORT_TENANT}, g, ts,
        (ts at time zone 'UTC')::date + ${RETENTION_DAYS}::int,
        case when call then 'tool_call' else 'upstream_request' end,
        case when call then 'tool.execute' else 'cloudflare.request' end,
        case when g % 50 = 0 then 'error' else 'success' end,
        'exe_' || substr(md5('exe' || (g + 1) / 2), 1, 20),
        'agent-' || (g % 37), 'api_key', 'key_bench000000000000000', null, null, '10.0.12.7',
        'run-' || (g / 500), 'cloudflare_execute', 'ca_bench0000000000000000',
        case when call then null else 'GET' end,
        case when call then null else '/zones/{zone_id}/dns_records' end,
        case when call then null else '/zones/' || md5('zone' || (g % 11)) || '/dns_records' end,
        case when call then null when g % 50 = 0 then 403 else 200 end,
        case when call then null else '8f' || substr(md5('ray' || g), 1, 14) || '-AMS' end,
        case when g % 50 = 0 then 'forbidden' else null end,
        case when g % 50 = 0 then 'Cloudflare refused GET /zones/{zone_id}/dns_records: the token needs #dns_records:read' else null end,
        40 + g % 60, case when call then ${CODE.length} else 0 end, 100 + g % 4000,
        case when call then ${CODE_SHA256} else null end,
        case when call then ${CODE} else null end,
        md5('h' || (g - 1)) || md5('x' || (g - 1)), md5('h' || g) || md5('x' || g)
      from (
        select g, g % 2 = 0 as call, to_timestamp((${end} - (${rows}::bigint - g) * 40) / 1000.0) as ts
        from generate_series(${first}::bigint, ${last}::bigint) as g
      ) s`.execute(db.kysely);
  }
  await sql`analyze audit_events`.execute(db.kysely);
  return { seconds: (performance.now() - started) / 1000 };
}

interface ExportChildResult {
  readonly rows: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly completed: boolean;
  readonly baselineRssMb: number;
  readonly peakRssMb: number;
  readonly baselineHeapUsedMb: number;
  readonly peakHeapUsedMb: number;
  /** Heap still in use after the export and a full GC: anything the export kept. */
  readonly retainedHeapMb: number;
  readonly cpuMs: number;
  /** Rows per second of each successive block of BLOCK_ROWS rows. */
  readonly blockRowsPerS: number[];
}

/** Runs in the child: one export into a discarding sink, with its own memory figures. */
async function exportInChild(params: {
  url: string;
  tenantId: string;
  from: string;
  to: string;
  format: ExportFormat;
  timeoutS: number;
}): Promise<ExportChildResult> {
  const db = await createDb({ kind: 'postgres', url: params.url, poolSize: 2 });
  try {
    const store = createAuditStore({ db: db.kysely });
    await db.ping();
    const baselineRss = process.memoryUsage.rss();
    const baselineHeap = process.memoryUsage().heapUsed;
    let peakHeap = baselineHeap;
    const sampler = sampleRss(10);
    const heapTimer = setInterval(() => (peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)), 10);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const deadline = started + params.timeoutS * 1000;
    const blocks: number[] = [];
    let rows = 0;
    let bytes = 0;
    let completed = true;
    let blockStarted = started;
    async function* counted(): AsyncGenerator<AuditEvent> {
      for await (const event of store.stream(params.tenantId, {
        from: new Date(params.from),
        to: new Date(params.to),
      })) {
        rows++;
        if (rows % BLOCK_ROWS === 0) {
          const now = performance.now();
          blocks.push(Math.round(BLOCK_ROWS / ((now - blockStarted) / 1000)));
          blockStarted = now;
          if (now > deadline) {
            completed = false;
            return;
          }
        }
        yield event;
      }
    }
    const sink = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
        callback();
      },
    });
    await pipeline(createAuditExportStream(counted(), params.format), sink);
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const sampledPeak = sampler.stop();
    clearInterval(heapTimer);
    // The child runs with --expose-gc: what survives a full collection is what the export retained.
    (globalThis as { gc?: () => void }).gc?.();
    // maxRSS (kB) is the kernel's high-water mark: it catches a spike between two samples.
    const kernelPeak = process.resourceUsage().maxRSS / 1024;
    return {
      rows,
      bytes,
      seconds,
      completed,
      baselineRssMb: baselineRss / 1024 / 1024,
      peakRssMb: Math.max(sampledPeak, kernelPeak),
      baselineHeapUsedMb: baselineHeap / 1024 / 1024,
      peakHeapUsedMb: peakHeap / 1024 / 1024,
      retainedHeapMb: Math.max(0, process.memoryUsage().heapUsed - baselineHeap) / 1024 / 1024,
      cpuMs: (cpu.user + cpu.system) / 1000,
      blockRowsPerS: blocks,
    };
  } finally {
    await db.close();
  }
}

async function exportFigures(
  url: string,
  database: string,
  format: ExportFormat,
  range: { from: Date; to: Date },
  timeoutS: number,
): Promise<Record<string, unknown>> {
  const params = {
    url,
    tenantId: EXPORT_TENANT,
    from: range.from.toISOString(),
    to: range.to.toISOString(),
    format,
    timeoutS,
  };
  const child = spawn(
    process.execPath,
    ['--no-node-snapshot', '--expose-gc', THIS_FILE, '--export-child', JSON.stringify(params)],
    {
      env: { ...(process.env.PATH ? { PATH: process.env.PATH } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-4000)));
  const cpu = startCpuAccount({ database });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`export child (${format}) exited with ${code}:\n${stderr}`);
  const result = JSON.parse(stdout) as ExportChildResult;
  // The child has exited by now, so its CPU comes from its own report; "service" is the exporter.
  const account = cpu.stop({ serviceMs: result.cpuMs });
  const prefix = `export_${format}`;
  const blocks = result.blockRowsPerS;
  // The first block includes JIT warm-up; the comparison that matters is early vs late.
  const early = blocks.length > 1 ? (blocks[1] as number) : (blocks[0] ?? 0);
  const late = blocks[blocks.length - 1] ?? 0;
  const cpuOut = cpuFigures(prefix, account, result.rows / 1000, '1k_rows');
  // In cpuFigures the child is "service": here it is the exporting process.
  const renamed = Object.fromEntries(
    Object.entries(cpuOut).map(([k, v]) => [k.replace('_service_cpu_', '_exporter_cpu_'), v]),
  );
  return {
    [`${prefix}_rows`]: result.rows,
    [`${prefix}_completed`]: result.completed,
    [`${prefix}_rows_per_s`]: Math.round(result.rows / result.seconds),
    [`${prefix}_seconds`]: round(result.seconds, 1),
    [`${prefix}_mb`]: round(result.bytes / 1024 / 1024, 1),
    [`${prefix}_baseline_rss_mb`]: round(result.baselineRssMb, 1),
    [`${prefix}_peak_rss_mb`]: round(result.peakRssMb, 1),
    [`${prefix}_baseline_heap_used_mb`]: round(result.baselineHeapUsedMb, 1),
    [`${prefix}_peak_heap_used_mb`]: round(result.peakHeapUsedMb, 1),
    [`${prefix}_retained_heap_mb`]: round(result.retainedHeapMb, 1),
    [`${prefix}_rows_per_s_2nd_100k`]: early,
    [`${prefix}_rows_per_s_last_100k`]: late,
    [`${prefix}_rows_per_s_by_100k`]: blocks.join(','),
    ...renamed,
  };
}

/**
 * What one page of `AuditStore.stream` costs at the start and in the middle of the export, from
 * EXPLAIN ANALYZE of the query it builds (`occurred_at > a OR (occurred_at = a AND seq > s)`),
 * and of the same middle page written as a row comparison `(occurred_at, seq) > (a, s)`, which
 * an index scan can start from instead of filtering every earlier row.
 */
async function keysetPlanFigures(
  db: Db,
  range: { from: Date; to: Date },
  rows: number,
): Promise<Record<string, unknown>> {
  const middle = await sql<{ occurred_at: Date; seq: string }>`
    select occurred_at, seq from audit_events where tenant_id = ${EXPORT_TENANT}
    order by occurred_at, seq offset ${Math.floor(rows / 2)} limit 1`.execute(db.kysely);
  const after = middle.rows[0];
  if (!after) return {};
  const explain = async (query: RawBuilder<unknown>) => {
    const { rows: plans } = await sql<{
      'QUERY PLAN': unknown;
    }>`explain (analyze, format json) ${query}`.execute(db.kysely);
    const plan = (
      plans[0]?.['QUERY PLAN'] as [{ Plan: Record<string, unknown>; 'Execution Time': number }]
    )[0];
    let removed = 0;
    const walk = (node: Record<string, unknown>) => {
      removed += Number(node['Rows Removed by Filter'] ?? 0);
      for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
    };
    walk(plan.Plan);
    return { ms: plan['Execution Time'], removed };
  };
  const base = sql`select * from audit_events where tenant_id = ${EXPORT_TENANT}
    and occurred_at >= ${range.from} and occurred_at < ${range.to}`;
  const first = await explain(sql`${base} order by occurred_at, seq limit 1000`);
  const asBuilt = await explain(
    sql`${base} and (occurred_at > ${after.occurred_at} or (occurred_at = ${after.occurred_at} and seq > ${after.seq}))
      order by occurred_at, seq limit 1000`,
  );
  const rowComparison = await explain(
    sql`${base} and (occurred_at, seq) > (${after.occurred_at}, ${after.seq}) order by occurred_at, seq limit 1000`,
  );
  return {
    keyset_first_page_ms: round(first.ms),
    keyset_middle_page_ms: round(asBuilt.ms),
    keyset_middle_page_rows_removed_by_filter: asBuilt.removed,
    keyset_middle_page_row_comparison_ms: round(rowComparison.ms),
    keyset_middle_page_row_comparison_rows_removed_by_filter: rowComparison.removed,
  };
}

/** The time range holding the first `rows` rows of the export tenant (occurred_at is unique there). */
async function firstRowsRange(db: Db, from: Date, rows: number): Promise<{ from: Date; to: Date } | null> {
  const { rows: found } = await sql<{ occurred_at: Date }>`
    select occurred_at from audit_events where tenant_id = ${EXPORT_TENANT}
    order by occurred_at, seq offset ${rows} limit 1`.execute(db.kysely);
  return found[0] ? { from, to: found[0].occurred_at } : null;
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const seconds = numberArg(args, 'seconds', 5);
  const exportRows = Math.round(numberArg(args, 'export-rows', 1_000_000));
  const timeoutS = numberArg(args, 'export-timeout', 180);
  const formats = (stringArg(args, 'formats') ?? 'ndjson,ocsf,cef').split(',') as ExportFormat[];
  // OCSF and CEF differ from NDJSON only in formatting: a smaller range keeps the suite to minutes.
  const otherFormatRows = Math.round(numberArg(args, 'other-formats-rows', 200_000));
  const started = machineInfo('start');
  let test: TestDatabase | null = null;
  let db: Db | null = null;
  // Without DATABASE_URL the suite runs on a PostgreSQL server of its own, as the execute suite does.
  const privateServer = process.env.DATABASE_URL ? null : startPostgres(await freePort(), 'postgres');
  if (privateServer) process.env.DATABASE_URL = privateServer.adminUrl;
  try {
    test = await createTestDatabase();
    const now = new Date();
    const maintenance = await runAuditMaintenance(test.db.kysely, { now, retentionDays: [RETENTION_DAYS] });
    await test.db.close();
    db = await createDb({ kind: 'postgres', url: test.url, poolSize: POOL_SIZE });
    const store = createAuditStore({ db: db.kysely });

    // PostgreSQL CPU is counted for this database's backends only: the server is shared.
    const database = new URL(test.url).pathname.slice(1);
    const single = await insertFigures(store, db, 'audit_insert_single', {
      appenders: 1,
      tenants: 1,
      seconds,
      database,
    });
    const concurrent = await insertFigures(store, db, 'audit_insert', {
      appenders: CONCURRENT_APPENDERS,
      tenants: CONCURRENT_TENANTS,
      seconds,
      database,
    });

    const populated = await populate(db, exportRows);
    const { rows: defaultRows } = await sql<{ n: string }>`
      select count(*)::text as n from audit_events_default`.execute(db.kysely);
    const range = { from: new Date(now.getTime() - 2 * 86_400_000), to: new Date(Date.now() + 60_000) };
    const exports: Record<string, unknown> = {};
    const partial =
      otherFormatRows < exportRows ? await firstRowsRange(db, range.from, otherFormatRows) : null;
    for (const format of formats) {
      const formatRange = format === 'ndjson' || !partial ? range : partial;
      Object.assign(exports, await exportFigures(test.url, database, format, formatRange, timeoutS));
    }
    const plans = await keysetPlanFigures(db, range, exportRows);

    const ndjson = formats.includes('ndjson') ? 'ndjson' : formats[0];
    return {
      ...environmentInfo(),
      seconds_per_insert_figure: seconds,
      db_pool_size: POOL_SIZE,
      ...started,
      audit_insert_per_s: concurrent.audit_insert_per_s,
      audit_insert_single_per_s: single.audit_insert_single_per_s,
      ...(ndjson
        ? {
            export_rows_per_s: exports[`export_${ndjson}_rows_per_s`],
            export_peak_rss_mb: exports[`export_${ndjson}_peak_rss_mb`],
            baseline_rss_mb: exports[`export_${ndjson}_baseline_rss_mb`],
          }
        : {}),
      ...concurrent,
      ...single,
      partitions_created: maintenance.created.length,
      export_populate_rows: exportRows,
      export_populate_rows_per_s: Math.round(exportRows / populated.seconds),
      export_rows_in_default_partition: Number(defaultRows[0]?.n ?? -1),
      ...exports,
      ...plans,
      ...machineInfo('end'),
    };
  } finally {
    await db?.close().catch(() => {});
    await test?.drop();
    if (privateServer) {
      delete process.env.DATABASE_URL;
      privateServer.stop();
    }
  }
}

// `node bench/audit.bench.ts --export-child <json>`: the export half, in a process of its own.
if (process.argv[1] && path.resolve(process.argv[1]) === THIS_FILE && process.argv[2] === '--export-child') {
  const result = await exportInChild(
    JSON.parse(process.argv[3] as string) as Parameters<typeof exportInChild>[0],
  );
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}
