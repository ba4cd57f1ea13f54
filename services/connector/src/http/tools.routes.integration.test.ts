import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

const FULL = [
  'com.cloudflare.api.user.read',
  '#organization:read',
  '#zone:read',
  '#dns_records:read',
  '#dns_records:edit',
];

describe('tools API: list_scoped_tools and execute_tool end to end', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };
  let alice: { id: string; email: string };
  let acme: { id: string; name: string };
  let beta: { id: string; name: string };
  let zone: { id: string; name: string };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    tenant = await t.createTenant('Tools tenant');
    alice = cf.state.createUser({ email: 'alice@example.com' });
    acme = cf.state.createAccount({ name: 'Acme', members: [alice.id] });
    beta = cf.state.createAccount({ name: 'Beta', members: [alice.id] });
    zone = cf.state.createZone({ accountId: acme.id, name: 'example.com' });
    cf.state.createDnsRecord({ zoneId: zone.id, type: 'A', name: 'www.example.com', content: '192.0.2.1' });
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  const auth = () => ({ authorization: `Bearer ${tenant.apiKey}` });

  async function connect(identifier: string, permissions = FULL, accounts?: string[]) {
    const token = cf.state.createUserToken({
      userId: alice.id,
      permissions,
      ...(accounts ? { accounts } : {}),
    });
    return { token, accountId: await t.connect(tenant.apiKey, identifier, token.value) };
  }

  const execute = (payload: Record<string, unknown>) =>
    t.app.inject({ method: 'POST', url: '/api/v1/execute_tool', headers: auth(), payload });

  it('lists scoped tools only for identifiers with an ACTIVE connected account', async () => {
    const { accountId } = await connect('scoped-user');
    const res = await t.app.inject({
      method: 'GET',
      url: '/api/v1/tools/scoped?identifier=scoped-user',
      headers: auth(),
    });
    expect(res.statusCode).toBe(200);
    const tools = res.json().tools;
    expect(tools.map((x: { tool: { definition: { name: string } } }) => x.tool.definition.name)).toEqual([
      'cloudflare_search',
      'cloudflare_execute',
    ]);
    expect(tools[0]).toMatchObject({ connection_name: 'cloudflare', connected_account_id: accountId });
    expect(tools[1].tool.definition.input_schema).toMatchObject({ type: 'object', required: ['code'] });
    expect(tools[1].tool.definition.description).toContain(acme.id);
    const none = await t.app.inject({
      method: 'GET',
      url: '/api/v1/tools/scoped?identifier=nobody',
      headers: auth(),
    });
    expect(none.json()).toEqual({ tools: [], next_page_token: null });
    const paged = await t.app.inject({
      method: 'GET',
      url: '/api/v1/tools/scoped?identifier=scoped-user&page_size=1',
      headers: auth(),
    });
    expect(paged.json().tools).toHaveLength(1);
    expect(paged.json().next_page_token).toEqual(expect.any(String));
    const missing = await t.app.inject({ method: 'GET', url: '/api/v1/tools/scoped', headers: auth() });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error.field).toBe('identifier');
  });

  it('searches the spec', async () => {
    await connect('searcher');
    const res = await execute({
      tool_name: 'cloudflare_search',
      identifier: 'searcher',
      params: { code: "async () => Object.keys(spec.paths['/zones/{zone_id}/dns_records'])" },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      data: expect.arrayContaining(['get', 'post']),
      execution_id: expect.stringMatching(/^exe_/),
    });
  });

  it('executes: lists zones, then creates and deletes a DNS record', async () => {
    await connect('deployer');
    const ambiguous = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'deployer',
      params: {
        code: "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result.length",
      },
    });
    expect(ambiguous.statusCode).toBe(400);
    expect(ambiguous.json().error).toMatchObject({ field: 'params.account_id' });
    expect(ambiguous.json().error.message).toContain(`${beta.id} (Beta)`);

    const listed = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'deployer',
      params: {
        account_id: acme.id,
        code: "async () => { const z = await cloudflare.request({ method: 'GET', path: '/zones', query: { name: 'example.com' } }); return { accountId, zones: z.result.map((x) => x.name) }; }",
      },
    });
    expect(listed.json()).toMatchObject({ data: { accountId: acme.id, zones: ['example.com'] } });

    const created = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'deployer',
      params: {
        account_id: acme.id,
        code: `async () => {
          const r = await cloudflare.request({ method: 'POST', path: '/zones/${zone.id}/dns_records', body: { type: 'TXT', name: 'warden.example.com', content: 'hello', ttl: 120 } });
          return { success: r.success, id: r.result.id };
        }`,
      },
    });
    expect(created.json().data).toMatchObject({ success: true, id: expect.any(String) });
    const recordId = created.json().data.id;
    expect(cf.state.listDnsRecords(zone.id).some((r) => r.id === recordId)).toBe(true);

    const deleted = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'deployer',
      params: {
        account_id: acme.id,
        code: `async () => (await cloudflare.request({ method: 'DELETE', path: '/zones/${zone.id}/dns_records/${recordId}' })).success`,
      },
    });
    expect(deleted.json().data).toBe(true);
    expect(cf.state.listDnsRecords(zone.id).some((r) => r.id === recordId)).toBe(false);
  });

  it('enforces policy on every upstream request and names the rule', async () => {
    await connect('reader', FULL, [acme.id]);
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/identities/reader/policy',
      headers: auth(),
      payload: { read_only: true },
    });
    expect(put.statusCode).toBe(200);
    cf.clearRequests();
    const res = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'reader',
      params: {
        code: `async () => cloudflare.request({ method: 'POST', path: '/zones/${zone.id}/dns_records', body: { type: 'A', name: 'x.example.com', content: '192.0.2.9' } })`,
      },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      data: null,
      error: { code: 'policy_denied', message: expect.stringContaining('read_only') },
    });
    expect(cf.requests().filter((r) => r.method === 'POST')).toEqual([]);
    const read = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'reader',
      params: {
        code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zone.id}/dns_records' })).result.length`,
      },
    });
    expect(read.json().data).toBeGreaterThan(0);
    const scoped = await t.app.inject({
      method: 'GET',
      url: '/api/v1/tools/scoped?identifier=reader',
      headers: auth(),
    });
    expect(scoped.json().tools[1].tool.definition.description).toContain('read-only');
    const annotated = await execute({
      tool_name: 'cloudflare_search',
      identifier: 'reader',
      params: {
        code: "async () => [allowed('GET', '/zones/{zone_id}/dns_records'), allowed('POST', '/zones/{zone_id}/dns_records')]",
      },
    });
    expect(annotated.json().data).toEqual([true, false]);

    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: auth(),
      payload: {
        rules: [{ effect: 'deny', methods: ['GET'], path: '/zones/*/dns_records', name: 'no-dns-listing' }],
      },
    });
    const denied = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'reader',
      params: {
        code: `async () => cloudflare.request({ method: 'GET', path: '/zones/${zone.id}/dns_records' })`,
      },
    });
    expect(denied.json().error).toMatchObject({
      code: 'policy_denied',
      message: expect.stringContaining('no-dns-listing'),
    });
    await t.app.inject({ method: 'PUT', url: '/api/v1/policy', headers: auth(), payload: {} });
  });

  it('explains a Cloudflare 403 with the permission the operation needs', async () => {
    await connect('weak', ['#zone:read', '#dns_records:read'], [acme.id]);
    const res = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'weak',
      params: {
        code: `async () => cloudflare.request({ method: 'POST', path: '/zones/${zone.id}/dns_records', body: { type: 'A', name: 'y.example.com', content: '192.0.2.7' } })`,
      },
    });
    expect(res.json()).toMatchObject({
      data: null,
      error: { code: 'forbidden', message: expect.stringContaining('#dns_records:edit') },
    });
  });

  it('returns tool failures as 200 with an error, and caller errors as 4xx', async () => {
    await connect('coder', FULL, [acme.id]);
    const thrown = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'coder',
      params: { code: "async () => { throw new Error('boom') }" },
    });
    expect(thrown.statusCode).toBe(200);
    expect(thrown.json().error).toMatchObject({
      code: 'execution_error',
      message: expect.stringContaining('boom'),
    });
    const syntax = await execute({
      tool_name: 'cloudflare_search',
      identifier: 'coder',
      params: { code: 'async () => {' },
    });
    expect(syntax.json().error.code).toBe('syntax_error');
    const unknownTool = await execute({
      tool_name: 'cloudflare_delete_everything',
      identifier: 'coder',
      params: { code: 'async () => 1' },
    });
    expect(unknownTool.statusCode).toBe(400);
    expect(unknownTool.json().error.field).toBe('tool_name');
    const badParams = await execute({
      tool_name: 'cloudflare_search',
      identifier: 'coder',
      params: { code: 42 },
    });
    expect(badParams.json().error.field).toBe('params.code');
    const unknownIdentity = await execute({
      tool_name: 'cloudflare_search',
      identifier: 'ghost',
      params: { code: 'async () => 1' },
    });
    expect(unknownIdentity.statusCode).toBe(404);
  });

  it('records every tool call and upstream request in the audit trail', async () => {
    await connect('audited', FULL, [acme.id]);
    const res = await execute({
      tool_name: 'cloudflare_execute',
      identifier: 'audited',
      agent_run_id: 'run-42',
      params: {
        code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zone.id}/dns_records' })).success`,
      },
    });
    const executionId = res.json().execution_id;
    const events = await t.app.inject({
      method: 'GET',
      url: `/api/v1/audit/events?execution_id=${executionId}`,
      headers: auth(),
    });
    const list = events.json().events;
    // The request's intent (committed before it was sent), its outcome, and the call itself.
    expect(list.map((e: { kind: string; outcome: string }) => [e.kind, e.outcome])).toEqual([
      ['upstream_request', 'pending'],
      ['upstream_request', 'success'],
      ['tool_call', 'success'],
    ]);
    const byKind = (kind: string) =>
      list.find((e: { kind: string; outcome: string }) => e.kind === kind && e.outcome !== 'pending');
    expect(list[1].intent_id).toBe(list[0].id);
    expect(byKind('upstream_request')).toMatchObject({
      kind: 'upstream_request',
      outcome: 'success',
      identifier: 'audited',
      upstream: {
        method: 'GET',
        path_template: '/zones/{zone_id}/dns_records',
        path: `/zones/${zone.id}/dns_records`,
        status: 200,
        cf_ray: expect.any(String),
      },
    });
    const account = await t.app.inject({
      method: 'GET',
      url: '/api/v1/connected_accounts?identifier=audited',
      headers: auth(),
    });
    expect(account.json().connected_accounts[0].rate_budget).toMatchObject({
      principal: `cf:user:${alice.id}`,
      capacity: 1200,
      window_seconds: 300,
      blocked_until: null,
    });
    expect(account.json().connected_accounts[0].rate_budget.remaining).toBeLessThan(1200);
    expect(byKind('tool_call')).toMatchObject({
      kind: 'tool_call',
      tool_name: 'cloudflare_execute',
      outcome: 'success',
      agent_run_id: 'run-42',
      caller: { type: 'api_key' },
      code_sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
  });
});
