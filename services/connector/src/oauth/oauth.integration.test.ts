import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectWithOAuth, TestOAuthClientProvider } from './test-support/oauth-client.ts';
import { ALICE, startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';

describe('MCP sign-in with OAuth 2.1', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f.close();
  });

  it('leads a client from a bare /mcp URL to the authorization server', async () => {
    const res = await fetch(f.mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer realm="warden", resource_metadata="${f.base}/.well-known/oauth-protected-resource/mcp", scope="mcp"`,
    );
    const invalid = await fetch(f.mcpUrl, {
      method: 'POST',
      headers: { authorization: 'Bearer not-a-token', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(invalid.headers.get('www-authenticate')).toContain('error="invalid_token"');

    for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
      const prm = await (await fetch(`${f.base}${path}`)).json();
      expect(prm).toMatchObject({
        resource: f.mcpUrl,
        authorization_servers: [f.base],
        scopes_supported: ['mcp'],
        bearer_methods_supported: ['header'],
      });
    }
    const as = await (await fetch(`${f.base}/.well-known/oauth-authorization-server`)).json();
    expect(as).toMatchObject({
      issuer: f.base,
      authorization_endpoint: `${f.base}/oauth/authorize`,
      token_endpoint: `${f.base}/oauth/token`,
      registration_endpoint: `${f.base}/oauth/register`,
      revocation_endpoint: `${f.base}/oauth/revoke`,
      code_challenge_methods_supported: ['S256'],
      response_types_supported: ['code'],
      token_endpoint_auth_methods_supported: ['none'],
      client_id_metadata_document_supported: true,
    });
    expect(as.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token']));
  });

  it('signs in by Client ID Metadata Document through the tenant IdP, then lists and calls tools', async () => {
    const provider = new TestOAuthClientProvider(f.callbackUrl, { clientMetadataUrl: f.cimd.clientId });
    const ua = f.userAgent();
    const client = await connectWithOAuth(f.mcpUrl, provider, async (url) => {
      expect(url.searchParams.get('client_id')).toBe(f.cimd.clientId);
      expect(url.searchParams.get('resource')).toBe(f.mcpUrl);
      expect(url.searchParams.get('code_challenge_method')).toBe('S256');
      return (await f.ssoSignIn(ua, url, ALICE)).url;
    });
    try {
      const { tools } = await client.listTools();
      expect(tools.map((x) => x.name)).toEqual(['cloudflare_search', 'cloudflare_execute']);
      const execute = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${f.zoneId}' })).result.name`,
        },
      });
      expect((execute.content as Array<{ text: string }>)[0]!.text).toBe('"acme.example"');
    } finally {
      await client.close();
    }
    const tokens = provider.tokens();
    expect(tokens?.refresh_token).toBeTruthy();
    f.t.secrets.add(tokens!.access_token);
    f.t.secrets.add(tokens!.refresh_token!);
  });
});
