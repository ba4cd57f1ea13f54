import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * Two replicas sharing PostgreSQL and Redis: an engineer has a live MCP session on
 * replica A and an execution running there; the tenant offboards them through replica B.
 */
describe('offboarding across replicas', () => {
  let cf: FakeCloudflare;
  let a: TestApp;
  let b: TestApp;
  let urlA: string;
  let urlB: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const [portA, portB] = [await freePort(), await freePort()];
    urlA = `http://127.0.0.1:${portA}`;
    urlB = `http://127.0.0.1:${portB}`;
    // Both replicas serve the same public MCP URL, as behind one load balancer.
    a = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: urlA });
    // Replicas must share the key-encryption key (here the local key file; in production AWS KMS).
    b = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: urlA }, { replicaOf: a });
    await a.app.listen({ host: '127.0.0.1', port: portA });
    await b.app.listen({ host: '127.0.0.1', port: portB });
  });
  afterAll(async () => {
    await b.close();
    await a.close();
    await cf.close();
  });

  it('revokes everything, closes the live MCP session on the other replica within a second, and stops a running execution', async () => {
    const { apiKey } = await a.createTenant('Offboarding tenant');
    const auth = { authorization: `Bearer ${apiKey}` };
    const carol = cf.state.createUser({ email: 'carol@example.com' });
    const acct = cf.state.createAccount({ name: 'Carol Co', members: [carol.id] });
    const zoneId = cf.state.createZone({ accountId: acct.id, name: 'carol.example' }).id;
    const token = cf.state.createUserToken({
      userId: carol.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read', 'com.cloudflare.api.token.delete'],
    });
    a.secrets.add(token.value);
    b.secrets.add(token.value);
    const created = await a.app.inject({
      method: 'POST',
      url: '/api/v1/connected_accounts',
      headers: auth,
      payload: { identifier: 'carol', authorization: { type: 'api_token', api_token: token.value } },
    });
    expect(created.statusCode).toBe(201);
    const minted = await a.app.inject({
      method: 'POST',
      url: '/api/v1/mcp/tokens',
      headers: auth,
      payload: { identifier: 'carol' },
    });
    const mcpToken = minted.json().token as string;
    a.secrets.add(mcpToken);
    b.secrets.add(mcpToken);

    // A live SSE session on replica A.
    const headers = { Authorization: `Bearer ${mcpToken}` };
    const client = new Client({ name: 'carol-agent', version: '1.0.0' });
    await client.connect(
      new SSEClientTransport(new URL(`${urlA}/sse`), {
        requestInit: { headers },
        eventSourceInit: {
          fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }),
        },
      }),
    );
    expect((await client.listTools()).tools).toHaveLength(2);
    expect(a.container.mcpConnections.size).toBe(1);

    // An execution on replica A that keeps calling Cloudflare (each call slowed down by the fake).
    cf.faults.setLatencyMs(150);
    const running = a.app.inject({
      method: 'POST',
      url: '/api/v1/execute_tool',
      headers: auth,
      payload: {
        tool_name: 'cloudflare_execute',
        identifier: 'carol',
        params: {
          code: `async () => { let n = 0; try { for (;;) { await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' }); n++; } } catch (e) { return { completed: n, code: e.code, message: e.message }; } }`,
        },
      },
    });
    await new Promise((resolve) => setTimeout(resolve, 500));

    const started = Date.now();
    const offboard = await b.app.inject({
      method: 'POST',
      url: '/api/v1/identities/carol/offboard',
      headers: auth,
      payload: { revoke_upstream: true },
    });
    cf.faults.setLatencyMs(0);
    expect(offboard.statusCode).toBe(200);
    expect(offboard.json()).toEqual({
      revoked_connected_accounts: [
        { id: created.json().connected_account.id, upstream: { revoked: true, detail: expect.any(String) } },
      ],
      revoked_mcp_tokens: 1,
    });

    // The session on the other replica is closed within one second of the offboarding call.
    while (a.container.mcpConnections.size > 0 && Date.now() < started + 1000) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(a.container.mcpConnections.size, 'live MCP connections on replica A').toBe(0);
    expect(Date.now() - started).toBeLessThanOrEqual(1000);
    await expect(client.listTools()).rejects.toThrow();
    await client.close();

    // The running execution failed its next upstream request.
    const result = (await running).json();
    expect(result.data).toMatchObject({ code: 'forbidden', message: expect.stringContaining('revoked') });
    expect(result.data.completed).toBeGreaterThan(0);

    // The credential is gone everywhere, the token deleted at Cloudflare, the MCP token dead on both replicas.
    expect(cf.state.getToken(token.id)).toBeUndefined();
    for (const url of [urlA, urlB]) {
      const res = await fetch(`${url}/mcp`, {
        method: 'POST',
        headers: {
          ...headers,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      expect(res.status).toBe(401);
    }
    const account = await b.app.inject({
      method: 'GET',
      url: `/api/v1/connected_accounts/${created.json().connected_account.id}`,
      headers: auth,
    });
    expect(account.json().connected_account.status).toBe('REVOKED');
    const sealed = await a.db.db.kysely.selectFrom('sealed_credentials').selectAll().execute();
    expect(sealed.filter((s) => s.connected_account_id === created.json().connected_account.id)).toEqual([]);
    const audit = await a.app.inject({
      method: 'GET',
      url: '/api/v1/audit/events?identifier=carol&kind=offboarding',
      headers: auth,
    });
    expect(audit.json().events).toHaveLength(1);
  });
});
