import { ADMIN_CALLER } from '@warden/audit';
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, MALLORY, startOAuthFixture, UNVERIFIED } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';

describe('MCP sign-in: refusals with the right OAuth error, and edge cases', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f.close();
  });

  const authorization = (overrides: Record<string, string | null> = {}) => f.authorization(overrides);

  function callbackError(url: string) {
    const parsed = new URL(url);
    expect(`${parsed.origin}${parsed.pathname}`).toBe(f.callbackUrl);
    return {
      error: parsed.searchParams.get('error'),
      description: parsed.searchParams.get('error_description') ?? '',
    };
  }

  /** A code for `identifier`, signed in with a login link in a fresh browser. */
  async function code(identifier = ALICE.email) {
    const { url, verifier } = authorization();
    const back = await f.linkSignIn(f.userAgent(), url, identifier);
    const value = new URL(back.url).searchParams.get('code');
    expect(value, back.url).toBeTruthy();
    return { code: value!, verifier };
  }

  async function tokens(identifier = ALICE.email) {
    const c = await code(identifier);
    const res = await f.token({
      grant_type: 'authorization_code',
      code: c.code,
      code_verifier: c.verifier,
      redirect_uri: f.callbackUrl,
      resource: f.mcpUrl,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  }

  it('wrong audience: invalid_target at the authorization and token endpoints', async () => {
    const other = 'https://elsewhere.example/mcp';
    const page = await f.userAgent().get(authorization({ resource: other }).url.href);
    expect(callbackError(page.url).error).toBe('invalid_target');

    const c = await code();
    const exchanged = await f.token({
      grant_type: 'authorization_code',
      code: c.code,
      code_verifier: c.verifier,
      redirect_uri: f.callbackUrl,
      resource: other,
    });
    expect(exchanged.status).toBe(400);
    expect(exchanged.body.error).toBe('invalid_target');
    // A minted token bound to another deployment's /mcp is not accepted here either.
    const minted = await f.t.container.mcpTokens.create({
      ctx: { tenantId: f.tenant.tenantId, actor: ADMIN_CALLER },
      identifier: ALICE.email,
      connectionNames: null,
      expirySeconds: 600,
      audience: other,
      createdBy: null,
    });
    f.t.secrets.add(minted.token);
    const refused = await f.mcpStatus(minted.token);
    expect(refused.status).toBe(401);
    expect(refused.challenge).toContain('error="invalid_token"');
  });

  it('PKCE missing, plain or wrong', async () => {
    const missing = await f
      .userAgent()
      .get(authorization({ code_challenge: null, code_challenge_method: null }).url.href);
    expect(callbackError(missing.url)).toMatchObject({ error: 'invalid_request' });
    expect(callbackError(missing.url).description).toContain('PKCE');

    const plain = await f.userAgent().get(authorization({ code_challenge_method: 'plain' }).url.href);
    expect(callbackError(plain.url).error).toBe('invalid_request');

    const c = await code();
    const wrong = await f.token({
      grant_type: 'authorization_code',
      code: c.code,
      code_verifier: randomBytes(32).toString('base64url'),
      redirect_uri: f.callbackUrl,
      resource: f.mcpUrl,
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_grant');
    const withoutVerifier = await f.token({
      grant_type: 'authorization_code',
      code: (await code()).code,
      redirect_uri: f.callbackUrl,
      resource: f.mcpUrl,
    });
    expect(withoutVerifier.body.error).toBe('invalid_grant');
  });

  it('a redirect URI not in the client metadata is refused without redirecting', async () => {
    const ua = f.userAgent();
    const page = await ua.get(authorization({ redirect_uri: 'http://127.0.0.1:9/stolen' }).url.href);
    expect(page.status).toBe(400);
    expect(page.body).toContain('invalid_redirect_uri');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(ua.visited.some((u) => u.startsWith('http://127.0.0.1:9/'))).toBe(false);
  });

  it("lets the sign-in pages' forms go only to Warden and the client, and reaches the IdP by a refresh, not a form redirect", async () => {
    const browser = f.userAgent();
    const login = await browser.get(authorization().url.href);
    expect(login.status).toBe(200);
    const csp = login.headers.get('content-security-policy') ?? '';
    const formAction = /form-action ([^;]*)/.exec(csp)?.[1]?.trim().split(/\s+/) ?? [];
    expect(formAction).toEqual(["'self'", new URL(f.callbackUrl).origin]);
    expect(csp).toContain("frame-ancestors 'none'");
    // The SSO form's answer is a page that refreshes to the IdP (no Location to the IdP).
    const form = new URLSearchParams({ email: ALICE.email });
    const action = new URL(login.url).pathname + '/sso';
    const cookie = await browser.jar.getCookieString(login.url);
    const answer = await fetch(new URL(action, login.url), {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
      body: form.toString(),
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('location')).toBeNull();
    const body = await answer.text();
    expect(body).toContain(`<meta http-equiv="refresh" content="0;url=${f.idp.issuer}`);
    expect(answer.headers.get('content-security-policy')).toContain("default-src 'none'");
  });

  it('refuses client metadata with a NUL or an unpaired surrogate as invalid_client_metadata, not a 500', async () => {
    for (const name of ['evil\u0000client', 'evil\ud800client']) {
      for (const metadata of [
        { client_name: name, redirect_uris: [f.callbackUrl] },
        { redirect_uris: [`${f.callbackUrl}?x=${name}`] },
      ]) {
        const res = await fetch(`${f.base}/oauth/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token_endpoint_auth_method: 'none', ...metadata }),
        });
        const body = (await res.json()) as { error?: string };
        expect(res.status, JSON.stringify(metadata)).toBe(400);
        expect(body.error).toMatch(/^invalid_(client_metadata|redirect_uri)$/);
      }
    }
  });

  it('refuses registrations with plain-http redirect URIs off loopback or an oversized client name', async () => {
    const register = (metadata: Record<string, unknown>) =>
      fetch(`${f.base}/oauth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token_endpoint_auth_method: 'none', ...metadata }),
      });
    const http = await register({ redirect_uris: ['http://evil.example/cb'] });
    expect(http.status).toBe(400);
    expect(((await http.json()) as { error: string }).error).toBe('invalid_redirect_uri');
    const long = await register({ redirect_uris: [f.callbackUrl], client_name: 'x'.repeat(50_000) });
    expect(long.status).toBe(400);
    expect(((await long.json()) as { error: string }).error).toBe('invalid_client_metadata');
    // Loopback http (a native client) and https are accepted.
    expect((await register({ redirect_uris: [f.callbackUrl] })).status).toBe(201);
    expect((await register({ redirect_uris: ['https://client.example/cb'] })).status).toBe(201);
  });

  it('refuses a sign-in form another site submits (login CSRF), before it uses the login link', async () => {
    const link = await f.loginLink(ALICE.email);
    const token = new URL(link).searchParams.get('token') ?? '';
    const foreign: Array<Record<string, string>> = [
      { 'sec-fetch-site': 'cross-site' },
      { origin: 'https://evil.example' },
    ];
    for (const headers of foreign) {
      const res = await fetch(`${f.base}/oauth/link`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams({ token }).toString(),
      });
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.headers.getSetCookie().join(';')).not.toContain('signed_in');
      expect(await res.text()).toContain('sent from another site');
    }
    // The link was not used up: the engineer's own browser (same origin) still signs in with it.
    const mine = await fetch(`${f.base}/oauth/link`, {
      method: 'POST',
      redirect: 'manual',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'sec-fetch-site': 'same-origin',
        origin: 'null',
      },
      body: new URLSearchParams({ token }).toString(),
    });
    expect(mine.status).toBeLessThan(400);
    expect(mine.headers.getSetCookie().join(';')).toContain('signed_in');
  });

  it('refuses an SSO identity whose email the IdP did not mark verified (no email_verified claim)', async () => {
    const browser = f.userAgent();
    const start = await browser.get(authorization().url.href);
    const idpLogin = await browser.submit(start, { email: UNVERIFIED.email }, '/sso');
    const idpConsent = await browser.submit(idpLogin, {
      login: UNVERIFIED.email,
      password: UNVERIFIED.password,
    });
    const back = await browser.submit(idpConsent);
    const refused = callbackError(back.url);
    expect(refused.error).toBe('access_denied');
    expect(refused.description).toContain('did not confirm a verified email address');
  });

  it('an identity outside the allowed email domains gets access_denied', async () => {
    // The engineer names an Acme address, then signs in at the IdP as someone else.
    const browser = f.userAgent();
    const start = await browser.get(authorization().url.href);
    const idpLogin = await browser.submit(start, { email: ALICE.email }, '/sso');
    const idpConsent = await browser.submit(idpLogin, { login: MALLORY.email, password: MALLORY.password });
    const back = await browser.submit(idpConsent);
    const refused = callbackError(back.url);
    expect(refused.error).toBe('access_denied');
    expect(refused.description).toContain('mallory@evil.example');

    const ua = f.userAgent();
    const login = await ua.get(authorization().url.href);
    const unknown = await ua.submit(login, { email: MALLORY.email }, '/sso');
    expect(unknown.body).toContain('No organization signs in engineers with @evil.example');

    const events = await f.api('GET', '/api/v1/audit/events?kind=mcp_oauth&outcome=refused');
    expect(events.body.events.map((e: { identifier: string }) => e.identifier)).toContain(MALLORY.email);
  });

  it('an expired or already used login link gets access_denied', async () => {
    const ua = f.userAgent();
    await ua.get(authorization().url.href);
    const link = await f.loginLink(ALICE.email);
    await sql`update oauth_artifacts set expires_at = now() - interval '1 second' where model = 'LoginLink'`.execute(
      f.t.container.db.kysely,
    );
    const expired = await ua.get(link);
    expect(callbackError(expired.url)).toMatchObject({ error: 'access_denied' });
    expect(callbackError(expired.url).description).toContain('expired or was already used');

    const fresh = await f.loginLink(ALICE.email);
    const first = f.userAgent();
    await first.get(authorization().url.href);
    const confirm = await first.get(fresh);
    await first.submit(confirm);
    const second = f.userAgent();
    await second.get(authorization().url.href);
    const reused = await second.submit(confirm);
    expect(callbackError(reused.url).error).toBe('access_denied');
  });

  it('refuses a login link for an identifier with no ACTIVE connected account (unknown or offboarded)', async () => {
    const unknown = await f.api('POST', '/api/v1/mcp/login_links', { identifier: 'nobody@acme.com' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ field: 'identifier' });
    expect(unknown.body.error.message).toContain('has no ACTIVE connected account');
    const erin = f.cf.state.createUser({ email: 'erin@acme.com' });
    const token = f.cf.state.createUserToken({
      userId: erin.id,
      permissions: ['com.cloudflare.api.user.read'],
    });
    await f.t.connect(f.tenant.apiKey, 'erin@acme.com', token.value);
    expect((await f.api('POST', '/api/v1/identities/erin@acme.com/offboard', {})).status).toBe(200);
    expect((await f.api('POST', '/api/v1/mcp/login_links', { identifier: 'erin@acme.com' })).status).toBe(
      404,
    );
  });

  it('a login link opened before the client asks signs that browser in for a few minutes', async () => {
    // Dave's Cloudflare credential is connected: a link is only made for someone with one.
    const dave = f.cf.state.createUser({ email: 'dave@acme.com' });
    const daveToken = f.cf.state.createUserToken({
      userId: dave.id,
      permissions: ['com.cloudflare.api.user.read'],
    });
    await f.t.connect(f.tenant.apiKey, 'dave@acme.com', daveToken.value);
    const ua = f.userAgent();
    const confirm = await ua.get(await f.loginLink('dave@acme.com'));
    const signedIn = await ua.submit(confirm);
    expect(signedIn.body).toContain('You are signed in as');
    // No login page: straight to consent (dave has not consented to this client before).
    const consent = await ua.get(authorization().url.href);
    expect(consent.body).toContain('Allow access to Cloudflare?');
    expect(consent.body).toContain('dave@acme.com');
    const back = await ua.submit(consent, {}, '/consent');
    expect(new URL(back.url).searchParams.get('code')).toBeTruthy();
  });

  it('a reused refresh token revokes the whole grant', async () => {
    const issued = await tokens();
    const rotated = await f.token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token! });
    expect(rotated.status).toBe(200);
    expect((await f.mcpStatus(rotated.body.access_token!)).status).toBe(200);

    const reused = await f.token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token! });
    expect(reused.status).toBe(400);
    expect(reused.body.error).toBe('invalid_grant');
    expect((await f.mcpStatus(rotated.body.access_token!)).status).toBe(401);
    const successor = await f.token({
      grant_type: 'refresh_token',
      refresh_token: rotated.body.refresh_token!,
    });
    expect(successor.body.error).toBe('invalid_grant');
    const events = await f.api('GET', '/api/v1/audit/events?kind=mcp_oauth&outcome=refused');
    expect(events.body.events.map((e: { action: string }) => e.action)).toContain('mcp_oauth.refresh_reuse');
  });

  it('an offboarded identity loses every grant, token and session', async () => {
    const carol = 'carol@acme.com';
    const user = f.cf.state.createUser({ email: carol });
    const token = f.cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read'],
    });
    await f.t.connect(f.tenant.apiKey, carol, token.value);
    const issued = await tokens(carol);
    expect((await f.mcpStatus(issued.access_token!)).status).toBe(200);
    const offboard = await f.api('POST', `/api/v1/identities/${encodeURIComponent(carol)}/offboard`, {});
    expect(offboard.status).toBe(200);
    expect(offboard.body.revoked_mcp_tokens).toBe(1);

    const refused = await f.mcpStatus(issued.access_token!);
    expect(refused.status).toBe(401);
    expect(refused.challenge).toContain('error="invalid_token"');
    const refresh = await f.token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token! });
    expect(refresh.body.error).toBe('invalid_grant');
    const consents = await f.api('GET', `/api/v1/mcp/consents?identifier=${encodeURIComponent(carol)}`);
    expect(consents.body.consents).toEqual([]);
  });
});
