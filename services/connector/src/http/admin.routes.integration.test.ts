import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

describe('admin API', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  const admin = () => ({ authorization: `Bearer ${t.adminToken}` });

  it('creates a tenant and shows its API key once', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/admin/v1/tenants',
      headers: admin(),
      payload: { name: 'Acme' },
    });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    t.secrets.add(body.api_key);
    expect(body).toMatchObject({
      tenant: { id: expect.stringMatching(/^ten_/), name: 'Acme', created_at: expect.any(String) },
      api_key: expect.stringMatching(/^wdn_sk_/),
    });
    const get = await t.app.inject({
      method: 'GET',
      url: `/admin/v1/tenants/${body.tenant.id}`,
      headers: admin(),
    });
    expect(get.json()).toEqual({ tenant: body.tenant });
    expect(get.body).not.toContain(body.api_key);
    const list = await t.app.inject({ method: 'GET', url: '/admin/v1/tenants', headers: admin() });
    expect(list.json().tenants).toContainEqual(body.tenant);
  });

  it('issues and revokes API keys; a revoked key stops working at once', async () => {
    const { tenantId, apiKey } = await t.createTenant();
    const issued = await t.app.inject({
      method: 'POST',
      url: `/admin/v1/tenants/${tenantId}/api_keys`,
      headers: admin(),
    });
    expect(issued.statusCode).toBe(201);
    const second = issued.json() as { api_key: string; api_key_id: string };
    t.secrets.add(second.api_key);
    for (const key of [apiKey, second.api_key]) {
      const res = await t.app.inject({
        method: 'GET',
        url: '/api/v1/connected_accounts',
        headers: { authorization: `Bearer ${key}` },
      });
      expect(res.statusCode).toBe(200);
    }
    const revoke = await t.app.inject({
      method: 'DELETE',
      url: `/admin/v1/tenants/${tenantId}/api_keys/${second.api_key_id}`,
      headers: admin(),
    });
    expect(revoke.statusCode).toBe(204);
    const after = await t.app.inject({
      method: 'GET',
      url: '/api/v1/connected_accounts',
      headers: { authorization: `Bearer ${second.api_key}` },
    });
    expect(after.statusCode).toBe(401);
    expect(after.json()).toEqual({
      error: { code: 'unauthenticated', message: 'the API key is unknown or revoked' },
    });
    const again = await t.app.inject({
      method: 'DELETE',
      url: `/admin/v1/tenants/${tenantId}/api_keys/key_unknown0000000000000`,
      headers: admin(),
    });
    expect(again.statusCode).toBe(404);
  });

  it('refuses a missing or wrong admin token', async () => {
    const none = await t.app.inject({ method: 'GET', url: '/admin/v1/tenants' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer');
    const wrong = await t.app.inject({
      method: 'GET',
      url: '/admin/v1/tenants',
      headers: { authorization: 'Bearer nope' },
    });
    expect(wrong.statusCode).toBe(401);
    const tenantKey = (await t.createTenant()).apiKey;
    const asTenant = await t.app.inject({
      method: 'GET',
      url: '/admin/v1/tenants',
      headers: { authorization: `Bearer ${tenantKey}` },
    });
    expect(asTenant.statusCode).toBe(401);
  });

  it('answers bad input with 400 naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'name'],
      [{ name: 42 }, 'name'],
      [{ name: '   ' }, 'name'],
      [{ name: 'ok', extra: true }, 'extra'],
    ];
    for (const [payload, field] of cases) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/admin/v1/tenants',
        headers: admin(),
        payload: payload as object,
      });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.json().error).toMatchObject({ code: 'invalid_request', field });
    }
    const malformed = await t.app.inject({
      method: 'POST',
      url: '/admin/v1/tenants',
      headers: { ...admin(), 'content-type': 'application/json' },
      payload: '{"name": ',
    });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().error).toMatchObject({ code: 'invalid_request', field: 'body' });
  });

  it('reloads the Cloudflare spec without a restart', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/admin/v1/spec/reload', headers: admin() });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ version: expect.any(String), changed: false });
  });

  it('serves Prometheus metrics with route templates, not concrete URLs', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toContain('warden_http_request_duration_seconds_bucket');
    expect(res.body).toContain('route="/admin/v1/tenants/:id"');
    expect(res.body).not.toMatch(/route="\/admin\/v1\/tenants\/ten_/);
    expect(res.body).toContain('warden_process_cpu_seconds_total');
  });

  it('is disabled (404) when WARDEN_ADMIN_TOKEN is unset', async () => {
    const off = await startTestApp({ WARDEN_ADMIN_TOKEN: '' });
    try {
      const res = await off.app.inject({
        method: 'POST',
        url: '/admin/v1/tenants',
        headers: { authorization: 'Bearer x' },
        payload: { name: 'A' },
      });
      expect(res.statusCode).toBe(404);
    } finally {
      off.logs.push('(admin disabled app)');
      await off.close();
    }
  });
});
