import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditJournal, SYSTEM_CALLER } from '@warden/audit';
import { DEFAULT_BUDGET } from '@warden/ratelimit';
import { startFakeCloudflare } from '@warden/testing';
import { PENDING_APPROVAL_RESPONSE } from '@warden/tools';
import type { HeldWrite } from '@warden/tools';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from '../test-support/free-port.ts';
import { executeOverHttp } from '../test-support/http-execute.ts';
import type { ExecuteBody } from '../test-support/http-execute.ts';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

const PERMISSIONS = [
  'com.cloudflare.api.user.read',
  '#organization:read',
  '#zone:read',
  '#zone:edit',
  '#dns_records:read',
  '#dns_records:edit',
  'com.cloudflare.edge.worker.script.list',
];

/**
 * Code Mode's SDK style end to end: the REST API over real HTTP, the real sandbox pool, policy,
 * budget and audit, and the fake Cloudflare behind them.
 */
describe('execute_tool: SDK-style calls over HTTP', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let apiKey: string;
  let token: string;
  let accountId: string;
  let zoneId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    const port = await freePort();
    await t.app.listen({ host: '127.0.0.1', port });
    base = `http://127.0.0.1:${port}`;
    ({ apiKey } = await t.createTenant('SDK style'));
    const alice = cf.state.createUser({ email: 'alice@example.com' });
    accountId = cf.state.createAccount({ name: 'Acme', members: [alice.id] }).id;
    zoneId = cf.state.createZone({ accountId, name: 'example.com' }).id;
    for (let i = 1; i <= 5; i++) {
      cf.state.createDnsRecord({ zoneId, type: 'A', name: `host${i}.example.com`, content: `192.0.2.${i}` });
    }
    cf.state.putWorkerScript({ accountId, name: 'hello', content: 'export default {}', usesModules: true });
    token = cf.state.createUserToken({ userId: alice.id, permissions: PERMISSIONS }).value;
    await t.connect(apiKey, 'alice', token);
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  async function post(
    path: string,
    body: unknown,
    key = apiKey,
  ): Promise<{ status: number; json: ExecuteBody }> {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as ExecuteBody };
  }

  async function execute(code: string, identifier = 'alice', key = apiKey): Promise<ExecuteBody> {
    return (await executeOverHttp({ base, apiKey: key, identifier }, code, { expectStatus: 200 })).body;
  }

  async function upstreamEvents(executionId: string) {
    const res = await fetch(`${base}/api/v1/audit/events?execution_id=${executionId}`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    const events = (
      (await res.json()) as {
        events: Array<{
          kind: string;
          outcome: string;
          upstream: { method: string; path: string; path_template: string | null } | null;
        }>;
      }
    ).events;
    // One record per request: its outcome (its intent, committed before sending, is the other).
    return events
      .filter((e) => e.kind === 'upstream_request' && e.outcome !== 'pending')
      .map((e) => e.upstream);
  }

  it('answers the two calls from the connector guides with the data cloudflare.request returns', async () => {
    const dns = await execute(`async () => cloudflare.dns.records.list({ zone_id: '${zoneId}' })`);
    const dnsRaw = await execute(
      `async () => cloudflare.request({ method: 'GET', path: '/zones/${zoneId}/dns_records' })`,
    );
    expect(dns.error).toBeUndefined();
    const raw = dnsRaw.data as { result: unknown[]; result_info: unknown };
    expect(raw.result).toHaveLength(5);
    expect(dns.data).toEqual({ result: raw.result, result_info: raw.result_info });

    const scripts = await execute(
      `async () => cloudflare.workers.scripts.list({ account_id: '${accountId}' })`,
    );
    const scriptsRaw = await execute(
      `async () => cloudflare.request({ method: 'GET', path: '/accounts/${accountId}/workers/scripts' })`,
    );
    expect(scripts.error).toBeUndefined();
    expect((scripts.data as { result: Array<{ id: string }> }).result.map((s) => s.id)).toEqual(['hello']);
    expect((scripts.data as { result: unknown }).result).toEqual(
      (scriptsRaw.data as { result: unknown }).result,
    );

    // The same host path: one audited upstream request each, matched to its operation.
    expect(await upstreamEvents(dns.execution_id)).toEqual([
      expect.objectContaining({
        method: 'GET',
        path: `/zones/${zoneId}/dns_records`,
        path_template: '/zones/{zone_id}/dns_records',
      }),
    ]);
  });

  it('iterates with for await over a list spanning three pages', async () => {
    cf.clearRequests();
    const res = await execute(`async () => {
      const names = [];
      for await (const r of cloudflare.dns.records.list({ zone_id: '${zoneId}', per_page: 2, order: 'name' })) names.push(r.name);
      return names;
    }`);
    expect(res.data).toEqual([1, 2, 3, 4, 5].map((i) => `host${i}.example.com`));
    expect(cf.requests().map((r) => r.query)).toEqual([
      'per_page=2&order=name',
      'per_page=2&order=name&page=2',
      'per_page=2&order=name&page=3',
    ]);
    expect(await upstreamEvents(res.execution_id)).toHaveLength(3);
  });

  it('creates and deletes a DNS record', async () => {
    const created = await execute(`async () => {
      const r = await cloudflare.dns.records.create({ zone_id: '${zoneId}', type: 'TXT', name: 'sdk.example.com', content: 'made by the SDK style' });
      return r.id;
    }`);
    const id = created.data as string;
    expect(cf.state.listDnsRecords(zoneId).find((r) => r.id === id)).toMatchObject({
      type: 'TXT',
      name: 'sdk.example.com',
      content: 'made by the SDK style',
    });
    const deleted = await execute(
      `async () => cloudflare.dns.records.delete('${id}', { zone_id: '${zoneId}' })`,
    );
    expect(deleted.data).toEqual({ id });
    expect(cf.state.listDnsRecords(zoneId).some((r) => r.id === id)).toBe(false);
  });

  it('sends a query parameter the operation declares in the query of a POST', async () => {
    cf.clearRequests();
    const res = await execute(
      `async () => cloudflare.zones.holds.create({ zone_id: '${zoneId}', include_subdomains: true })`,
    );
    expect(res.data).toEqual({ hold: true, include_subdomains: true });
    expect(cf.requests()).toEqual([
      expect.objectContaining({
        method: 'POST',
        path: `/zones/${zoneId}/hold`,
        query: 'include_subdomains=true',
      }),
    ]);
  });

  it('rejects a policy refusal with its code, before Cloudflare sees the request', async () => {
    const policy = await fetch(`${base}/api/v1/identities/alice-read/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ read_only: true }),
    });
    expect(policy.status).toBe(200);
    await t.connect(apiKey, 'alice-read', token);
    cf.clearRequests();
    const res = await execute(
      `async () => {
        try {
          await cloudflare.dns.records.create({ zone_id: '${zoneId}', type: 'A', name: 'x.example.com', content: '192.0.2.9' });
        } catch (e) {
          return [e.code, e.message];
        }
      }`,
      'alice-read',
    );
    expect(res.data).toEqual([
      'policy_denied',
      expect.stringMatching(/^cloudflare\.dns\.records\.create: .*read_only/),
    ]);
    expect(cf.requests().filter((r) => r.method === 'POST')).toEqual([]);
  });

  it('plans a write an approve rule holds: the SDK call resolves as planned, reads still run', async () => {
    const policy = await fetch(`${base}/api/v1/identities/alice-approve/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        rules: [{ effect: 'approve', methods: ['*'], path: '/**', name: 'approve-writes' }],
      }),
    });
    expect(policy.status).toBe(200);
    await t.connect(apiKey, 'alice-approve', token);
    cf.clearRequests();
    const res = (await execute(
      `async () => {
        const zone = await cloudflare.zones.get({ zone_id: '${zoneId}' });
        const created = await cloudflare.dns.records.create({ zone_id: zone.id, type: 'A', name: 'x.example.com', content: '192.0.2.9' });
        return [zone.name, created];
      }`,
      'alice-approve',
    )) as ExecuteBody & { approval?: { status: string; plan: Array<{ method: string; rule: string }> } };
    // The SDK resolves to `result`, which a held write does not have yet.
    expect(res.data).toEqual(['example.com', null]);
    expect(res.approval).toMatchObject({
      status: 'pending',
      plan: [{ method: 'POST', rule: 'approve-writes' }],
    });
    expect(cf.requests().map((r) => r.method)).toEqual(['GET']);
  });

  it("hands a held write to the caller's plan with a 202 pending_approval answer, sending nothing", async () => {
    const held: HeldWrite[] = [];
    const { tenantId } = await t.createTenant('Plans');
    const party = {
      tenantId,
      subject: { caller: SYSTEM_CALLER },
      credential: { type: 'api_token' as const, apiToken: token },
      principal: null,
      budget: DEFAULT_BUDGET,
      policy: {
        tenant: {
          rules: [{ effect: 'approve' as const, methods: ['POST' as const], path: '/zones/*/dns_records' }],
        },
        identity: {},
      },
      plan: {
        hold: (write: HeldWrite) => {
          held.push(write);
          return PENDING_APPROVAL_RESPONSE;
        },
      },
    };
    cf.clearRequests();
    const journal = new AuditJournal(t.container.audit, tenantId, 30);
    const body = { type: 'TXT', name: 'x.example.com', content: 'v=1' };
    const response = await t.container.gateway.send(
      party,
      { method: 'POST', path: `/zones/${zoneId}/dns_records`, body },
      journal,
    );
    expect(response).toMatchObject({ status: 202, success: true, result: null, pending_approval: true });
    expect(held).toEqual([
      {
        method: 'POST',
        path: `/zones/${zoneId}/dns_records`,
        query: null,
        body,
        operation: expect.objectContaining({ pathTemplate: '/zones/{zone_id}/dns_records' }),
        rule: 'rules[0] (approve POST /zones/*/dns_records)',
      },
    ]);
    expect(cf.requests()).toEqual([]);
  });

  it('rejects a rate refusal with its code', async () => {
    const tight = await t.createTenant('SDK style, tight budget');
    const settings = await fetch(`${base}/api/v1/settings`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${tight.apiKey}`, 'content-type': 'application/json' },
      // Verification on connect takes 3 of the user's 4.
      body: JSON.stringify({ budget: '4/86400' }),
    });
    expect(settings.status).toBe(200);
    const bob = cf.state.createUser({ email: 'bob@example.com' });
    const bobAccount = cf.state.createAccount({ name: 'Bob', members: [bob.id] });
    const bobZone = cf.state.createZone({ accountId: bobAccount.id, name: 'bob.example' });
    await t.connect(
      tight.apiKey,
      'bob',
      cf.state.createUserToken({ userId: bob.id, permissions: PERMISSIONS }).value,
    );
    const res = await execute(
      `async () => {
        const out = [];
        for (let i = 0; i < 2; i++) {
          try { await cloudflare.dns.records.list({ zone_id: '${bobZone.id}' }); out.push('ok'); } catch (e) { out.push(e.code); }
        }
        return out;
      }`,
      'bob',
      tight.apiKey,
    );
    expect(res.data).toEqual(['ok', 'rate_limited']);
  });

  it('names the nearest method for a misspelt one', async () => {
    const res = await execute(`async () => cloudflare.dns.record.list({ zone_id: '${zoneId}' })`);
    expect(res.data).toBeNull();
    expect(res.error).toEqual({
      code: 'execution_error',
      message: expect.stringContaining(
        'TypeError: cloudflare.dns.record.list is not a method of the Cloudflare SDK; did you mean cloudflare.dns.records.list?',
      ),
    });
  });

  it('never shows the credential inside the isolate, in results, errors or logs', async () => {
    const res = await execute(`async () => {
      const seen = [];
      const page = await cloudflare.dns.records.list({ zone_id: '${zoneId}' });
      seen.push(page, page.result_info, Object.getOwnPropertyNames(page));
      try { await cloudflare.dns.records.get('nope', { zone_id: '${zoneId}' }); } catch (e) {
        seen.push({ ...e, message: e.message, stack: e.stack });
      }
      try { await cloudflare.accounts.get({ account_id: 'not-mine' }); } catch (e) { seen.push({ ...e, message: e.message }); }
      seen.push(Object.getOwnPropertyNames(globalThis), String(cloudflare.dns.records.list), Object.keys(cloudflare));
      console.log(JSON.stringify(seen));
      return seen;
    }`);
    const text = JSON.stringify(res);
    expect(text).toContain('Record does not exist');
    expect(res.logs?.length).toBe(1);
    expect(text).not.toContain(token);
    expect(text.toLowerCase()).not.toContain('authorization');
    expect(text).not.toContain('Bearer');
  });

  it('returns console.log lines as logs beside the data, also when the code fails', async () => {
    const ok = await execute(
      "async () => { console.log('listing', 2); console.error('careful'); return 1; }",
    );
    expect(ok).toEqual({
      data: 1,
      logs: ['listing 2', 'error: careful'],
      execution_id: expect.stringMatching(/^exe_/),
    });
    const quiet = await execute('async () => 1');
    expect(quiet).toEqual({ data: 1, execution_id: expect.any(String) });
    const failed = await execute("async () => { console.log('before'); throw new Error('boom'); }");
    expect(failed).toMatchObject({ data: null, error: { code: 'execution_error' }, logs: ['before'] });
    const flood = await execute(
      "async () => { for (let i = 0; i < 10000; i++) console.log('line ' + i + ' ' + 'x'.repeat(40)); }",
    );
    expect(flood.logs?.at(-1)).toMatch(/^… log output cut at 16384 characters; \d+ more lines left out$/);
    expect(flood.logs?.slice(0, -1).join('').length).toBeLessThanOrEqual(16_384);
    const search = await post('/api/v1/execute_tool', {
      tool_name: 'cloudflare_search',
      identifier: 'alice',
      params: { code: "async () => { console.log(spec.sdk['zones.holds.create'].path); return 0; }" },
    });
    expect(search.json).toMatchObject({ data: 0, logs: ['/zones/{zone_id}/hold'] });
  });
});
