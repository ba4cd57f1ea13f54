import { createHash, randomBytes } from 'node:crypto';
import { startFakeCloudflare } from '@warden/testing';
import { expect } from 'vitest';
import { freePort } from '../../test-support/free-port.ts';
import { SPEC_PATH } from '../../test-support/paths.ts';
import { startTestApp } from '../../test-support/test-app.ts';
import { startClientMetadataServer } from './client-metadata-server.ts';
import { startTestIdp } from './test-idp.ts';
import { ScriptedUserAgent } from './user-agent.ts';
import type { UaPage as Page } from './user-agent.ts';

export const ALICE = { email: 'alice@acme.com', password: 'alice-password' };
export const MALLORY = { email: 'mallory@evil.example', password: 'mallory-password' };
/** An Acme address the IdP does not say it verified (no `email_verified` claim). */
export const UNVERIFIED = { email: 'ceo@acme.com', password: 'unverified-password', emailVerified: null };

/**
 * Warden listening on a real port (MCP clients and browsers reach it by URL), the fake
 * Cloudflare API as upstream, a tenant whose engineers sign in through a real OpenID
 * Connect provider, alice's Cloudflare token vaulted, and an MCP client's metadata document.
 */
export async function startOAuthFixture(env: Record<string, string> = {}) {
  const cf = await startFakeCloudflare({ specPath: SPEC_PATH });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const callbackUrl = `http://127.0.0.1:${await freePort()}/callback`;
  const idp = await startTestIdp({
    redirectUri: `${base}/oauth/sso/callback`,
    users: [ALICE, MALLORY, UNVERIFIED],
  });
  const cimd = await startClientMetadataServer({
    clientName: 'Metadata Client',
    redirectUris: [callbackUrl],
  });
  const t = await startTestApp({
    CLOUDFLARE_API_BASE: cf.url,
    PUBLIC_URL: base,
    OAUTH_ALLOW_INSECURE: 'true',
    // Acme's domain routes at once; the DNS proof has its own tests (oauth-sso-domain-proof).
    SSO_DOMAIN_PROOF: 'none',
    ...env,
  });
  await t.app.listen({ host: '127.0.0.1', port });
  const tenant = await t.createTenant('Acme');
  t.secrets.add(idp.clientSecret);
  t.secrets.add(ALICE.password);

  const user = cf.state.createUser({ email: ALICE.email });
  const account = cf.state.createAccount({ name: 'Acme Production', members: [user.id] });
  const zoneId = cf.state.createZone({ accountId: account.id, name: 'acme.example' }).id;
  const cloudflareToken = cf.state.createUserToken({
    userId: user.id,
    permissions: ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:read'],
  });
  await t.connect(tenant.apiKey, ALICE.email, cloudflareToken.value);

  async function api(method: string, url: string, payload?: unknown) {
    const res = await t.app.inject({
      method: method as 'GET',
      url,
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
    // Parsed JSON, as loosely typed as in the other API tests.
    const body = res.body ? res.json() : null;
    return { status: res.statusCode, body };
  }

  async function loginLink(identifier: string): Promise<string> {
    const link = await api('POST', '/api/v1/mcp/login_links', { identifier });
    expect(link.status).toBe(201);
    t.secrets.add(new URL(link.body.url).searchParams.get('token')!);
    return link.body.url as string;
  }

  const sso = await api('PUT', '/api/v1/mcp/sso', {
    issuer: idp.issuer,
    client_id: idp.clientId,
    client_secret: idp.clientSecret,
    allowed_email_domains: ['acme.com'],
  });
  expect(sso.status, JSON.stringify(sso.body)).toBe(200);

  /** A token endpoint request of the metadata-document client; issued tokens join the secrets. */
  async function token(params: Record<string, string>) {
    const res = await fetch(`${base}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: cimd.clientId, ...params }),
    });
    const body = (await res.json()) as { access_token?: string; refresh_token?: string; error?: string };
    if (body.access_token) t.secrets.add(body.access_token);
    if (body.refresh_token) t.secrets.add(body.refresh_token);
    return { status: res.status, body };
  }

  /** `tools/list` with an access token: its status and challenge. */
  async function mcpStatus(accessToken: string) {
    const res = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${accessToken}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    });
    await res.body?.cancel();
    return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '' };
  }

  /** Signs in at the identity provider's login page as `as`; returns where its consent leads. */
  async function idpSignIn(ua: ScriptedUserAgent, idpLogin: Page, as: { email: string; password: string }) {
    const idpConsent = await ua.submit(idpLogin, { login: as.email, password: as.password });
    return idpConsent.url.startsWith(idp.issuer) ? ua.submit(idpConsent) : idpConsent;
  }

  return {
    t,
    cf,
    token,
    mcpStatus,
    idp,
    cimd,
    base,
    mcpUrl: `${base}/mcp`,
    tenant,
    callbackUrl,
    zoneId,
    /** A fresh browser that stops at the client's redirect URI. */
    userAgent: () => new ScriptedUserAgent([callbackUrl]),
    /**
     * An authorization request as the metadata-document client builds it, with its own PKCE pair;
     * `overrides` replace parameters (null leaves one out).
     */
    authorization(overrides: Record<string, string | null> = {}): { url: URL; verifier: string } {
      const verifier = randomBytes(32).toString('base64url');
      const params: Record<string, string | null> = {
        response_type: 'code',
        client_id: cimd.clientId,
        redirect_uri: callbackUrl,
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
        resource: `${base}/mcp`,
        scope: 'mcp',
        state: 'state-1',
        ...overrides,
      };
      const url = new URL(`${base}/oauth/authorize`);
      for (const [k, v] of Object.entries(params)) if (v !== null) url.searchParams.set(k, v);
      return { url, verifier };
    },
    idpSignIn,
    /** Expects the client's redirect URI to have got a refusal (no code, access_denied); its parameters. */
    refusal(back: Page): URLSearchParams {
      const returned = new URL(back.url);
      expect(`${returned.origin}${returned.pathname}`).toBe(callbackUrl);
      expect(returned.searchParams.get('code')).toBeNull();
      expect(returned.searchParams.get('error')).toBe('access_denied');
      return returned.searchParams;
    },
    /** Runs the browser part over SSO and returns the page the client's redirect URI got. */
    async ssoSignIn(
      ua: ScriptedUserAgent,
      authorizationUrl: URL,
      signInAs: { email: string; password: string },
    ) {
      const login = await ua.get(authorizationUrl.href);
      expect(login.status, login.body).toBe(200);
      expect(login.body).toContain('Continue with SSO');
      const idpLogin = await ua.submit(login, { email: signInAs.email }, '/sso');
      expect(idpLogin.url.startsWith(idp.issuer), idpLogin.body).toBe(true);
      const back = await idpSignIn(ua, idpLogin, signInAs);
      if (back.status === 0) return back;
      expect(back.body).toContain('Allow access to Cloudflare?');
      return ua.submit(back, {}, '/consent');
    },
    loginLink,
    /** Runs the browser part with a login link from the tenant's backend. */
    async linkSignIn(ua: ScriptedUserAgent, authorizationUrl: URL, identifier: string) {
      const login = await ua.get(authorizationUrl.href);
      expect(login.body, login.body).toContain('With a sign-in link');
      const linkPage = await ua.get(await loginLink(identifier));
      const consent = await ua.submit(linkPage);
      if (consent.status === 0) return consent;
      expect(consent.body, consent.body).toContain('Allow access to Cloudflare?');
      return ua.submit(consent, {}, '/consent');
    },
    api,
    async close() {
      await t.close();
      await cimd.close();
      await idp.close();
      await cf.close();
    },
  };
}

export type OAuthFixture = Awaited<ReturnType<typeof startOAuthFixture>>;
