/**
 * `npm run bench -- codemode --json`: Code Mode search and execute on the real Cloudflare
 * document (../shared/data/cloudflare-openapi.json), all figures from one run.
 *
 * - search_*: the pool as the service runs it (child processes, warm frozen context, IPC).
 * - search_baseline_p50_ms: what Cloudflare's reference server does per call: a fresh
 *   isolate that evaluates `const spec = <the processed document as JSON>;` and then the
 *   code. Measured in this process, without IPC, on the same document and programs.
 * - execute_overhead_p50_ms: one `cloudflare.request` through the pool against an in-process
 *   upstream, minus the bare upstream call.
 * - sdk_call_overhead_p50_ms: the same GET as an SDK-style call (`cloudflare.zones.list(…)`,
 *   method lookup, routing and page object included) minus the `cloudflare.request` program,
 *   each in a fresh execute isolate, alternating in this process (no IPC, whose noise on a
 *   shared machine is larger than the difference). sdk_call_overhead_pool_p50_ms: the same,
 *   alternating through the pool.
 * - execute_start_delta_p50_ms: building a call-ready execute isolate (what each call's spare
 *   costs) with the SDK proxy installed minus without, alternating in this process.
 * - search_p50_ms_2x / _4x: the same programs on documents with every operation duplicated
 *   under new path prefixes.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import ivm from 'isolated-vm';
import { getEncoding } from 'js-tiktoken';
import { createSpecStore } from '@warden/cloudflare';
import type { SpecStore } from '@warden/cloudflare';
import { DEFAULT_LIMITS, createSandboxPool, toolDefinitions, toolsListJson } from '@warden/codemode';
import type { SandboxPool, Upstream, UpstreamResponse } from '@warden/codemode';
import { specFixturePath } from '@warden/testing';
import { ExecuteSandbox } from '../libs/codemode/src/execute.sandbox.ts';

const documentPath = specFixturePath();

/** What agents ask the spec, from a broad scan to a single lookup. */
const SEARCH_PROGRAMS = [
  // Keyword search over every operation.
  `async () => {
    const hits = [];
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const text = ((op.summary ?? '') + ' ' + (op.description ?? '')).toLowerCase();
        if (text.includes('dns record')) hits.push({ method: method.toUpperCase(), path, summary: op.summary });
      }
    }
    return hits;
  }`,
  // Products and their sizes.
  `async () => {
    const counts = {};
    for (const ops of Object.values(spec.paths)) for (const op of Object.values(ops)) counts[op.tags[0]] = (counts[op.tags[0]] ?? 0) + 1;
    return Object.entries(counts).sort((a, b) => b[1] - a[1]).slice(0, 20);
  }`,
  // One operation's parameters.
  `async () => spec.paths['/zones/{zone_id}/dns_records'].get.parameters.map((p) => ({ name: p.name, in: p.in, required: !!p.required }))`,
  // One operation's request body schema.
  `async () => spec.paths['/accounts/{account_id}/d1/database'].post.requestBody`,
  // Operations of a product with the permissions they need.
  `async () => Object.entries(spec.paths).flatMap(([path, ops]) => Object.entries(ops)
    .filter(([, op]) => op.tags[0] === 'workers')
    .map(([method, op]) => [method.toUpperCase() + ' ' + path, op['x-cfPermissionsRequired']?.enum ?? []]))`,
];

/** Every call comes from one tenant, as in the execute bench. */
const BENCH_TENANT = 'ten_bench';

const EXECUTE_PROGRAM = `async () => {
  const zones = await cloudflare.request({ method: 'GET', path: '/zones', query: { name: 'example.com' } });
  return zones.result.map((zone) => zone.id);
}`;

/** EXECUTE_PROGRAM's request in the SDK style. */
const SDK_PROGRAM = `async () => {
  const zones = await cloudflare.zones.list({ name: 'example.com' });
  return zones.result.map((zone) => zone.id);
}`;

function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function round(value: number, digits = 2): number {
  return Number(value.toFixed(digits));
}

async function timeSearches(pool: SandboxPool, rounds: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    for (const program of SEARCH_PROGRAMS) {
      const started = performance.now();
      const result = await pool.search(program, { tenant: BENCH_TENANT });
      samples.push(performance.now() - started);
      if (!result.ok) throw new Error(`search failed: ${result.error.code} ${result.error.message}`);
    }
  }
  return samples;
}

async function searchesPerSecond(pool: SandboxPool, concurrency: number, seconds: number): Promise<number> {
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = worker; performance.now() < deadline; i++) {
        await pool.search(SEARCH_PROGRAMS[i % SEARCH_PROGRAMS.length] as string, { tenant: BENCH_TENANT });
        done++;
      }
    }),
  );
  return done / seconds;
}

/** A fresh isolate per call with the document injected as code, as the reference server does. */
async function baselineSearch(documentJson: string, program: string): Promise<number> {
  const started = performance.now();
  const isolate = new ivm.Isolate({ memoryLimit: 1024 });
  try {
    const context = await isolate.createContext();
    const json = await context.eval(
      `const spec = ${documentJson};\n(${program})().then((r) => JSON.stringify(r))`,
      {
        promise: true,
        copy: true,
      },
    );
    if (typeof json !== 'string') throw new Error('baseline search returned nothing');
  } finally {
    isolate.dispose();
  }
  return performance.now() - started;
}

/** The raw document with every path repeated under `/copyN` prefixes, `factor` times in all. */
function scaledDocument(factor: number, dir: string): string {
  const raw = JSON.parse(readFileSync(documentPath, 'utf8')) as { paths: Record<string, unknown> };
  const original = Object.entries(raw.paths);
  for (let copy = 2; copy <= factor; copy++) {
    for (const [template, item] of original) raw.paths[`/copy${copy}${template}`] = item;
  }
  const file = path.join(dir, `openapi-${factor}x.json`);
  writeFileSync(file, JSON.stringify(raw));
  return file;
}

/** p50 of each program's execute time, the two taking turns so load affects both alike. */
async function alternatingExecutes(
  pool: SandboxPool,
  upstream: Upstream,
  programs: readonly [string, string],
  rounds: number,
): Promise<[number, number]> {
  const samples: [number[], number[]] = [[], []];
  for (let i = 0; i < rounds + 20; i++) {
    for (const index of [0, 1] as const) {
      const started = performance.now();
      const result = await pool.execute(programs[index], { tenant: BENCH_TENANT, upstream });
      if (i >= 20) samples[index].push(performance.now() - started);
      if (!result.ok) throw new Error(`execute failed: ${result.error.code} ${result.error.message}`);
    }
  }
  return [percentile(samples[0], 50), percentile(samples[1], 50)];
}

/** p50 of each program's execute time in an execute sandbox of this process, taking turns. */
async function alternatingInProcess(
  response: UpstreamResponse,
  programs: readonly [string, string],
  rounds: number,
): Promise<[number, number]> {
  const sandbox = new ExecuteSandbox((message) => {
    throw new Error(`isolated-vm catastrophic error: ${message}`);
  });
  const upstream = async () => ({ ok: true as const, response });
  const samples: [number[], number[]] = [[], []];
  let id = 0;
  try {
    for (let i = 0; i < rounds + 20; i++) {
      for (const index of [0, 1] as const) {
        // The spare isolate is built after each call; time the next call, not that build.
        await new Promise((resolve) => setTimeout(resolve, 3));
        const started = performance.now();
        const result = await sandbox.execute(++id, programs[index], null, DEFAULT_LIMITS, upstream);
        if (i >= 20) samples[index].push(performance.now() - started);
        if (!result.ok) throw new Error(`execute failed: ${result.error.code} ${result.error.message}`);
      }
    }
  } finally {
    sandbox.close();
  }
  return [percentile(samples[0], 50), percentile(samples[1], 50)];
}

/** p50 of building a call-ready execute isolate with the SDK proxy and without, alternating. */
async function isolateStarts(rounds: number): Promise<[number, number]> {
  const abort = (message: string) => {
    throw new Error(`isolated-vm catastrophic error: ${message}`);
  };
  const sandboxes = [new ExecuteSandbox(abort), new ExecuteSandbox(abort, null)] as const;
  const samples: [number[], number[]] = [[], []];
  try {
    for (let i = 0; i < rounds + 20; i++) {
      for (const index of [0, 1] as const) {
        const started = performance.now();
        const prepared = await sandboxes[index].prepare(DEFAULT_LIMITS.memoryMb);
        const elapsed = performance.now() - started;
        prepared.isolate.dispose();
        if (i >= 20) samples[index].push(elapsed);
      }
    }
  } finally {
    for (const sandbox of sandboxes) sandbox.close();
  }
  return [percentile(samples[0], 50), percentile(samples[1], 50)];
}

async function startPool(store: SpecStore, size: number): Promise<SandboxPool> {
  const pool = createSandboxPool({ spec: store, size });
  await pool.ready();
  await timeSearches(pool, 4);
  return pool;
}

export async function run(_args: string[]): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-codemode-'));
  const size = availableParallelism();
  try {
    const store = createSpecStore({ path: documentPath, cacheDir: path.join(dir, 'cache-1x') });
    const spec = await store.load();

    const pool = await startPool(store, size);
    const search = await timeSearches(pool, 60);
    const perSecond = await searchesPerSecond(pool, size * 2, 5);

    const canned: UpstreamResponse = {
      success: true,
      status: 200,
      result: [{ id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'example.com' }],
      errors: [],
      messages: [],
    };
    const upstream: Upstream = async () => canned;
    const bare: number[] = [];
    const controller = new AbortController();
    for (let i = 0; i < 2_000; i++) {
      const started = performance.now();
      await upstream({ method: 'GET', path: '/zones' }, { signal: controller.signal, sequence: 1 });
      bare.push(performance.now() - started);
    }
    const execute: number[] = [];
    for (let i = 0; i < 220; i++) {
      const started = performance.now();
      const result = await pool.execute(EXECUTE_PROGRAM, { tenant: BENCH_TENANT, upstream });
      if (i >= 20) execute.push(performance.now() - started);
      if (!result.ok) throw new Error(`execute failed: ${result.error.code} ${result.error.message}`);
    }
    const [requestP50, sdkP50] = await alternatingExecutes(
      pool,
      upstream,
      [EXECUTE_PROGRAM, SDK_PROGRAM],
      200,
    );
    await pool.close();
    const [requestInProcessP50, sdkInProcessP50] = await alternatingInProcess(
      canned,
      [EXECUTE_PROGRAM, SDK_PROGRAM],
      400,
    );
    const [startWithSdk, startWithout] = await isolateStarts(400);

    const documentJson = JSON.stringify(v8.deserialize(readFileSync(spec.documentFile)));
    const baseline: number[] = [];
    for (let round = 0; round < 2; round++) {
      for (const program of SEARCH_PROGRAMS) baseline.push(await baselineSearch(documentJson, program));
    }

    const scaled: Record<string, number> = {};
    for (const factor of [2, 4]) {
      const scaledStore = createSpecStore({
        path: scaledDocument(factor, dir),
        cacheDir: path.join(dir, `cache-${factor}x`),
      });
      const loaded = await scaledStore.load();
      const scaledPool = await startPool(scaledStore, size);
      scaled[`search_p50_ms_${factor}x`] = round(percentile(await timeSearches(scaledPool, 30), 50));
      scaled[`operations_${factor}x`] = loaded.operations.length;
      await scaledPool.close();
    }

    const o200k = getEncoding('o200k_base');
    const searchP50 = percentile(search, 50);
    const baselineP50 = percentile(baseline, 50);
    const bareP50 = percentile(bare, 50);
    return {
      operations: spec.operations.length,
      processed_document_json_mb: round(documentJson.length / 1e6, 1),
      pool_size: size,
      search_programs: SEARCH_PROGRAMS.length,
      search_p50_ms: round(searchP50),
      search_p95_ms: round(percentile(search, 95)),
      search_per_s: Math.round(perSecond),
      search_baseline_p50_ms: round(baselineP50, 1),
      search_speedup_vs_baseline: Math.round(baselineP50 / searchP50),
      execute_p50_ms: round(percentile(execute, 50)),
      upstream_bare_p50_ms: round(bareP50, 4),
      execute_overhead_p50_ms: round(percentile(execute, 50) - bareP50),
      sdk_call_p50_ms: round(sdkP50),
      sdk_call_overhead_p50_ms: round(sdkInProcessP50 - requestInProcessP50, 3),
      sdk_call_overhead_pool_p50_ms: round(sdkP50 - requestP50, 3),
      execute_start_p50_ms: round(startWithSdk, 3),
      execute_start_delta_p50_ms: round(startWithSdk - startWithout, 3),
      tool_tokens_o200k: o200k.encode(toolsListJson(toolDefinitions({ products: spec.products }))).length,
      ...scaled,
      search_p50_growth_4x: round((scaled.search_p50_ms_4x ?? Number.NaN) / searchP50),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
