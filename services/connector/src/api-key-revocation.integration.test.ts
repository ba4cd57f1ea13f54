import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * Tenant API keys are remembered for a few seconds after they authenticate, so a tool call
 * skips that database read. Revoking a key on one replica must still stop it on every
 * replica at once.
 */
describe('API key revocation across replicas', () => {
  let a: TestApp;
  let b: TestApp;
  let cf: FakeCloudflare;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const env = { API_KEY_CACHE_TTL_MS: '60000', CLOUDFLARE_API_BASE: cf.url };
    a = await startTestApp(env);
    b = await startTestApp(env, { replicaOf: a });
  });
  afterAll(async () => {
    await b.close();
    await a.close();
    await cf.close();
  });

  it('a key revoked through replica B is refused by replica A, which had it cached', async () => {
    const { tenantId, apiKey } = await a.createTenant('Revocation tenant');
    const auth = { authorization: `Bearer ${apiKey}` };
    const listOn = (app: TestApp) =>
      app.app.inject({ method: 'GET', url: '/api/v1/connected_accounts', headers: auth });
    expect((await listOn(a)).statusCode).toBe(200);
    expect((await listOn(b)).statusCode).toBe(200);

    const keyId = (await a.container.tenants.authenticate(apiKey))?.apiKeyId;
    expect(keyId).toMatch(/^key_/);
    const revoked = await b.app.inject({
      method: 'DELETE',
      url: `/admin/v1/tenants/${tenantId}/api_keys/${keyId}`,
      headers: { authorization: `Bearer ${b.adminToken}` },
    });
    expect(revoked.statusCode).toBe(204);
    expect((await listOn(b)).statusCode).toBe(401);

    // Replica A hears of it over Redis pub/sub within moments, not after its cache's minute.
    const started = Date.now();
    let status = 200;
    while (status !== 401 && Date.now() - started < 2_000) {
      status = (await listOn(a)).statusCode;
      if (status !== 401) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(status).toBe(401);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('an execution a key started on replica A stops before its next upstream request when B revokes the key', async () => {
    const { tenantId, apiKey } = await a.createTenant('Running call tenant');
    const user = cf.state.createUser({ email: 'running@example.com' });
    const account = cf.state.createAccount({ name: 'Running Co', members: [user.id] });
    const zone = cf.state.createZone({ accountId: account.id, name: 'running.example' }).id;
    await a.connect(
      apiKey,
      'runner',
      cf.state.createUserToken({ userId: user.id, permissions: ['#zone:read'] }).value,
    );
    const keyId = (await a.container.tenants.authenticate(apiKey))?.apiKeyId;
    cf.clearRequests();
    cf.faults.setLatencyMs(100);
    try {
      const running = a.app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: { authorization: `Bearer ${apiKey}` },
        payload: {
          tool_name: 'cloudflare_execute',
          identifier: 'runner',
          params: {
            code: `async () => { for (let i = 0; i < 40; i++) await cloudflare.request({ method: 'GET', path: '/zones/${zone}' }); return 'all sent'; }`,
          },
        },
      });
      await sleep(700);
      const revoked = await b.app.inject({
        method: 'DELETE',
        url: `/admin/v1/tenants/${tenantId}/api_keys/${keyId}`,
        headers: { authorization: `Bearer ${b.adminToken}` },
      });
      expect(revoked.statusCode).toBe(204);
      const atRevocation = cf.requestCount();
      expect(atRevocation).toBeGreaterThan(0);
      const result = (await running).json() as { data?: unknown; error?: { code: string } };
      // At most the one request in flight when the revocation landed.
      expect(cf.requestCount() - atRevocation).toBeLessThanOrEqual(1);
      expect(result.data).not.toBe('all sent');
      expect(result.error?.code).toBe('forbidden');
    } finally {
      cf.faults.setLatencyMs(0);
    }
  });
});
