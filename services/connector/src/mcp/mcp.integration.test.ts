import { ADMIN_CALLER } from '@warden/audit';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from '../test-support/free-port.ts';
import { REPO_ROOT, SPEC_PATH } from '../test-support/paths.ts';
import { startListeningTestApp, startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

const run = promisify(execFile);

describe('per-user MCP endpoint', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let tenant: { tenantId: string; apiKey: string };
  let zoneId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    ({ t, base } = await startListeningTestApp({ CLOUDFLARE_API_BASE: cf.url }));
    tenant = await t.createTenant('MCP tenant');
    const bob = cf.state.createUser({ email: 'bob@example.com' });
    const acct = cf.state.createAccount({ name: 'Bob Co', members: [bob.id] });
    zoneId = cf.state.createZone({ accountId: acct.id, name: 'bob.example' }).id;
    const token = cf.state.createUserToken({
      userId: bob.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:read'],
    });
    t.secrets.add(token.value);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/connected_accounts',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      payload: { identifier: 'bob@corp', authorization: { type: 'api_token', api_token: token.value } },
    });
    expect(res.statusCode).toBe(201);
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  async function mint(expiry = '3600s', identifier = 'bob@corp') {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/mcp/tokens',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      payload: { identifier, expiry },
    });
    expect(res.statusCode).toBe(201);
    const body = res.json() as {
      token: string;
      token_id: string;
      url: string;
      cursor_config: unknown;
      expires_at: string;
    };
    t.secrets.add(body.token);
    return body;
  }

  async function connect(kind: 'http' | 'sse', token: string): Promise<Client> {
    const headers = { Authorization: `Bearer ${token}` };
    const client = new Client({ name: 'warden-test-client', version: '9.9.9' });
    const transport =
      kind === 'http'
        ? new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers } })
        : new SSEClientTransport(new URL(`${base}/sse`), {
            requestInit: { headers },
            eventSourceInit: {
              fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }),
            },
          });
    await client.connect(transport);
    return client;
  }

  it('mints a token with a ready Cursor config', async () => {
    const minted = await mint();
    expect(minted.url).toBe(`${base}/mcp`);
    expect(minted.cursor_config).toEqual({
      mcpServers: {
        cloudflare: { url: `${base}/mcp`, headers: { Authorization: `Bearer ${minted.token}` } },
      },
    });
    const bad = await t.app.inject({
      method: 'POST',
      url: '/api/v1/mcp/tokens',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      payload: { identifier: 'bob@corp', expiry: '31d' },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.field).toBe('expiry');
  });

  for (const kind of ['http', 'sse'] as const) {
    it(`lists the scoped tools and runs search and execute over ${kind === 'http' ? 'streamable HTTP' : 'HTTP+SSE'}`, async () => {
      const { token } = await mint();
      const client = await connect(kind, token);
      try {
        const { tools } = await client.listTools();
        const scoped = await t.app.inject({
          method: 'GET',
          url: '/api/v1/tools/scoped?identifier=bob@corp',
          headers: { authorization: `Bearer ${tenant.apiKey}` },
        });
        expect(tools.map((x) => x.name)).toEqual(['cloudflare_search', 'cloudflare_execute']);
        expect(tools.map((x) => x.description)).toEqual(
          scoped
            .json()
            .tools.map(
              (x: { tool: { definition: { description: string } } }) => x.tool.definition.description,
            ),
        );
        const search = await client.callTool({
          name: 'cloudflare_search',
          arguments: { code: "async () => spec.paths['/zones'].get.summary" },
        });
        expect(search.isError).toBeFalsy();
        expect(JSON.parse((search.content as Array<{ text: string }>)[0]!.text)).toEqual(expect.any(String));
        const execute = await client.callTool({
          name: 'cloudflare_execute',
          arguments: {
            code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).result.name`,
          },
        });
        expect((execute.content as Array<{ text: string }>)[0]!.text).toBe('"bob.example"');
        const failing = await client.callTool({
          name: 'cloudflare_execute',
          arguments: { code: "async () => { throw new Error('nope') }" },
        });
        expect(failing.isError).toBe(true);
        expect((failing.content as Array<{ text: string }>)[0]!.text).toContain('nope');
        expect(failing.content).toHaveLength(1);
        // console output is a second text block, for results and failures alike.
        const logged = await client.callTool({
          name: 'cloudflare_execute',
          arguments: {
            code: `async () => { const zone = await cloudflare.zones.get({ zone_id: '${zoneId}' }); console.log('zone', zone.name); console.warn('done'); return zone.status; }`,
          },
        });
        expect(logged.content).toEqual([
          { type: 'text', text: expect.stringMatching(/^"\w+"$/) },
          { type: 'text', text: 'zone bob.example\nwarn: done' },
        ]);
        const loggedFailure = await client.callTool({
          name: 'cloudflare_search',
          arguments: {
            code: "async () => { console.log(spec.sdk['zones.get'].path); throw new Error('nope'); }",
          },
        });
        expect(loggedFailure.isError).toBe(true);
        expect((loggedFailure.content as Array<{ text: string }>).map((c) => c.text)).toEqual([
          expect.stringContaining('nope'),
          '/zones/{zone_id}',
        ]);
        // Arguments the tool does not declare are checked like REST's: a clear tool error
        // naming the field, never a JSON-RPC internal error carrying a database message.
        for (const id of ['ca_\u0000', 'ca_\ud800', '../ca_x']) {
          const refused = await client.callTool({
            name: 'cloudflare_execute',
            arguments: { code: 'async () => 1', connected_account_id: id },
          });
          expect(refused.isError).toBe(true);
          expect((refused.content as Array<{ text: string }>)[0]!.text).toMatch(
            /^invalid_request: connected_account_id: must be the id of one of your connected accounts/,
          );
        }
      } finally {
        await client.close();
      }
      const audit = await t.app.inject({
        method: 'GET',
        url: '/api/v1/audit/events?identifier=bob@corp&kind=tool_call',
        headers: { authorization: `Bearer ${tenant.apiKey}` },
      });
      expect(audit.json().events.at(-1)).toMatchObject({
        caller: { type: 'mcp_token', client_name: 'warden-test-client', client_version: '9.9.9' },
      });
    });
  }

  it('works with the MCP Inspector CLI as an independent client', async () => {
    const { token } = await mint();
    const cli = path.join(REPO_ROOT, 'node_modules/.bin/mcp-inspector');
    const common = [
      '--cli',
      `${base}/mcp`,
      '--transport',
      'http',
      '--header',
      `Authorization: Bearer ${token}`,
    ];
    const listed = await run(cli, [...common, '--method', 'tools/list'], { timeout: 60_000 });
    expect(JSON.parse(listed.stdout).tools.map((x: { name: string }) => x.name)).toEqual([
      'cloudflare_search',
      'cloudflare_execute',
    ]);
    const called = await run(
      cli,
      [
        ...common,
        '--method',
        'tools/call',
        '--tool-name',
        'cloudflare_execute',
        '--tool-arg',
        `code=async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result.length`,
      ],
      { timeout: 60_000 },
    );
    expect(JSON.parse(called.stdout).content[0].text).toBe('1');
  });

  it('ends a call at its MCP token expiry: no upstream request after it', async () => {
    const { token, token_id: id } = await mint('3600s');
    // The token expires 2.5 s from now (minting allows 60 s at least; the database is moved).
    await t.db.db.kysely
      .updateTable('mcp_tokens')
      .set({ expires_at: sql<Date>`now() + interval '2500 milliseconds'` })
      .where('id', '=', id)
      .execute();
    const expiresAt = (
      await t.db.db.kysely
        .selectFrom('mcp_tokens')
        .select('expires_at')
        .where('id', '=', id)
        .executeTakeFirstOrThrow()
    ).expires_at.getTime();
    const client = await connect('http', token);
    cf.faults.setLatencyMs(200);
    cf.clearRequests();
    try {
      const result = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: `async () => { for (let i = 0; i < 40; i++) await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' }); return 'all sent'; }`,
        },
      });
      expect(result.isError).toBe(true);
      expect((result.content as Array<{ text: string }>)[0]!.text).toMatch(
        /^forbidden: the MCP token expired/,
      );
      expect(cf.requests().length).toBeGreaterThan(0);
      // At most the one request in flight at the expiry (clocks of one machine).
      expect(cf.requests().filter((r) => r.at.getTime() > expiresAt + 5).length).toBeLessThanOrEqual(1);
    } finally {
      cf.faults.setLatencyMs(0);
      await client.close();
    }
  });

  it('refuses tokens in the URL, foreign origins, and missing, expired or revoked tokens', async () => {
    const noKeepAlive = new Agent({ pipelining: 0 });
    const { token, token_id } = await mint();
    const init = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} };
    // A connection per request: what is under test is each refusal, not keep-alive (a reused
    // socket was seen closed under the client here, twice in five loaded CI runs; unexplained).
    const post = async (headers: Record<string, string>, url = `${base}/mcp`) => {
      const res = await undiciFetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...headers,
        },
        body: JSON.stringify(init),
        dispatcher: noKeepAlive,
      });
      await res.arrayBuffer();
      return res;
    };
    expect((await post({ authorization: `Bearer ${token}` })).status).toBe(200);
    // A finished request holds no live connection: a later revocation must not cut the
    // keep-alive socket the client reuses for its next request.
    await expect.poll(() => t.container.mcpConnections.size).toBe(0);
    expect((await post({}, `${base}/mcp?access_token=${token}`)).status).toBe(400);
    expect((await post({ authorization: `Bearer ${token}`, origin: 'https://evil.example' })).status).toBe(
      403,
    );
    const none = await post({});
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    const get = await undiciFetch(`${base}/mcp`, {
      method: 'GET',
      headers: { authorization: `Bearer ${token}` },
      dispatcher: noKeepAlive,
    });
    await get.arrayBuffer();
    expect(get.status).toBe(405);

    const revoke = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/mcp/tokens/${token_id}`,
      headers: { authorization: `Bearer ${tenant.apiKey}` },
    });
    expect(revoke.statusCode).toBe(204);
    // Refused either way: 401, or the connection cut when the revocation reaches this replica
    // while the request (authenticated from the cache a moment before) is running.
    const afterRevoke = await post({ authorization: `Bearer ${token}` }).catch(() => null);
    expect(afterRevoke === null ? 'cut' : String(afterRevoke.status)).toMatch(/^(cut|401)$/);

    const short = await mint('60s');
    expect((await post({ authorization: `Bearer ${short.token}` })).status).toBe(200);
    await t.db.db.kysely
      .updateTable('mcp_tokens')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', short.token_id)
      .execute();
    // An expiry written behind Warden's back is seen once the token's remembered session ages
    // out (API_KEY_CACHE_TTL_MS); one that simply passes is checked on every request.
    t.container.mcpTokens.forget({ tenantId: tenant.tenantId, tokenId: short.token_id });
    expect((await post({ authorization: `Bearer ${short.token}` })).status).toBe(401);
    await noKeepAlive.close();
  });

  it('binds tokens to this endpoint: a token minted for another URL is refused', async () => {
    const port = await freePort();
    const other = await startTestApp(
      { CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: `http://127.0.0.1:${port}` },
      {},
    );
    try {
      await other.app.listen({ host: '127.0.0.1', port });
      const { tenantId, apiKey } = await other.createTenant();
      // Tokens are minted only for an identity with an ACTIVE connected account.
      const user = cf.state.createUser({ email: 'x@example.com' });
      cf.state.createAccount({ name: 'X Co', members: [user.id] });
      const cfToken = cf.state.createUserToken({ userId: user.id, permissions: ['#zone:read'] });
      await other.connect(apiKey, 'x', cfToken.value);
      const { record, token } = await other.container.mcpTokens.create({
        ctx: { tenantId, actor: ADMIN_CALLER },
        identifier: 'x',
        connectionNames: null,
        expirySeconds: 600,
        audience: `${base}/mcp`,
        createdBy: null,
      });
      other.secrets.add(token);
      expect(record.audience).toBe(`${base}/mcp`);
      const res = await fetch(`http://127.0.0.1:${port}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      expect(res.status).toBe(401);
    } finally {
      await other.close();
    }
  });
});
