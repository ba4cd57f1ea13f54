import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

  beforeAll(async () => {
    a = await startTestApp({ API_KEY_CACHE_TTL_MS: '60000' });
    b = await startTestApp({ API_KEY_CACHE_TTL_MS: '60000' }, { sharedDatabase: a.db });
  });
  afterAll(async () => {
    await b.close();
    await a.close();
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
});
