import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

/** Console sessions through the app itself (no browser): the edges the e2e test does not walk. */
describe('console sessions', () => {
  let t: TestApp;
  let acme: { tenantId: string; apiKey: string };
  let other: { tenantId: string; apiKey: string };

  async function signIn(body: Record<string, string>) {
    const res = await t.app.inject({ method: 'POST', url: '/console/api/session', payload: body });
    const cookie = res.cookies.find((c) => c.name === 'warden_console');
    const session =
      res.statusCode === 201 ? (res.json() as { session: { csrf_token: string } }).session : null;
    return { res, cookie: cookie ? `warden_console=${cookie.value}` : '', csrf: session?.csrf_token ?? '' };
  }

  beforeAll(async () => {
    t = await startTestApp();
    acme = await t.createTenant('Acme');
    other = await t.createTenant('Other');
  });
  afterAll(async () => {
    await t?.close();
  });

  it('keeps each tenant to its own trail: another tenant\u2019s event id is a 404', async () => {
    const { cookie } = await signIn({ api_key: acme.apiKey });
    const foreign = await t.container.db.kysely
      .selectFrom('audit_events')
      .select('id')
      .where('tenant_id', '=', other.tenantId)
      .executeTakeFirstOrThrow();
    const own = await t.container.db.kysely
      .selectFrom('audit_events')
      .select('id')
      .where('tenant_id', '=', acme.tenantId)
      .executeTakeFirstOrThrow();
    const get = (id: string) =>
      t.app.inject({ method: 'GET', url: `/console/api/audit/events/${id}`, headers: { cookie } });
    expect((await get(own.id)).statusCode).toBe(200);
    expect((await get(foreign.id)).statusCode).toBe(404);
    const rows = await t.app.inject({ method: 'GET', url: '/console/api/audit/rows', headers: { cookie } });
    const body = rows.json() as { total: number; rows: Array<{ id: string }> };
    expect(body.rows.map((r) => r.id)).toContain(own.id);
    expect(body.rows.map((r) => r.id)).not.toContain(foreign.id);
  });

  it('refuses text PostgreSQL cannot store in its filters and sign-in, naming the field', async () => {
    const { cookie } = await signIn({ api_key: acme.apiKey });
    for (const [query, field] of [
      ['identifier=a%00b', 'identifier'],
      ['agent_run_id=%ED%A0%80', 'agent_run_id'],
      ['kind=%FF', 'kind'],
      ['execution_id=x%00', 'execution_id'],
    ] as const) {
      const res = await t.app.inject({
        method: 'GET',
        url: `/console/api/audit/rows?${query}`,
        headers: { cookie },
      });
      expect(res.statusCode, query).toBe(400);
      expect(res.json(), query).toMatchObject({ error: { code: 'invalid_request', field } });
      expect((res.json() as { error: { message: string } }).error.message, query).toMatch(
        /NUL character|valid Unicode/,
      );
    }
    const nul = await t.app.inject({
      method: 'POST',
      url: '/console/api/session',
      payload: { api_key: 'wk_\u0000' },
    });
    expect(nul.statusCode).toBe(400);
    expect(nul.json()).toMatchObject({ error: { code: 'invalid_request', field: 'api_key' } });
  });

  it('refuses changes without the anti-forgery token, and a token of another session', async () => {
    const first = await signIn({ api_key: acme.apiKey });
    const second = await signIn({ api_key: acme.apiKey });
    const put = (headers: Record<string, string>) =>
      t.app.inject({
        method: 'PUT',
        url: '/api/v1/policy',
        headers: { cookie: first.cookie, ...headers },
        payload: { read_only: false },
      });
    expect((await put({})).statusCode).toBe(403);
    expect((await put({ 'x-csrf-token': second.csrf })).statusCode).toBe(403);
    const ok = await put({ 'x-csrf-token': first.csrf });
    expect(ok.statusCode).toBe(200);
    // The change is audited as the API key the session was signed in with, from the console.
    const record = await t.container.db.kysely
      .selectFrom('audit_events')
      .select(['caller_type', 'client_name'])
      .where('tenant_id', '=', acme.tenantId)
      .where('action', '=', 'policy.changed')
      .executeTakeFirstOrThrow();
    expect(record).toEqual({ caller_type: 'api_key', client_name: 'warden-console' });
  });

  it('ends on sign-out, and an operator session never stands in for a tenant key', async () => {
    const tenant = await signIn({ api_key: acme.apiKey });
    const out = await t.app.inject({
      method: 'DELETE',
      url: '/console/api/session',
      headers: { cookie: tenant.cookie, 'x-csrf-token': tenant.csrf },
    });
    expect(out.statusCode).toBe(204);
    const after = await t.app.inject({
      method: 'GET',
      url: '/api/v1/connected_accounts',
      headers: { cookie: tenant.cookie },
    });
    expect(after.statusCode).toBe(401);

    expect((await signIn({ admin_token: 'x'.repeat(40) })).res.statusCode).toBe(401);
    const operator = await signIn({ admin_token: t.adminToken });
    const asTenant = await t.app.inject({
      method: 'GET',
      url: '/api/v1/connected_accounts',
      headers: { cookie: operator.cookie },
    });
    expect(asTenant.statusCode).toBe(401);
    const asAdmin = await t.app.inject({
      method: 'GET',
      url: '/admin/v1/tenants',
      headers: { cookie: operator.cookie },
    });
    expect(asAdmin.statusCode).toBe(200);
    // A tenant session is not an operator.
    const tenantAgain = await signIn({ api_key: acme.apiKey });
    const adminAsTenant = await t.app.inject({
      method: 'GET',
      url: '/admin/v1/tenants',
      headers: { cookie: tenantAgain.cookie },
    });
    expect(adminAsTenant.statusCode).toBe(401);
  });
});
