import { expect } from 'vitest';
import type { OAuthFixture } from './oauth-fixture.ts';
import { ScriptedUserAgent } from './user-agent.ts';

/**
 * Signs `user` in to the admin console through the tenant's SSO (the fixture's test provider), as
 * a browser would; returns the session's cookie and its anti-forgery token. The user must be one
 * of the tenant's `console_admins` (see `nameConsoleAdmins`).
 */
export async function consoleSsoSession(
  f: OAuthFixture,
  user: { email: string; password: string },
): Promise<{ cookie: string; csrf: string }> {
  const ua = new ScriptedUserAgent([`${f.base}/console`]);
  const url = `${f.base}/console/api/sso`;
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: user.email }),
  });
  for (const setCookie of res.headers.getSetCookie()) await ua.jar.setCookie(setCookie, url);
  const started = (await res.json()) as { redirect_url: string };
  expect(res.status, JSON.stringify(started)).toBe(200);
  const idpLogin = await ua.get(started.redirect_url);
  const idpConsent = await ua.submit(idpLogin, { login: user.email, password: user.password });
  const back =
    idpConsent.url.startsWith(f.idp.issuer) && idpConsent.status !== 0
      ? await ua.submit(idpConsent)
      : idpConsent;
  expect(back.url).toBe(`${f.base}/console`);
  const cookie = await ua.jar.getCookieString(`${f.base}/api/v1/approvals`);
  const session = await fetch(`${f.base}/console/api/session`, { headers: { cookie } });
  expect(session.status).toBe(200);
  const body = (await session.json()) as { session: { csrf_token: string; sso_identifier: string } };
  expect(body.session.sso_identifier).toBe(user.email);
  return { cookie, csrf: body.session.csrf_token };
}

/** The tenant's SSO configuration, kept as it is, with `admins` as its console admins. */
export async function nameConsoleAdmins(f: OAuthFixture, admins: readonly string[]): Promise<void> {
  const sso = await f.api('GET', '/api/v1/mcp/sso');
  const put = await f.api('PUT', '/api/v1/mcp/sso', {
    issuer: f.idp.issuer,
    client_id: f.idp.clientId,
    client_secret: f.idp.clientSecret,
    allowed_email_domains: sso.body.sso.allowed_email_domains,
    console_admins: admins,
  });
  expect(put.status, JSON.stringify(put.body)).toBe(200);
}

/** Another engineer of the fixture's tenant: a fake Cloudflare user with a read token, vaulted for `email`. */
export async function connectEngineer(f: OAuthFixture, email: string): Promise<void> {
  const user = f.cf.state.createUser({ email });
  f.cf.state.createAccount({ name: `${email} Co`, members: [user.id] });
  const token = f.cf.state.createUserToken({
    userId: user.id,
    permissions: ['com.cloudflare.api.user.read', '#zone:read'],
  }).value;
  f.t.secrets.add(token);
  await f.t.connect(f.tenant.apiKey, email, token);
}

/** An MCP token for `identifier` minted in a console session (expects 201); its secret, shown once. */
export async function mintInConsole(
  f: OAuthFixture,
  session: { cookie: string; csrf: string },
  identifier: string,
  expiry: string,
): Promise<string> {
  const minted = await fetch(`${f.base}/api/v1/mcp/tokens`, {
    method: 'POST',
    headers: { cookie: session.cookie, 'x-csrf-token': session.csrf, 'content-type': 'application/json' },
    body: JSON.stringify({ identifier, expiry }),
  });
  expect(minted.status).toBe(201);
  const { token } = (await minted.json()) as { token: string };
  f.t.secrets.add(token);
  return token;
}
