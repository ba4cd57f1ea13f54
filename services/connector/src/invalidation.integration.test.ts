import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

const PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read', '#zone:read'];

/**
 * A tool call's context (account, credential, policy, settings) is served from memory on the hot
 * path. Two replicas share PostgreSQL and Redis: every change made through replica B must reach
 * calls on replica A before their next upstream request, whether the call starts after the
 * change (its cached context is dropped) or was already running (it reads its context again).
 */
describe('changes reach every replica before the next upstream request', () => {
  let cf: FakeCloudflare;
  let a: TestApp;
  let b: TestApp;
  let urlA: string;
  let tenant: { tenantId: string; apiKey: string };
  let userId: string;
  let zoneId: string;
  /** One Cloudflare user per test, so one test's rate budget never reaches another's. */
  const users: Record<'dana' | 'erin' | 'frank', string> = { dana: '', erin: '', frank: '' };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const [portA, portB] = [await freePort(), await freePort()];
    urlA = `http://127.0.0.1:${portA}`;
    // A long cache life, so only the invalidations can explain a fresh read.
    const env = { CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: urlA, CONTEXT_CACHE_TTL_MS: '300000' };
    a = await startTestApp(env);
    b = await startTestApp(env, { replicaOf: a });
    await a.app.listen({ host: '127.0.0.1', port: portA });
    await b.app.listen({ host: '127.0.0.1', port: portB });
    tenant = await a.createTenant('Invalidation');
    for (const name of ['dana', 'erin', 'frank'] as const) {
      users[name] = cf.state.createUser({ email: `${name}@example.com` }).id;
    }
    userId = users.dana;
    const account = cf.state.createAccount({ name: 'Dana Co', members: Object.values(users) });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'dana.example' }).id;
  });
  afterAll(async () => {
    await b.close();
    await a.close();
    await cf.close();
  });

  const auth = () => ({ authorization: `Bearer ${tenant.apiKey}` });
  function token(forUser = userId) {
    const t = cf.state.createUserToken({ userId: forUser, permissions: PERMISSIONS });
    a.secrets.add(t.value);
    b.secrets.add(t.value);
    return t;
  }
  const on = (
    app: TestApp,
    method: 'GET' | 'PUT' | 'PATCH' | 'DELETE' | 'POST',
    url: string,
    payload?: Record<string, unknown>,
  ) => app.app.inject({ method, url, headers: auth(), ...(payload !== undefined ? { payload } : {}) });
  // Built when first used: the zone exists only once beforeAll has run.
  const getZone = () =>
    `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`;
  /** Calls Cloudflare until refused; reports how many succeeded and why it stopped. */
  const loop = () =>
    `async () => { let n = 0; try { for (;;) { await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' }); n++; if (n >= 40) return { completed: n }; } } catch (e) { return { completed: n, code: e.code, message: e.message }; } }`;
  const zoneRequests = () => cf.requests().filter((r) => r.path === `/zones/${zoneId}`);

  it('a call starting right after a change made on the other replica sees it', async () => {
    const first = token();
    const accountId = await a.connect(tenant.apiKey, 'dana', first.value);
    expect((await a.execute(tenant.apiKey, 'dana', getZone())).json().data).toBe(true);

    // Tenant policy.
    expect(
      (
        await on(b, 'PUT', '/api/v1/policy', {
          rules: [{ effect: 'deny', methods: ['GET'], path: '/zones/**' }],
        })
      ).statusCode,
    ).toBe(200);
    expect((await a.execute(tenant.apiKey, 'dana', getZone())).json().error?.code).toBe('policy_denied');
    expect((await on(b, 'PUT', '/api/v1/policy', {})).statusCode).toBe(200);
    expect((await a.execute(tenant.apiKey, 'dana', getZone())).json().data).toBe(true);

    // Identity policy.
    expect(
      (
        await on(b, 'PUT', '/api/v1/identities/dana/policy', {
          rules: [{ effect: 'deny', methods: ['*'], path: '/zones/*' }],
        })
      ).statusCode,
    ).toBe(200);
    expect((await a.execute(tenant.apiKey, 'dana', getZone())).json().error?.code).toBe('policy_denied');
    expect((await on(b, 'DELETE', '/api/v1/identities/dana/policy')).statusCode).toBe(204);
    expect((await a.execute(tenant.apiKey, 'dana', getZone())).json().data).toBe(true);

    // Rotation: the next call carries the new credential.
    const second = token();
    expect(
      (
        await on(b, 'PUT', `/api/v1/connected_accounts/${accountId}`, {
          authorization: { type: 'api_token', api_token: second.value },
        })
      ).statusCode,
    ).toBe(200);
    cf.clearRequests();
    const rotatedCall = await a.execute(tenant.apiKey, 'dana', getZone());
    expect(rotatedCall.json().data, rotatedCall.body).toBe(true);
    expect(zoneRequests().map((r) => r.tokenId)).toEqual([second.id]);

    // Settings: a budget lowered below what this user has used refuses the next request.
    expect((await on(b, 'PATCH', '/api/v1/settings', { budget: '1/3600' })).statusCode).toBe(200);
    const twice = await a.execute(
      tenant.apiKey,
      'dana',
      `async () => { const out = []; for (let i = 0; i < 2; i++) { try { await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' }); out.push('ok'); } catch (e) { out.push(e.code); } } return out; }`,
    );
    expect(twice.json().data).toContain('rate_limited');
    expect((await on(b, 'PATCH', '/api/v1/settings', { budget: null })).statusCode).toBe(200);

    // Revocation.
    expect((await on(b, 'DELETE', `/api/v1/connected_accounts/${accountId}`)).statusCode).toBe(204);
    cf.clearRequests();
    expect((await a.execute(tenant.apiKey, 'dana', getZone())).statusCode).toBe(404);
    expect(zoneRequests()).toHaveLength(0);
  });

  it('a call already running reads its context again before its next upstream request', async () => {
    const first = token(users.erin);
    const accountId = await a.connect(tenant.apiKey, 'erin', first.value);
    cf.faults.setLatencyMs(60);
    try {
      // A policy change stops the loop at its next request.
      cf.clearRequests();
      let running = a.execute(tenant.apiKey, 'erin', loop());
      await new Promise((resolve) => setTimeout(resolve, 300));
      await on(b, 'PUT', '/api/v1/policy', {
        rules: [{ effect: 'deny', methods: ['GET'], path: '/zones/*' }],
      });
      const sentBefore = zoneRequests().length;
      let result = (await running).json().data;
      expect(result, JSON.stringify(result)).toMatchObject({ code: 'policy_denied' });
      // At most the request already in flight when the change landed.
      expect(zoneRequests().length - sentBefore).toBeLessThanOrEqual(1);
      await on(b, 'PUT', '/api/v1/policy', {});

      // A rotation: every request after it carries the new credential.
      cf.clearRequests();
      running = a.execute(tenant.apiKey, 'erin', loop());
      await new Promise((resolve) => setTimeout(resolve, 300));
      const second = token(users.erin);
      await on(b, 'PUT', `/api/v1/connected_accounts/${accountId}`, {
        authorization: { type: 'api_token', api_token: second.value },
      });
      const tokensBefore = zoneRequests().map((r) => r.tokenId);
      result = (await running).json().data;
      expect(result).toEqual({ completed: 40 });
      const after = zoneRequests()
        .map((r) => r.tokenId)
        .slice(tokensBefore.length + 1);
      expect(after.length).toBeGreaterThan(0);
      expect(after.every((id) => id === second.id)).toBe(true);
    } finally {
      cf.faults.setLatencyMs(0);
    }
  });

  it('revoking an MCP token ends its streamable-HTTP and SSE work on the other replica before its next upstream request', async () => {
    await a.connect(tenant.apiKey, 'frank', token(users.frank).value);
    cf.faults.setLatencyMs(60);
    try {
      for (const transport of ['streamable', 'sse'] as const) {
        const minted = await on(b, 'POST', '/api/v1/mcp/tokens', { identifier: 'frank', expiry: '1h' });
        const mcpToken = minted.json().token as string;
        a.secrets.add(mcpToken);
        b.secrets.add(mcpToken);
        const headers = { Authorization: `Bearer ${mcpToken}` };
        const client = new Client({ name: `frank-${transport}`, version: '1.0.0' });
        await client.connect(
          transport === 'streamable'
            ? new StreamableHTTPClientTransport(new URL(`${urlA}/mcp`), { requestInit: { headers } })
            : new SSEClientTransport(new URL(`${urlA}/sse`), {
                requestInit: { headers },
                eventSourceInit: {
                  fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }),
                },
              }),
        );
        cf.clearRequests();
        const call = client
          .callTool({ name: 'cloudflare_execute', arguments: { code: loop() } }, undefined, { timeout: 3000 })
          .then((r) => ({ ok: true as const, r }))
          .catch((error: unknown) => ({ ok: false as const, error }));
        await new Promise((resolve) => setTimeout(resolve, 400));
        expect(zoneRequests().length, transport).toBeGreaterThan(0);
        expect((await on(b, 'DELETE', `/api/v1/mcp/tokens/${minted.json().token_id}`)).statusCode).toBe(204);
        const sentBefore = zoneRequests().length;
        const outcome = await call;
        // The connection is closed (the call fails) or the call reports the revocation.
        if (outcome.ok) expect(JSON.stringify(outcome.r.content)).toContain('revoked');
        // Let a call that kept running on the server get to its next request, if it could.
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(zoneRequests().length - sentBefore, transport).toBeLessThanOrEqual(1);
        expect(a.container.mcpConnections.size, transport).toBe(0);
        await client.close().catch(() => undefined);
      }
    } finally {
      cf.faults.setLatencyMs(0);
    }
  });
});
