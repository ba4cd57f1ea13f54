import { expect } from 'vitest';
import type { FakeCloudflare } from '@warden/testing';
import { fakeZoneUser } from './fake-user.ts';
import type { TestApp } from './test-app.ts';

/** The policy of the approvals tests: every write to a zone waits for a person's approval. */
export const APPROVE_WRITES = {
  rules: [{ effect: 'approve', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], path: '/zones/**' }],
};

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * A tenant whose writes to zones need approval, with a second API key (the person who decides:
 * the key that planned may not), a Cloudflare user with an account and a zone (`fakeZoneUser`), and the calls
 * the approvals tests make as that tenant.
 */
export async function approvalsTenant<Approval>(
  t: TestApp,
  cf: FakeCloudflare,
  options: { readonly name: string; readonly permissions: readonly string[] },
) {
  const tenant = await t.createTenant(options.name);
  const issued = await t.app.inject({
    method: 'POST',
    url: `/admin/v1/tenants/${tenant.tenantId}/api_keys`,
    headers: { authorization: `Bearer ${t.adminToken}` },
  });
  expect(issued.statusCode, issued.body).toBe(201);
  const key = issued.json() as { api_key: string; api_key_id: string };
  t.secrets.add(key.api_key);
  const approver = { apiKey: key.api_key, id: key.api_key_id };
  const user = fakeZoneUser(cf, options.name);

  function api(method: Method, url: string, payload?: unknown, apiKey = tenant.apiKey) {
    return t.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${apiKey}` },
      ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
    });
  }
  async function connect(identifier: string) {
    return (await user.connect(t, tenant.apiKey, identifier, options.permissions)).id;
  }
  async function execute(identifier: string, code: string) {
    const res = await t.execute(tenant.apiKey, identifier, code);
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as { data: unknown; error?: { code: string; message: string }; approval?: Approval };
  }

  expect((await api('PUT', '/api/v1/policy', APPROVE_WRITES)).statusCode).toBe(200);
  return { tenant, approver, accountId: user.accountId, zoneId: user.zoneId, api, connect, execute };
}
