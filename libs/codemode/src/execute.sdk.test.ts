import ivm from 'isolated-vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WardenError } from '@warden/core';
import { ExecuteSandbox } from './execute.sandbox.ts';
import { SDK_ISOLATE_RUNTIME_SCRIPT } from './isolate-runtime.ts';
import { pinnedSdkMethods } from './sdk/pinned-sdk-methods.ts';
import { createSandboxPool } from './sandbox-pool.ts';
import type { SandboxPool } from './sandbox-pool.ts';
import { DEFAULT_LIMITS } from './sandbox.types.ts';
import type { ExecuteOptions, Upstream, UpstreamRequest, UpstreamResponse } from './sandbox.types.ts';
import { HOST_DETAILS, errorOf, ok, realSpecStore, resultOf } from './test-support/fixtures.ts';

/** Every call is one tenant's: the pool never lets two tenants share a child. */
const TENANT = 'ten_sdk';

let pool: SandboxPool;

beforeAll(async () => {
  pool = createSandboxPool({
    spec: await realSpecStore(),
    size: 1,
    limits: { memoryMb: 64, cpuMs: 2_000, wallMs: 5_000 },
  });
  await pool.ready();
});

afterAll(() => pool.close());

/** Runs `code` against an upstream that records every request and echoes it. */
async function record(code: string, options: Partial<ExecuteOptions> = {}) {
  const seen: UpstreamRequest[] = [];
  const upstream: Upstream = async (request) => {
    seen.push(request);
    return ok({ echo: request });
  };
  const result = await pool.execute(code, { tenant: TENANT, upstream, accountId: 'acc1', ...options });
  return { result, seen };
}

function page(result: unknown, resultInfo: unknown): UpstreamResponse {
  return { success: true, status: 200, result, errors: [], messages: [], result_info: resultInfo };
}

describe('SDK-style calls in execute', () => {
  it('route path parameters by name, the rest to the query of a GET and to the body of a write', async () => {
    const { result, seen } = await record(`async () => {
      await cloudflare.dns.records.list({ zone_id: 'z1', name: { contains: 'www' }, per_page: 50, proxied: true });
      await cloudflare.dns.records.create({ zone_id: 'z1', type: 'A', name: 'a.example.com', content: '192.0.2.1' });
      await cloudflare.dns.records.edit('r/1', { zone_id: 'z1', ttl: 60 });
      await cloudflare.dns.records.delete({ zone_id: 'z1', dns_record_id: 'r2' });
      await cloudflare.workers.scripts.list();
      await cloudflare.workers.scripts.list({ account_id: 'acc2' });
      return 'done';
    }`);
    expect(resultOf(result)).toBe('done');
    expect(seen).toEqual([
      {
        method: 'GET',
        path: '/zones/z1/dns_records',
        query: { 'name.contains': 'www', per_page: 50, proxied: true },
      },
      {
        method: 'POST',
        path: '/zones/z1/dns_records',
        body: { type: 'A', name: 'a.example.com', content: '192.0.2.1' },
      },
      { method: 'PATCH', path: '/zones/z1/dns_records/r%2F1', body: { ttl: 60 } },
      { method: 'DELETE', path: '/zones/z1/dns_records/r2' },
      { method: 'GET', path: '/accounts/acc1/workers/scripts' },
      { method: 'GET', path: '/accounts/acc2/workers/scripts' },
    ]);
    expect(result.stats.upstreamRequests).toBe(6);
  });

  it('puts the query parameters an operation declares in the query on every verb', async () => {
    const { seen } = await record(`async () => {
      await cloudflare.zones.holds.create({ zone_id: 'z1', include_subdomains: true });
      await cloudflare.rulesets.create({ zone_id: 'z1', name: 'r', kind: 'zone', phase: 'http_request_firewall_custom' });
      await cloudflare.dns.records.create({ zone_id: 'z1', type: 'A' }, { query: { dry_run: true } });
    }`);
    expect(seen).toEqual([
      { method: 'POST', path: '/zones/z1/hold', query: { include_subdomains: true }, body: {} },
      {
        method: 'POST',
        path: '/zones/z1/rulesets',
        body: { name: 'r', kind: 'zone', phase: 'http_request_firewall_custom' },
      },
      { method: 'POST', path: '/zones/z1/dns_records', query: { dry_run: true }, body: { type: 'A' } },
    ]);
  });

  it('takes account-or-zone paths, array bodies and raw bodies as the SDK does', async () => {
    const { result, seen } = await record(`async () => {
      await cloudflare.rulesets.list({});
      await cloudflare.rulesets.list({ zone_id: 'z9' });
      await cloudflare.alerting.silences.create({ body: [{ id: 's1' }] });
      await cloudflare.kv.namespaces.keys.bulkUpdate('ns1', { body: [{ key: 'k', value: 'v' }] });
      await cloudflare.logs.logExplorer.query.sql('SELECT 1', { zone_id: 'z9', limit: 5 });
      try { await cloudflare.rulesets.list({ account_id: 'a', zone_id: 'z' }); } catch (e) { return e.message; }
    }`);
    expect(resultOf(result)).toMatch(/^cloudflare\.rulesets\.list: pass account_id or zone_id, not both/);
    expect(seen).toEqual([
      { method: 'GET', path: '/accounts/acc1/rulesets' },
      { method: 'GET', path: '/zones/z9/rulesets' },
      { method: 'POST', path: '/accounts/acc1/alerting/v3/silences', body: [{ id: 's1' }] },
      {
        method: 'PUT',
        path: '/accounts/acc1/storage/kv/namespaces/ns1/bulk',
        body: [{ key: 'k', value: 'v' }],
      },
      {
        method: 'POST',
        path: '/zones/z9/logs/explorer/query/sql',
        query: { limit: 5 },
        rawBody: 'SELECT 1',
        contentType: 'application/octet-stream',
      },
    ]);
  });

  it('resolves to the unwrapped result, or rejects with the status and errors of a Cloudflare error', async () => {
    const upstream: Upstream = async (request) =>
      request.path.endsWith('/gone')
        ? {
            success: false,
            status: 404,
            result: null,
            errors: [{ code: 81044, message: 'Record does not exist.' }],
            messages: [],
          }
        : ok({ id: 'r1', type: 'A' });
    const result = await pool.execute(
      `async () => {
        const record = await cloudflare.dns.records.get('r1', { zone_id: 'z1' });
        try {
          await cloudflare.dns.records.get('gone', { zone_id: 'z1' });
        } catch (e) {
          return { record, error: [e instanceof Error, e.code, e.status, e.errors, e.message] };
        }
      }`,
      { tenant: TENANT, upstream },
    );
    expect(resultOf(result)).toEqual({
      record: { id: 'r1', type: 'A' },
      error: [
        true,
        'upstream_error',
        404,
        [{ code: 81044, message: 'Record does not exist.' }],
        'cloudflare.dns.records.get: Cloudflare answered 404: Record does not exist. (81044)',
      ],
    });
    const uncaught = await pool.execute("async () => cloudflare.dns.records.get('gone', { zone_id: 'z1' })", {
      tenant: TENANT,
      upstream,
    });
    expect(errorOf(uncaught)).toEqual({
      code: 'upstream_error',
      message: 'cloudflare.dns.records.get: Cloudflare answered 404: Record does not exist. (81044)',
    });
  });

  it('rejects refusals with the same codes as cloudflare.request', async () => {
    for (const [code, message] of [
      ['policy_denied', 'POST /zones/z1/dns_records refused by the rule "no dns"'],
      ['rate_limited', 'the Cloudflare budget is exhausted; retry in 3 s'],
    ] as const) {
      const upstream: Upstream = async () => {
        throw new WardenError(code, message);
      };
      const result = await pool.execute(
        `async () => {
          const outcomes = [];
          for (const call of [
            () => cloudflare.dns.records.create({ zone_id: 'z1', type: 'A' }),
            () => cloudflare.request({ method: 'POST', path: '/zones/z1/dns_records', body: { type: 'A' } }),
          ]) {
            try { await call(); } catch (e) { outcomes.push([e.code, e.message]); }
          }
          return outcomes;
        }`,
        { tenant: TENANT, upstream },
      );
      expect(resultOf(result)).toEqual([
        [code, `cloudflare.dns.records.create: ${message}`],
        [code, message],
      ]);
    }
  });

  it('names the nearest methods for a wrong name, whatever is done with it', async () => {
    const result = await pool.execute(
      `async () => {
        const outcomes = [];
        for (const call of [
          () => cloudflare.dns.record.list({ zone_id: 'z1' }),
          async () => { for await (const r of cloudflare.dns.record.list({ zone_id: 'z1' })) {} },
          () => cloudflare.workers.script.lst({}),
          () => cloudflare['x'.repeat(1e6)].list(),
        ]) {
          try { await call(); outcomes.push('resolved'); } catch (e) { outcomes.push(e.name + ': ' + e.message); }
        }
        return outcomes;
      }`,
      { tenant: TENANT, upstream: async () => ok(null) },
    );
    const [direct, iterated, script, huge] = resultOf(result) as string[];
    expect(direct).toBe(
      'TypeError: cloudflare.dns.record.list is not a method of the Cloudflare SDK; did you mean cloudflare.dns.records.list? (spec.sdk in cloudflare_search lists them; cloudflare.request calls any path)',
    );
    expect(iterated).toBe(direct);
    expect(script).toContain('did you mean cloudflare.workers.scripts.list');
    // A name longer than any method's is neither copied out nor ranked, and is cut in the message.
    expect(huge).toMatch(/^TypeError: cloudflare\.x{189}… is not a method of the Cloudflare SDK \(spec\.sdk/);
    const uncaught = errorOf(
      await pool.execute('async () => {\n  return cloudflare.zone.list({});\n}', {
        tenant: TENANT,
        upstream: echoOk,
      }),
    );
    expect(uncaught.code).toBe('execution_error');
    expect(uncaught.message).toMatch(
      /^TypeError: cloudflare\.zone\.list is not a method.*did you mean cloudflare\.zones\.list\?.*\(line 2, column \d+\)$/,
    );
    expect(uncaught.message).not.toMatch(HOST_DETAILS);
  });

  it('refuses arguments it cannot route, before anything is sent', async () => {
    const { result, seen } = await record(
      `async () => {
      const outcomes = [];
      for (const call of [
        () => cloudflare.dns.records.get({ zone_id: 'z1' }),
        () => cloudflare.dns.records.list({ zone_id: 'z1', type: ['A', 'AAAA'] }),
        () => cloudflare.dns.records.list('z1'),
        () => cloudflare.dns.records.list({ zone_id: 'z1' }, { headers: { authorization: 'Bearer x' } }),
        () => cloudflare.workers.scripts.list({}),
      ]) {
        try { await call(); outcomes.push('sent'); } catch (e) { outcomes.push(e.message); }
      }
      return outcomes;
    }`,
      { accountId: undefined },
    );
    expect(resultOf(result)).toEqual([
      expect.stringMatching(
        /^cloudflare\.dns\.records\.get: dns_record_id is required \(call it as cloudflare\.dns\.records\.get\(dns_record_id, \{ \.\.\.params \}, options\?\) for GET \/zones\/\{zone_id\}\/dns_records\/\{dns_record_id\}\)$/,
      ),
      expect.stringContaining('query parameter type is an array'),
      expect.stringContaining(
        'params must be an object (call it as cloudflare.dns.records.list({ ...params }',
      ),
      expect.stringContaining('options.headers is not supported'),
      expect.stringContaining('account_id is required'),
    ]);
    expect(seen).toEqual([]);
  });

  it('pages a list: the page object, getNextPage, and for await over every item', async () => {
    const seen: UpstreamRequest[] = [];
    const upstream: Upstream = async (request) => {
      seen.push(request);
      const n = Number(request.query?.page ?? 1);
      return page([{ id: `r${n}a` }, { id: `r${n}b` }], {
        page: n,
        per_page: 2,
        count: 2,
        total_count: 6,
        total_pages: 3,
      });
    };
    const result = await pool.execute(
      `async () => {
        const first = await cloudflare.dns.records.list({ zone_id: 'z1', per_page: 2 });
        const second = await first.getNextPage();
        const all = [];
        for await (const r of cloudflare.dns.records.list({ zone_id: 'z1', per_page: 2 })) all.push(r.id);
        const third = await second.getNextPage();
        let error;
        try { await third.getNextPage(); } catch (e) { error = e.message; }
        return { first, hasNext: [first.hasNextPage(), third.hasNextPage()], second: second.result, all, error,
          items: third.getPaginatedItems() };
      }`,
      { tenant: TENANT, upstream },
    );
    expect(resultOf(result)).toEqual({
      first: {
        result: [{ id: 'r1a' }, { id: 'r1b' }],
        result_info: { page: 1, per_page: 2, count: 2, total_count: 6, total_pages: 3 },
      },
      hasNext: [true, false],
      second: [{ id: 'r2a' }, { id: 'r2b' }],
      all: ['r1a', 'r1b', 'r2a', 'r2b', 'r3a', 'r3b'],
      error: 'cloudflare.dns.records.list: there is no next page; check hasNextPage() first',
      items: [{ id: 'r3a' }, { id: 'r3b' }],
    });
    expect(seen.map((r) => r.query)).toEqual([
      { per_page: 2 },
      { per_page: 2, page: 2 },
      { per_page: 2 },
      { per_page: 2, page: 2 },
      { per_page: 2, page: 3 },
      { per_page: 2, page: 3 },
    ]);
  });

  it.each([
    ['cursor', 'dls.regions.list', (info: string) => ({ cursor: info }), 'cursor'],
    ['cursor_after', 'accounts.logs.audit.list', (info: string) => ({ cursors: { after: info } }), 'cursor'],
    [
      'token',
      'containers.applications.instances.list',
      (info: string) => ({ next_page_token: info }),
      'page_token',
    ],
  ])('follows %s pagination', async (_kind, name, info, param) => {
    const seen: UpstreamRequest[] = [];
    const upstream: Upstream = async (request) => {
      seen.push(request);
      const at = String(request.query?.[param] ?? 'start');
      const next = at === 'start' ? 'c2' : at === 'c2' ? 'c3' : '';
      return page([`${at}-item`], info(next));
    };
    const params = name.startsWith('containers') ? "{ application_id: 'app1' }" : '{}';
    const result = await pool.execute(
      `async () => { const out = []; for await (const x of cloudflare.${name}(${params})) out.push(x); return out; }`,
      { tenant: TENANT, upstream, accountId: 'acc1' },
    );
    expect(resultOf(result)).toEqual(['start-item', 'c2-item', 'c3-item']);
    expect(seen.map((r) => r.query?.[param])).toEqual([undefined, 'c2', 'c3']);
  });

  it('pages items inside the result and stops at an empty page when no total is given', async () => {
    const upstream: Upstream = async (request) => {
      const n = Number(request.query?.page ?? 1);
      return page({ items: n <= 2 ? [n] : [] }, { page: n });
    };
    const result = await pool.execute(
      'async () => { const out = []; for await (const x of cloudflare.abuseReports.list({})) out.push(x); return out; }',
      { tenant: TENANT, upstream, accountId: 'acc1' },
    );
    expect(resultOf(result)).toEqual([1, 2]);
    expect(result.stats.upstreamRequests).toBe(3);
  });

  it('stops iterating at the per-execution request limit with an error that says so', async () => {
    const upstream: Upstream = async (request) => {
      const n = Number(request.query?.page ?? 1);
      return page([{ id: n }], { page: n, per_page: 1, total_pages: 100 });
    };
    const result = await pool.execute(
      "async () => { let n = 0; for await (const r of cloudflare.dns.records.list({ zone_id: 'z1' })) n++; return n; }",
      { tenant: TENANT, upstream, limits: { maxUpstreamRequests: 4 } },
    );
    expect(errorOf(result)).toEqual({
      code: 'too_many_requests',
      message:
        'cloudflare.dns.records.list: stopped after 4 pages (4 items): this execution reached its limit of 4 requests; ask for fewer pages (filters, per_page) or stop iterating earlier',
    });
    expect(result.stats.upstreamRequests).toBe(4);
  });

  it('leaves generic code alone: no thenable, no enumerable names, cloudflare.request unchanged', async () => {
    const result = await pool.execute(
      `async () => [typeof cloudflare.dns.records.list, await cloudflare.dns === cloudflare.dns, Object.keys(cloudflare),
        Object.keys(cloudflare.dns), JSON.stringify({ a: cloudflare.dns }), cloudflare.request === cloudflare.request]`,
      { tenant: TENANT, upstream: echoOk },
    );
    expect(resultOf(result)).toEqual(['function', true, ['request'], [], '{}', true]);
  });

  it('is absent from an execute sandbox built without an SDK table', async () => {
    const sandbox = new ExecuteSandbox(() => undefined, null);
    try {
      const result = await sandbox.execute(
        1,
        'async () => [typeof cloudflare.request, typeof cloudflare.dns]',
        null,
        DEFAULT_LIMITS,
        async () => ({ ok: true, response: null }),
      );
      expect(resultOf(result)).toEqual(['function', 'undefined']);
    } finally {
      sandbox.close();
    }
  });
});

const echoOk: Upstream = async (request) => ok(request);

describe('the runtime code cache', () => {
  it("is made by Warden's own warm-up call: it holds the functions a call compiles, not only the runtime's top level", async () => {
    const sandbox = new ExecuteSandbox(() => undefined);
    const isolate = new ivm.Isolate({ memoryLimit: 32 });
    try {
      (await sandbox.prepare(DEFAULT_LIMITS.memoryMb)).isolate.dispose();
      // What a cache made right after compiling holds: the top level alone.
      const plain = isolate.compileScriptSync(SDK_ISOLATE_RUNTIME_SCRIPT, {
        filename: 'warden-runtime.js',
        produceCachedData: true,
      }) as ivm.Script & ivm.CachedDataResult;
      const plainBytes = plain.cachedData?.copy().byteLength ?? 0;
      expect(plainBytes).toBeGreaterThan(0);
      expect(sandbox.runtimeCacheBytes).toBeGreaterThan(plainBytes);

      // Isolates built from it serve calls like any other, the error path included.
      const result = await sandbox.execute(
        1,
        `async () => {
          const zones = (await cloudflare.request({ method: 'GET', path: '/zones' })).result;
          try { await cloudflare.request({ method: 'DELETE', path: '/zones/z1' }); } catch (e) { return [zones, e.code]; }
        }`,
        null,
        DEFAULT_LIMITS,
        async (payload) =>
          (payload as { method: string }).method === 'GET'
            ? { ok: true, response: ok(['z1']) }
            : { ok: false, code: 'policy_denied', message: 'refused' },
      );
      expect(resultOf(result)).toEqual([['z1'], 'policy_denied']);
    } finally {
      isolate.dispose();
      sandbox.close();
    }
  });

  it('is made of the runtime alone when the warm-up does not end in time: calls wait for it no longer', async () => {
    const sandbox = new ExecuteSandbox(() => undefined, pinnedSdkMethods, {
      code: 'async () => { for (;;) {} }',
      timeoutMs: 300,
    });
    const isolate = new ivm.Isolate({ memoryLimit: 32 });
    try {
      const result = await sandbox.execute(
        1,
        `async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result`,
        null,
        DEFAULT_LIMITS,
        async () => ({ ok: true, response: ok(['z1']) }),
      );
      expect(resultOf(result)).toEqual(['z1']);
      const plain = isolate.compileScriptSync(SDK_ISOLATE_RUNTIME_SCRIPT, {
        filename: 'warden-runtime.js',
        produceCachedData: true,
      }) as ivm.Script & ivm.CachedDataResult;
      expect(sandbox.runtimeCacheBytes).toBe(plain.cachedData?.copy().byteLength);
    } finally {
      isolate.dispose();
      sandbox.close();
    }
  }, 10_000);
});
