import { setTimeout as sleep } from 'node:timers/promises';
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

    for (const path of [
      '/.well-known/oauth-protected-resource/mcp',
      '/.well-known/oauth-protected-resource',
    ]) {
      const prm = await (await fetch(`${f.base}${path}`)).json();
      expect(prm).toMatchObject({
        resource: f.mcpUrl,
        authorization_servers: [f.base],
        scopes_supported: ['mcp'],
        bearer_methods_supported: ['header'],
      });
    }
    const as = (await (await fetch(`${f.base}/.well-known/oauth-authorization-server`)).json()) as {
      grant_types_supported: string[];
    };
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

  it('keeps the SSO client secret sealed and refuses unusable configurations, naming the field', async () => {
    const shown = await f.api('GET', '/api/v1/mcp/sso');
    expect(shown.status).toBe(200);
    expect(shown.body.sso).toMatchObject({
      issuer: f.idp.issuer,
      client_id: f.idp.clientId,
      identifier_claim: 'email',
      allowed_email_domains: ['acme.com'],
      redirect_uri: `${f.base}/oauth/sso/callback`,
    });
    expect(JSON.stringify(shown.body)).not.toContain(f.idp.clientSecret);
    const valid = {
      issuer: f.idp.issuer,
      client_id: f.idp.clientId,
      client_secret: f.idp.clientSecret,
      allowed_email_domains: ['acme.com'],
    };
    for (const [change, field] of [
      [{ allowed_email_domains: [] }, 'allowed_email_domains'],
      [{ allowed_email_domains: ['not a domain'] }, 'allowed_email_domains'],
      [{ issuer: 'ftp://idp.example' }, 'issuer'],
      [{ issuer: 'http://127.0.0.1:9' }, 'issuer'],
      [{ identifier_claim: 'has spaces' }, 'identifier_claim'],
    ] as const) {
      const refused = await f.api('PUT', '/api/v1/mcp/sso', { ...valid, ...change });
      expect(refused.status, JSON.stringify(change)).toBe(400);
      expect(refused.body.error.field).toBe(field);
    }
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

  it('registers by Dynamic Client Registration, signs in through the tenant IdP, then lists and calls tools', async () => {
    const provider = new TestOAuthClientProvider(f.callbackUrl, { clientName: 'DCR through SSO' });
    const ua = f.userAgent();
    const client = await connectWithOAuth(f.mcpUrl, provider, async (url) => {
      // Registered by DCR: a client id Warden issued, not a metadata document URL.
      expect(url.searchParams.get('client_id')).toBe(
        (provider.clientInformation() as { client_id: string }).client_id,
      );
      expect(url.searchParams.get('client_id')).not.toMatch(/^https?:/);
      expect(url.searchParams.get('resource')).toBe(f.mcpUrl);
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
    f.t.secrets.add(provider.tokens()!.access_token);
    const events = await f.api(
      'GET',
      `/api/v1/audit/events?identifier=${encodeURIComponent(ALICE.email)}&kind=mcp_oauth`,
    );
    const signIns = events.body.events.filter(
      (e: { action: string; details?: { method?: string } }) => e.action === 'mcp_oauth.sign_in',
    );
    expect(signIns.length).toBeGreaterThan(0);
  });

  it('registers by Dynamic Client Registration, signs in with a login link, and audits every step', async () => {
    const provider = new TestOAuthClientProvider(f.callbackUrl, { clientName: 'Registered Client' });
    const ua = f.userAgent();
    const client = await connectWithOAuth(
      f.mcpUrl,
      provider,
      async (url) => (await f.linkSignIn(ua, url, ALICE.email)).url,
    );
    const clientId = (provider.clientInformation() as { client_id: string }).client_id;
    expect(clientId).not.toBe(f.cimd.clientId);
    try {
      const search = await client.callTool({
        name: 'cloudflare_search',
        arguments: { code: "async () => spec.paths['/zones'].get.summary" },
      });
      expect(search.isError).toBeFalsy();
    } finally {
      await client.close();
    }
    f.t.secrets.add(provider.tokens()!.access_token);

    const consents = await f.api('GET', `/api/v1/mcp/consents?identifier=${encodeURIComponent(ALICE.email)}`);
    expect(consents.status).toBe(200);
    const mine = consents.body.consents.find((c: { client_id: string }) => c.client_id === clientId);
    expect(mine).toMatchObject({
      identifier: ALICE.email,
      client_name: 'Registered Client',
      redirect_host: new URL(f.callbackUrl).host,
      id: expect.stringMatching(/^oag_/),
    });

    const events = await f.api(
      'GET',
      `/api/v1/audit/events?identifier=${encodeURIComponent(ALICE.email)}&kind=mcp_oauth`,
    );
    const actions = events.body.events.map((e: { action: string }) => e.action);
    expect(actions).toEqual(
      expect.arrayContaining(['mcp_oauth.sign_in', 'mcp_oauth.consent', 'mcp_oauth.token_issued']),
    );
    const calls = await f.api(
      'GET',
      `/api/v1/audit/events?identifier=${encodeURIComponent(ALICE.email)}&kind=tool_call`,
    );
    expect(calls.body.events.at(-1)).toMatchObject({
      caller: { type: 'mcp_token', id: mine.id, client_name: 'Registered Client' },
    });

    // The browser is still signed in and the consent remembered: straight back with a code.
    const sameBrowser = new TestOAuthClientProvider(f.callbackUrl, { clientName: 'Registered Client' });
    sameBrowser.saveClientInformation(provider.clientInformation()!);
    await (
      await connectWithOAuth(f.mcpUrl, sameBrowser, async (url) => {
        const back = await ua.get(url.href);
        expect(back.status).toBe(0);
        return back.url;
      })
    ).close();
    // Another browser signs in again, but is not asked to consent again.
    const otherBrowser = f.userAgent();
    const elsewhere = new TestOAuthClientProvider(f.callbackUrl, { clientName: 'Registered Client' });
    elsewhere.saveClientInformation(provider.clientInformation()!);
    await (
      await connectWithOAuth(f.mcpUrl, elsewhere, async (url) => {
        await otherBrowser.get(url.href);
        const back = await otherBrowser.submit(await otherBrowser.get(await f.loginLink(ALICE.email)));
        expect(back.status).toBe(0);
        return back.url;
      })
    ).close();
  });

  it('rotates refresh tokens, revokes with RFC 7009, and revokes consents through the tenant API', async () => {
    const provider = new TestOAuthClientProvider(f.callbackUrl, { clientMetadataUrl: f.cimd.clientId });
    const ua = f.userAgent();
    (
      await connectWithOAuth(
        f.mcpUrl,
        provider,
        async (url) => (await f.linkSignIn(ua, url, ALICE.email)).url,
      )
    ).close();
    const first = provider.tokens()!;
    f.t.secrets.add(first.refresh_token!);
    const refreshed = await f.token({
      grant_type: 'refresh_token',
      refresh_token: first.refresh_token!,
      resource: f.mcpUrl,
    });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.refresh_token).not.toBe(first.refresh_token);
    expect((await f.mcpStatus(refreshed.body.access_token!)).status).toBe(200);

    // RFC 7009: revoking the access token ends the grant's tokens, the refresh token too.
    const revoke = await fetch(`${f.base}/oauth/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: refreshed.body.access_token!, client_id: f.cimd.clientId }),
    });
    expect(revoke.status).toBe(200);
    expect((await f.mcpStatus(refreshed.body.access_token!)).status).toBe(401);
    const afterTokenRevoked = await f.token({
      grant_type: 'refresh_token',
      refresh_token: refreshed.body.refresh_token!,
    });
    expect(afterTokenRevoked.body.error).toBe('invalid_grant');

    // Signed in again (this browser, remembered consent); then the tenant revokes the consent.
    const again = new TestOAuthClientProvider(f.callbackUrl, { clientMetadataUrl: f.cimd.clientId });
    await (await connectWithOAuth(f.mcpUrl, again, async (url) => (await ua.get(url.href)).url)).close();
    const next = again.tokens()!;
    f.t.secrets.add(next.access_token);
    f.t.secrets.add(next.refresh_token!);
    expect((await f.mcpStatus(next.access_token)).status).toBe(200);
    const consents = await f.api('GET', `/api/v1/mcp/consents?identifier=${encodeURIComponent(ALICE.email)}`);
    const consent = consents.body.consents.find(
      (c: { client_id: string }) => c.client_id === f.cimd.clientId,
    );
    expect((await f.api('DELETE', `/api/v1/mcp/consents/${consent.id}`)).status).toBe(204);
    expect((await f.api('DELETE', `/api/v1/mcp/consents/${consent.id}`)).status).toBe(404);
    expect((await f.mcpStatus(next.access_token)).status).toBe(401);
    const afterRevoke = await f.token({
      grant_type: 'refresh_token',
      refresh_token: next.refresh_token!,
    });
    expect(afterRevoke.body.error).toBe('invalid_grant');
  });

  for (const which of ['access_token', 'refresh_token'] as const) {
    it(`revoking the ${which} with RFC 7009 ends the grant's running call before its next upstream request, and is audited`, async () => {
      const provider = new TestOAuthClientProvider(f.callbackUrl, { clientMetadataUrl: f.cimd.clientId });
      const ua = f.userAgent();
      const client = await connectWithOAuth(
        f.mcpUrl,
        provider,
        async (url) => (await f.linkSignIn(ua, url, ALICE.email)).url,
      );
      const tokens = provider.tokens()!;
      f.t.secrets.add(tokens.access_token);
      f.t.secrets.add(tokens.refresh_token!);
      f.cf.clearRequests();
      f.cf.faults.setLatencyMs(100);
      try {
        const call = client
          .callTool({
            name: 'cloudflare_execute',
            arguments: {
              code: `async () => { for (let i = 0; i < 40; i++) await cloudflare.request({ method: 'GET', path: '/zones/${f.zoneId}' }); return 'all sent'; }`,
            },
          })
          .then(
            (r) => JSON.stringify(r.content),
            (e: unknown) => String(e),
          );
        await sleep(700);
        const revoke = await fetch(`${f.base}/oauth/revoke`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: tokens[which]!, client_id: f.cimd.clientId }),
        });
        expect(revoke.status).toBe(200);
        const atRevocation = f.cf.requestCount();
        expect(atRevocation).toBeGreaterThan(0);
        const outcome = await call;
        // At most the one request in flight when the revocation landed.
        expect(f.cf.requestCount() - atRevocation).toBeLessThanOrEqual(1);
        expect(outcome).not.toContain('all sent');
        expect((await f.mcpStatus(tokens.access_token)).status).toBe(401);
      } finally {
        f.cf.faults.setLatencyMs(0);
        await client.close().catch(() => undefined);
      }
      const events = await f.api(
        'GET',
        `/api/v1/audit/events?identifier=${encodeURIComponent(ALICE.email)}&kind=mcp_oauth`,
      );
      expect(events.body.events.map((e: { action: string }) => e.action)).toContain(
        'mcp_oauth.token_revoked',
      );
    });
  }
});
