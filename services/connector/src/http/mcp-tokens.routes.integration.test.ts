import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { connectFakeUser } from '../test-support/fake-user.ts';
import { freePort } from '../test-support/free-port.ts';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

interface ListedToken {
  id: string;
  identifier: string;
  connection_names: string[] | null;
  status: 'active' | 'expired' | 'revoked';
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
  client: { name: string; version: string | null } | null;
}

describe('MCP tokens: listing an identity’s tokens, and minting only for a live identity', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let tenant: { tenantId: string; apiKey: string };
  let other: { tenantId: string; apiKey: string };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base });
    await t.app.listen({ host: '127.0.0.1', port });
    tenant = await t.createTenant('MCP listing');
    other = await t.createTenant('Other tenant');
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  const vault = async (identifier: string) =>
    (await connectFakeUser(t, cf, tenant.apiKey, identifier)).accountId;

  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object, apiKey = tenant.apiKey) =>
    t.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${apiKey}` },
      ...(payload ? { payload } : {}),
    });

  async function mint(identifier: string, extra: object = {}) {
    const res = await call('POST', '/api/v1/mcp/tokens', { identifier, ...extra });
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json() as { token: string; token_id: string };
    t.secrets.add(body.token);
    return body;
  }

  it('lists tokens page by page with their state and client, never the secret', async () => {
    await vault('bob@corp');
    const used = await mint('bob@corp');
    const scoped = await mint('bob@corp', { connection_names: ['cloudflare'], expiry: '7d' });
    const revoked = await mint('bob@corp');
    expect((await call('DELETE', `/api/v1/mcp/tokens/${revoked.token_id}`)).statusCode).toBe(204);

    const client = new Client({ name: 'listing-test', version: '1.2.3' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${used.token}` } },
      }),
    );
    await client.listTools();
    await client.close();

    const first = await call('GET', '/api/v1/mcp/tokens?identifier=bob%40corp&page_size=2');
    expect(first.statusCode, first.body).toBe(200);
    const page1 = first.json() as { mcp_tokens: ListedToken[]; next_page_token: string | null };
    expect(page1.mcp_tokens).toHaveLength(2);
    expect(page1.next_page_token).toEqual(expect.any(String));
    const second = await call(
      'GET',
      `/api/v1/mcp/tokens?identifier=bob%40corp&page_size=2&page_token=${page1.next_page_token}`,
    );
    const page2 = second.json() as { mcp_tokens: ListedToken[]; next_page_token: string | null };
    expect(page2.next_page_token).toBeNull();
    const tokens = [...page1.mcp_tokens, ...page2.mcp_tokens];
    expect(tokens.map((x) => x.id)).toEqual([used.token_id, scoped.token_id, revoked.token_id]);

    const byId = new Map(tokens.map((x) => [x.id, x]));
    expect(byId.get(used.token_id)).toMatchObject({
      identifier: 'bob@corp',
      connection_names: null,
      status: 'active',
      revoked_at: null,
      last_used_at: expect.any(String),
      client: { name: 'listing-test', version: '1.2.3' },
    });
    expect(byId.get(scoped.token_id)).toMatchObject({
      connection_names: ['cloudflare'],
      status: 'active',
      last_used_at: null,
      client: null,
    });
    const scopedToken = byId.get(scoped.token_id) as ListedToken;
    expect(Date.parse(scopedToken.expires_at) - Date.parse(scopedToken.created_at)).toBeGreaterThan(
      6 * 86_400_000,
    );
    expect(byId.get(revoked.token_id)).toMatchObject({ status: 'revoked', revoked_at: expect.any(String) });

    // Neither the secret nor its hash is ever part of a listing.
    const listed = first.body + second.body;
    for (const secret of [used.token, scoped.token, revoked.token]) {
      expect(listed).not.toContain(secret);
      expect(listed).not.toContain(secret.slice('wdn_mcp_'.length));
    }
    expect(Object.keys(tokens[0] as object).sort()).toEqual(
      [
        'client',
        'connection_names',
        'created_at',
        'expires_at',
        'id',
        'identifier',
        'last_used_at',
        'revoked_at',
        'status',
      ].sort(),
    );
  });

  it('stores whatever clientInfo an MCP client sends as text it can keep', async () => {
    await vault('erin@corp');
    const minted = await mint('erin@corp');
    // NUL and a lone surrogate are what PostgreSQL refuses; the client's label keeps the rest.
    const client = new Client({ name: 'odd\u0000client', version: '\ud800 1.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${minted.token}` } },
      }),
    );
    expect((await client.listTools()).tools.length).toBe(2);
    await client.close();
    const listed = await call('GET', '/api/v1/mcp/tokens?identifier=erin%40corp');
    const token = (listed.json() as { mcp_tokens: ListedToken[] }).mcp_tokens.find(
      (x) => x.id === minted.token_id,
    );
    expect(token?.client).toEqual({ name: 'odd\uFFFDclient', version: '\uFFFD 1.0' });
  });

  it('keeps tenants apart and names what is missing from the query', async () => {
    const foreign = await call('GET', '/api/v1/mcp/tokens?identifier=bob%40corp', undefined, other.apiKey);
    expect(foreign.statusCode).toBe(200);
    expect(foreign.json()).toEqual({ mcp_tokens: [], next_page_token: null });

    const missing = await call('GET', '/api/v1/mcp/tokens');
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error).toEqual({
      code: 'invalid_request',
      field: 'identifier',
      message: 'identifier: is required (Your id for the end user)',
    });
  });

  it('refuses to mint for an unknown, offboarded or revoked identity', async () => {
    const refused = async (identifier: string) => {
      const res = await call('POST', '/api/v1/mcp/tokens', { identifier });
      expect(res.statusCode, identifier).toBe(404);
      expect(res.json().error).toMatchObject({ code: 'not_found', field: 'identifier' });
      expect(res.json().error.message).toMatch(
        new RegExp(
          `^identifier: '${identifier}' has no ACTIVE connected account .*POST /api/v1/connected_accounts`,
        ),
      );
    };
    await refused('nobody@corp');

    await vault('carol@corp');
    await mint('carol@corp');
    const offboard = await call('POST', `/api/v1/identities/${encodeURIComponent('carol@corp')}/offboard`);
    expect(offboard.statusCode, offboard.body).toBe(200);
    await refused('carol@corp');

    const daveAccount = await vault('dave@corp');
    expect((await call('DELETE', `/api/v1/connected_accounts/${daveAccount}`)).statusCode).toBe(204);
    await refused('dave@corp');

    // Another tenant's identity is unknown here.
    const foreign = await call('POST', '/api/v1/mcp/tokens', { identifier: 'bob@corp' }, other.apiKey);
    expect(foreign.statusCode).toBe(404);
  });
});
