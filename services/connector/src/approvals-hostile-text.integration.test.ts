/**
 * Write approvals with text PostgreSQL cannot hold as it is (found by an outsider attack,
 * issue 21 #1/#6): a NUL or an unpaired surrogate in a held write, or in Cloudflare's answer to
 * an applied one. The plan and results are stored escaped as the audit trail stores text, and
 * the apply sends the original.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

describe('write approvals with unstorable text', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };
  let approverKey = '';
  let zoneId = '';

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    tenant = await t.createTenant('Approvals hostile text');
    const issued = await t.app.inject({
      method: 'POST',
      url: `/admin/v1/tenants/${tenant.tenantId}/api_keys`,
      headers: { authorization: `Bearer ${t.adminToken}` },
    });
    approverKey = (issued.json() as { api_key: string }).api_key;
    t.secrets.add(approverKey);
    const user = cf.state.createUser({ email: 'hostile-text@example.com' });
    const account = cf.state.createAccount({ name: 'Hostile Text Co', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'nul.example' }).id;
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['#zone:read', '#dns_records:edit'],
    });
    await t.connect(tenant.apiKey, 'ann', token.value);
    const policy = await api('PUT', '/api/v1/policy', {
      rules: [{ effect: 'approve', methods: ['POST', 'PATCH'], path: '/zones/**' }],
    });
    expect(policy.statusCode, policy.body).toBe(200);
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  function api(method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown, key = tenant.apiKey) {
    return t.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${key}` },
      ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
    });
  }
  for (const [label, bad, original] of [
    ['a NUL', '\\u0000', 'a\u0000b'],
    ['an unpaired surrogate', '\\ud800', 'a\ud800b'],
  ] as const) {
    it(`plans a held write whose body carries ${label}, and applies exactly the original`, async () => {
      const name = `held-${label.length}.nul.example`;
      const res = await t.execute(
        tenant.apiKey,
        'ann',
        `async () => cloudflare.request({ method: 'POST', path: '/zones/${zoneId}/dns_records', body: { type: 'TXT', name: '${name}', content: 'a${bad}b' } })`,
      );
      expect(res.statusCode, res.body).toBe(200);
      const approval = res.json().approval as { id: string; status: string };
      expect(approval.status).toBe('pending');
      const approved = await api('POST', `/api/v1/approvals/${approval.id}/approve`, {}, approverKey);
      expect(approved.statusCode, approved.body).toBe(200);
      expect(approved.json().approval.status).toBe('applied');
      const created = cf.state.listDnsRecords(zoneId).find((r) => r.name === name);
      expect(created?.content).toBe(original);
    });
  }

  it('settles an approved write as applied when Cloudflare answers with a NUL', async () => {
    const record = cf.state.createDnsRecord({
      zoneId,
      type: 'TXT',
      name: 'echo.nul.example',
      content: 'old\u0000value',
    });
    const planned = await t.execute(
      tenant.apiKey,
      'ann',
      `async () => cloudflare.request({ method: 'PATCH', path: '/zones/${zoneId}/dns_records/${record.id}', body: { ttl: 120 } })`,
    );
    expect(planned.statusCode, planned.body).toBe(200);
    const id = (planned.json().approval as { id: string }).id;
    const approved = await api('POST', `/api/v1/approvals/${id}/approve`, {}, approverKey);
    expect(approved.statusCode, approved.body).toBe(200);
    const after = await api('GET', `/api/v1/approvals/${id}`);
    expect(after.json().approval.status).toBe('applied');
  });
});
