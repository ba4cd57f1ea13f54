import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { approvalsTenant } from './test-support/approvals-tenant.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { fakeZoneUser } from './test-support/fake-user.ts';
import { requestsInTurn } from './test-support/agent-code.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/** attack22c: outsider attacks on issue 14 (containment) claims. A test FAILS on a bug. */
describe('attack22c containment', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let world: ReturnType<typeof fakeZoneUser>;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    world = fakeZoneUser(cf, 'Atk');
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  async function tenantWithAccount(name: string, identifier: string, permissions: string[]) {
    const tenant = await t.createTenant(name);
    const { token } = await world.connect(t, tenant.apiKey, identifier, [
      'com.cloudflare.api.user.read',
      '#organization:read',
      ...permissions,
    ]);
    t.secrets.add(token.value);
    return { ...tenant, auth: { authorization: `Bearer ${tenant.apiKey}` } };
  }
  const tryEach = (requests: ReadonlyArray<Record<string, unknown>>) =>
    requestsInTurn(requests, { result: false });

  it('refuses by default the credential-minting operations outside the catalog (TURN keys, Calls app secrets, Images signing keys, tunnel creation)', async () => {
    const tenant = await tenantWithAccount('Minting gaps', 'mg', ['#zone:read']);
    const base = `/accounts/${world.accountId}`;
    const requests = [
      // Cloudflare answers with `result.key` (the TURN key secret).
      { method: 'POST', path: `${base}/calls/turn_keys`, body: { name: 'x' } },
      // Cloudflare answers with `result.secret` (the Calls app secret).
      { method: 'POST', path: `${base}/calls/apps`, body: { name: 'x' } },
      // Creates an Images URL-signing key; the listing returns every key's `value`.
      { method: 'PUT', path: `${base}/images/v1/keys/agent-key` },
      { method: 'GET', path: `${base}/images/v1/keys` },
      // Creates a Cloudflare Tunnel (its run token / tunnel secret).
      { method: 'POST', path: `${base}/cfd_tunnel`, body: { name: 'x', config_src: 'cloudflare' } },
      { method: 'POST', path: `${base}/warp_connector`, body: { name: 'x' } },
    ];
    cf.clearRequests();
    const res = await t.execute(tenant.apiKey, 'mg', tryEach(requests));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().data).toEqual(requests.map(() => 'policy_denied'));
    expect(cf.requests().map((r) => `${r.method} ${r.path}`)).toEqual([]);
  });

  it('read_only refuses a GraphQL mutation sent with GET (query string)', async () => {
    const tenant = await tenantWithAccount('GQL GET', 'gg', ['#analytics:read']);
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tenant.auth,
      payload: { read_only: true },
    });
    expect(put.statusCode).toBe(200);
    cf.clearRequests();
    const res = await t.execute(
      tenant.apiKey,
      'gg',
      tryEach([
        { method: 'GET', path: '/graphql', query: { query: 'mutation M { deleteEverything }' } },
        { method: 'GET', path: '/GraphQL', query: { query: 'mutation M { deleteEverything }' } },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().data).toEqual(['policy_denied', 'policy_denied']);
    expect(cf.requests()).toEqual([]);
  });

  it('HELD read_only classifies batched, rawBody and odd GraphQL bodies as writes', async () => {
    const tenant = await tenantWithAccount('GQL odd', 'go', ['#analytics:read']);
    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tenant.auth,
      payload: { read_only: true },
    });
    cf.clearRequests();
    const res = await t.execute(
      tenant.apiKey,
      'go',
      tryEach([
        { method: 'POST', path: '/graphql', body: [{ query: 'query{viewer{a}}' }, { query: 'mutation{x}' }] },
        {
          method: 'POST',
          path: '/graphql',
          rawBody: JSON.stringify({ query: 'mutation{x}' }),
          contentType: 'application/json',
        },
        { method: 'POST', path: '/graphql', rawBody: 'mutation{x}', contentType: 'application/graphql' },
        {
          method: 'POST',
          path: '/graphql',
          body: { query: '# c\nquery Q{viewer{a}} mutation M{x}', operationName: 'M' },
        },
        {
          method: 'POST',
          path: '/graphql',
          body: { query: 'fragment F on Mutation { x } mutation { ...F }' },
        },
        { method: 'POST', path: '/graphql', body: { query: 'subscription S { x }' } },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as string[];
    expect(data).toEqual(Array(6).fill('policy_denied'));
  });

  it('read_only does not send a GraphQL mutation smuggled in the URL query beside a query body', async () => {
    const tenant = await tenantWithAccount('GQL url', 'gu', ['#analytics:read']);
    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tenant.auth,
      payload: { read_only: true },
    });
    cf.clearRequests();
    const res = await t.execute(
      tenant.apiKey,
      'gu',
      tryEach([
        {
          method: 'POST',
          path: '/graphql',
          body: { query: 'query Q{viewer{a}}' },
          query: { query: 'mutation{x}' },
        },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    // Policy classified only the body; what went upstream also carries ?query=mutation{x}.
    expect(res.json().data).toEqual(['policy_denied']);
    expect(cf.requests()).toEqual([]);
  });

  it('HELD more path spellings of a denied path are refused or denied, never sent', async () => {
    const tenant = await tenantWithAccount('Spellings', 'sp', ['#zone:read', '#dns_records:edit']);
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: tenant.auth,
      payload: {
        rules: [
          { effect: 'deny', methods: ['*'], path: '/accounts/*/logpush/**' },
          { effect: 'deny', methods: ['POST'], path: '/zones/*/dns_records' },
        ],
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    const base = `/accounts/${world.accountId}`;
    const kv = `${base}/storage/kv/namespaces/abc`;
    const table: Array<[Record<string, unknown>, string]> = [
      [{ method: 'GET', path: `${base}/logpush` }, 'policy_denied'],
      [{ method: 'GET', path: `${base}/%4C%4F%47push/jobs` }, 'policy_denied'],
      [{ method: 'GET', path: `/Accounts/${world.accountId}/Logpush/jobs` }, 'policy_denied'],
      [{ method: 'GET', path: `${base}/logpush/` }, 'invalid_request'],
      [{ method: 'GET', path: `${base}/logpush/jobs?x=1` }, 'invalid_request'],
      [{ method: 'GET', path: `${base}/./logpush/jobs` }, 'invalid_request'],
      [{ method: 'GET', path: `${base}/logpush%2fjobs` }, 'invalid_request'],
      [{ method: 'GET', path: `${base}/\uFF4Cogpush/jobs` }, 'invalid_request'],
      [{ method: 'GET', path: `${base}/logpush%00/jobs` }, 'invalid_request'],
      [{ method: 'GET', path: `${base}/logpush\\jobs` }, 'invalid_request'],
      [{ method: 'GET', path: `${kv}/values/..%2F..%2F..%2F..%2Flogpush%2Fjobs` }, 'invalid_request'],
      [{ method: 'GET', path: `${kv}/values/%2E%2E%2F%2E%2E` }, 'invalid_request'],
      [
        {
          method: 'post',
          path: `/zones/${world.zoneId}/dns_records`,
          body: { type: 'A', name: 'a', content: '192.0.2.1' },
        },
        'policy_denied',
      ],
      [
        {
          method: 'Post',
          path: `/zones/${world.zoneId}/DNS_RECORDS`,
          body: { type: 'A', name: 'a', content: '192.0.2.1' },
        },
        'policy_denied',
      ],
      [
        {
          method: 'POST',
          path: `/zones/${world.zoneId}/dns%5Frecords`,
          body: { type: 'A', name: 'a', content: '192.0.2.1' },
        },
        'policy_denied',
      ],
    ];
    cf.clearRequests();
    const res = await t.execute(tenant.apiKey, 'sp', tryEach(table.map(([r]) => r)));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().data).toEqual(table.map(([, o]) => o));
    expect(cf.requests().map((r) => `${r.method} ${r.path}`)).toEqual([]);
  });

  it('HELD sandboxed code reaches nothing of the host', async () => {
    const tenant = await tenantWithAccount('Sandbox', 'sb', ['#zone:read']);
    const code = `async () => {
      const out = {};
      const probe = (name, f) => { try { const v = f(); out[name] = typeof v === 'object' && v !== null ? 'object:' + Object.keys(v).slice(0, 5).join(',') : String(v); } catch (e) { out[name] = 'threw'; } };
      probe('process', () => typeof process);
      probe('require', () => typeof require);
      probe('fetch', () => typeof fetch);
      probe('Buffer', () => typeof Buffer);
      probe('ctorProcess', () => (function(){}).constructor('return typeof process')());
      try { out.reqCtor = String(await cloudflare.request.constructor('return typeof process')()); } catch { out.reqCtor = 'threw'; }
      probe('globalKeys', () => Object.getOwnPropertyNames(globalThis).filter((k) => /process|require|module|fetch|setTimeout|setInterval|ivm|_ivm|host/i.test(k)).join(','));
      try { out.protoHost = String(await Object.getPrototypeOf(cloudflare).constructor.constructor('return typeof process')()); } catch { out.protoHost = 'threw'; }
      try { await import('node:fs'); out.importFs = 'loaded'; } catch { out.importFs = 'threw'; }
      return out;
    }`;
    const res = await t.execute(tenant.apiKey, 'sb', code);
    expect(res.statusCode, res.body).toBe(200);
    const out = res.json().data as Record<string, string>;
    expect(out.process).toBe('undefined');
    expect(out.require).toBe('undefined');
    expect(out.fetch).toBe('undefined');
    expect(out.Buffer).toBe('undefined');
    expect(out.ctorProcess).toBe('undefined');
    expect(['undefined', 'threw']).toContain(out.reqCtor);
    expect(out.globalKeys).toBe('');
    expect(['undefined', 'threw']).toContain(out.protoHost);
    expect(out.importFs).toBe('threw');
  });

  it('HELD framework errors use the one error envelope', async () => {
    const tenant = await t.createTenant('Envelope');
    const auth = { authorization: `Bearer ${tenant.apiKey}` };
    const cases = [
      await t.app.inject({ method: 'GET', url: '/api/v1/approvals/%E0%A4%A', headers: auth }),
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: '{"tool_name":',
      }),
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: { ...auth, 'content-type': 'text/xml' },
        payload: '<a/>',
      }),
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: '{"__proto__":{"x":1},"tool_name":1}',
      }),
      await t.app.inject({
        method: 'PATCH',
        url: '/api/v1/settings',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: '[]',
      }),
      await t.app.inject({ method: 'GET', url: `/api/v1/approvals/${'a'.repeat(5000)}`, headers: auth }),
      await t.app.inject({ method: 'GET', url: '/api/v1/audit/events?limit=abc&limit=2', headers: auth }),
      await t.app.inject({ method: 'DELETE', url: '/api/v1/settings', headers: auth }),
      await t.app.inject({
        method: 'GET',
        url: '/api/v1/settings',
        headers: { authorization: 'Bearer \u0000x' },
      }),
    ];
    for (const res of cases) {
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
      const body = res.json() as { error?: { code?: unknown; message?: unknown } };
      expect(Object.keys(body), res.body).toEqual(['error']);
      expect(body.error?.code, res.body).toBeTypeOf('string');
      expect(body.error?.message, res.body).toBeTypeOf('string');
    }
  });

  it('HELD a tenant cannot raise the budget in any spelling; null returns to the default', async () => {
    const tenant = await t.createTenant('Budget');
    const auth = { authorization: `Bearer ${tenant.apiKey}` };
    const get = await t.app.inject({ method: 'GET', url: '/api/v1/settings', headers: auth });
    const def = get.json().settings.budget as string;
    const [c, w] = def.split('/').map(Number) as [number, number];
    for (const budget of [
      `${c + 1}/${w}`,
      `${c}/${w - 1}`,
      `${Math.ceil(c / 2) + 1}/${Math.floor(w / 2)}`,
      `${c}/1`,
      ` ${c * 10} / ${w * 10} `,
      `0${c + 1}/${w}`,
      `${c}/${w}.5`,
      `1e9/1`,
      `-1/1`,
    ]) {
      const res = await t.app.inject({
        method: 'PATCH',
        url: '/api/v1/settings',
        headers: auth,
        payload: { budget },
      });
      expect(res.statusCode, `${budget}: ${res.body}`).toBe(400);
      expect(res.json().error.code).toBe('invalid_request');
    }
    const lower = await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/settings',
      headers: auth,
      payload: { budget: `1/${w}` },
    });
    expect(lower.statusCode, lower.body).toBe(200);
    const back = await t.app.inject({
      method: 'PATCH',
      url: '/api/v1/settings',
      headers: auth,
      payload: { budget: null },
    });
    expect(back.json().settings.budget).toBe(def);
  });

  it('HELD foreign approval ids answer 404 (get, approve, reject) and stay pending', async () => {
    const a = await approvalsTenant<{ id: string }>(t, cf, {
      name: 'Owner A',
      permissions: ['#zone:read', '#dns_records:edit', 'com.cloudflare.api.user.read'],
    });
    await a.connect('owner');
    const out = await a.execute(
      'owner',
      `async () => cloudflare.request({ method: 'POST', path: '/zones/${'${ZONE}'}/dns_records', body: { type: 'A', name: 'x', content: '192.0.2.1' } })`.replace(
        '${ZONE}',
        a.zoneId,
      ),
    );
    const approvalId = out.approval?.id;
    expect(approvalId, JSON.stringify(out)).toBeTruthy();
    const b = await t.createTenant('Stranger B');
    const auth = { authorization: `Bearer ${b.apiKey}` };
    for (const [method, url] of [
      ['GET', `/api/v1/approvals/${approvalId}`],
      ['POST', `/api/v1/approvals/${approvalId}/approve`],
      ['POST', `/api/v1/approvals/${approvalId}/reject`],
    ] as const) {
      const res = await t.app.inject({
        method,
        url,
        headers: auth,
        ...(method === 'POST' ? { payload: {} } : {}),
      });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(404);
      expect(res.json().error.code).toBeTypeOf('string');
    }
    const mine = await a.api('GET', `/api/v1/approvals/${approvalId}`);
    expect(mine.json().approval.status).toBe('pending');
  });

  it('HELD foreign connected account, MCP token and execution ids reveal nothing', async () => {
    const a = await tenantWithAccount('Owner X', 'ox', ['#zone:read']);
    const ran = await t.execute(
      a.apiKey,
      'ox',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).status`,
    );
    const executionId = ran.json().execution_id as string;
    expect(executionId).toBeTruthy();
    const accounts = await t.app.inject({
      method: 'GET',
      url: '/api/v1/connected_accounts',
      headers: a.auth,
    });
    const caId = accounts.json().connected_accounts[0].id as string;
    const minted = await t.app.inject({
      method: 'POST',
      url: '/api/v1/mcp/tokens',
      headers: a.auth,
      payload: { identifier: 'ox' },
    });
    expect(minted.statusCode, minted.body).toBe(201);
    t.secrets.add(minted.json().token as string);
    const mcpId = minted.json().token_id as string;
    const b = await t.createTenant('Stranger Y');
    const auth = { authorization: `Bearer ${b.apiKey}` };
    const calls: Array<[string, string, unknown?]> = [
      ['GET', `/api/v1/connected_accounts/${caId}`],
      [
        'PUT',
        `/api/v1/connected_accounts/${caId}`,
        { authorization: { type: 'api_token', api_token: 'x'.repeat(40) } },
      ],
      ['DELETE', `/api/v1/connected_accounts/${caId}`],
      ['DELETE', `/api/v1/connected_accounts/${caId}/r2_access_key`],
      ...(mcpId ? ([['DELETE', `/api/v1/mcp/tokens/${mcpId}`]] as Array<[string, string]>) : []),
    ];
    for (const [method, url, payload] of calls) {
      const res = await t.app.inject({
        method: method as 'GET',
        url,
        headers: auth,
        ...(payload ? { payload: payload as object } : {}),
      });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(404);
    }
    const events = await t.app.inject({
      method: 'GET',
      url: `/api/v1/audit/events?execution_id=${executionId}`,
      headers: auth,
    });
    expect([200, 404]).toContain(events.statusCode);
    if (events.statusCode === 200) expect(events.json().events).toEqual([]);
    expect(
      (await t.app.inject({ method: 'GET', url: `/api/v1/connected_accounts/${caId}`, headers: a.auth }))
        .statusCode,
    ).toBe(200);
  });
});
