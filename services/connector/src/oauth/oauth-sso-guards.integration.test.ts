/**
 * SSO and client metadata fetches against hostile inputs (from an outsider attack on issue 17):
 * an IdP that does not verify emails, a callback replayed in another browser, and a client_id
 * naming a loopback address.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp } from '../test-support/test-app.ts';
import { ALICE, startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { ScriptedUserAgent } from './test-support/user-agent.ts';

const sha = (v: string) => createHash('sha256').update(v, 'utf8').digest('base64url');

/** An IdP whose ID token carries `email` but no `email_verified` (many real IdPs do this). */
async function startIdpWithoutEmailVerified(redirectUri: string, users: Record<string, string>) {
  const clientSecret = `idp2-secret-${randomBytes(8).toString('hex')}`;
  const httpServer = createServer();
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'warden',
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    claims: { openid: ['sub'], email: ['email'] },
    scopes: ['openid', 'email', 'profile'],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['k'] },
    conformIdTokenClaims: false,
    findAccount: (_ctx, sub) =>
      users[sub] ? { accountId: sub, claims: () => ({ sub, email: users[sub] }) } : undefined,
  });
  httpServer.on('request', provider.callback());
  return {
    issuer,
    clientSecret,
    close: () => {
      httpServer.closeAllConnections();
      return new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}

describe('SSO sign-in guards', () => {
  let f: OAuthFixture;
  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f.close();
  });

  const authorization = () => f.authorization({ state: 's' });

  it('an ID token with an email but no email_verified claim is not a verified email', async () => {
    // Attacker's IdP account (login "attacker") claims the email of Globex's CEO, unverified.
    const idp = await startIdpWithoutEmailVerified(`${f.base}/oauth/sso/callback`, {
      attacker: 'ceo@globex.com',
    });
    f.t.secrets.add(idp.clientSecret);
    const globex = await f.t.createTenant('Globex');
    const put = await f.t.app.inject({
      method: 'PUT',
      url: '/api/v1/mcp/sso',
      headers: { authorization: `Bearer ${globex.apiKey}` },
      payload: {
        issuer: idp.issuer,
        client_id: 'warden',
        client_secret: idp.clientSecret,
        allowed_email_domains: ['globex.com'],
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    const ua = f.userAgent();
    const start = await ua.get(authorization().url.href);
    const idpLogin = await ua.submit(start, { email: 'ceo@globex.com' }, '/sso');
    const idpConsent = await ua.submit(idpLogin, { login: 'attacker', password: 'x' });
    const back = idpConsent.url.startsWith(idp.issuer) ? await ua.submit(idpConsent) : idpConsent;
    const signedInAs = /Signed in as<\/dt><dd>([^<]*)/.exec(back.body)?.[1] ?? null;
    await idp.close();
    expect(signedInAs, 'an unverified email became the identifier').toBeNull();
  });

  it('an SSO callback URL replayed in another browser, or twice, does not sign in, nor spoil the sign-in of the browser that started it', async () => {
    const a = new ScriptedUserAgent([`${f.base}/oauth/sso/callback`]);
    const start = await a.get(authorization().url.href);
    const idpLogin = await a.submit(start, { email: ALICE.email }, '/sso');
    const idpConsent = await a.submit(idpLogin, { login: ALICE.email, password: ALICE.password });
    const stopped = idpConsent.url.startsWith(f.idp.issuer) ? await a.submit(idpConsent) : idpConsent;
    expect(stopped.url).toContain('/oauth/sso/callback?');
    // Browser A continues, but its jar follows redirects to the client's callback only.
    const aa = Object.assign(new ScriptedUserAgent([f.callbackUrl]), { jar: a.jar });
    const tampered = new URL(stopped.url);
    tampered.searchParams.set('state', 'x' + tampered.searchParams.get('state'));
    const bad = await aa.get(tampered.href);
    // Browser B (someone else) gets the callback URL first.
    const b = new ScriptedUserAgent([f.callbackUrl]);
    await b.get(authorization().url.href);
    const other = await b.get(stopped.url);
    expect(other.status).toBe(400);
    expect(bad.status).toBe(400);
    // Neither used up the sign-in of the browser that started it: A finishes it, once.
    const back = await aa.get(stopped.url);
    expect(back.body, back.body).toContain('Allow access to Cloudflare?');
    const done = await aa.submit(back, {}, '/consent');
    expect(new URL(done.url).searchParams.get('code')).toBeTruthy();
    expect((await aa.get(stopped.url)).status).toBe(400);
  });
});

describe('client metadata document fetch (production settings, OAUTH_ALLOW_INSECURE off)', () => {
  it('a client_id URL on a loopback/private address is not fetched (SSRF)', async () => {
    const connections: string[] = [];
    const listener = createTcpServer((socket) => {
      connections.push(`${socket.remoteAddress}`);
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const port = (listener.address() as AddressInfo).port;
    const t = await startTestApp({ PUBLIC_URL: 'https://warden.example' });
    try {
      const verifier = randomBytes(32).toString('base64url');
      const query = (clientId: string) =>
        new URLSearchParams({
          response_type: 'code',
          client_id: clientId,
          redirect_uri: 'https://client.example/cb',
          code_challenge: sha(verifier),
          code_challenge_method: 'S256',
          scope: 'mcp',
        });
      const open = await t.app.inject({
        method: 'GET',
        url: `/oauth/authorize?${query(`https://127.0.0.1:${port}/client.json`)}`,
      });
      const closed = await t.app.inject({
        method: 'GET',
        url: `/oauth/authorize?${query('https://127.0.0.1:1/client.json')}`,
      });
      // Refused the same way whether anything listens there (no oracle), and nothing was reached.
      const text = (b: string) => /<p class="error">([^<]*)</.exec(b)?.[1];
      expect(open.statusCode).toBe(400);
      expect(text(open.body)).toBe(text(closed.body));
      expect(connections).toEqual([]);
    } finally {
      await t.close();
      listener.close();
    }
  });
});
