import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { ensureConsoleBuilt } from '../../../console/scripts/console-build.ts';
import { SPEC_PATH } from '../test-support/paths.ts';
import { CONSOLE_DIST } from './console.routes.ts';
import { consoleKeySignIn, startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

/**
 * attack29: the admin console's session cookie as a way into the tenant and admin APIs, from
 * outside (another site, another tenant) and for whoever reads what it answers. Each test
 * asserts the secure behaviour; those named HELD passed when written.
 */

interface Signed {
  res: LightMyRequestResponse;
  /** `name=value`, as a browser sends it back. */
  cookie: string;
  csrf: string;
  secret: string;
}

async function signIn(
  t: TestApp,
  body: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<Signed> {
  const res = await t.app.inject({ method: 'POST', url: '/console/api/session', payload: body, headers });
  const c = res.cookies.find((x) => x.name.endsWith('warden_console'));
  const session = res.statusCode === 201 ? (res.json() as { session: { csrf_token: string } }).session : null;
  return {
    res,
    cookie: c ? `${c.name}=${c.value}` : '',
    csrf: session?.csrf_token ?? '',
    secret: c?.value ?? '',
  };
}

function isRefused(status: number): boolean {
  return status >= 400 && status < 500;
}

describe('attack29: console session cookie', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let acme: { tenantId: string; apiKey: string };
  let other: { tenantId: string; apiKey: string };
  let acmeAccount: string;
  let otherAccount: string;
  const tokens: string[] = [];

  async function accountStatus(id: string): Promise<string> {
    const row = await t.container.db.kysely
      .selectFrom('connected_accounts')
      .select('status')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    return row.status as string;
  }

  beforeAll(async () => {
    await ensureConsoleBuilt();
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    acme = await t.createTenant('Acme');
    other = await t.createTenant('Other');
    for (const [who, tenant] of [
      ['alice@acme.com', acme],
      ['olga@other.com', other],
    ] as const) {
      const user = cf.state.createUser({ email: who });
      cf.state.createAccount({ name: `${who} account`, members: [user.id] });
      t.secrets.add(user.globalApiKey);
      const token = cf.state.createUserToken({
        userId: user.id,
        permissions: ['#zone:read', '#dns_records:edit', 'com.cloudflare.api.user.read'],
      });
      tokens.push(token.value);
      const id = await t.connect(tenant.apiKey, who, token.value);
      if (tenant === acme) acmeAccount = id;
      else otherAccount = id;
    }
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  // --- FINDING: responses with tenant data, authenticated by the cookie, may be cached ---------

  it('marks every cookie-authenticated answer with tenant data (and the CSRF token) Cache-Control: no-store', async () => {
    const s = await signIn(t, { api_key: acme.apiKey });
    const event = await t.container.db.kysely
      .selectFrom('audit_events')
      .select('id')
      .where('tenant_id', '=', acme.tenantId)
      .executeTakeFirstOrThrow();
    const answers: Record<string, LightMyRequestResponse> = { 'POST /console/api/session': s.res };
    for (const url of [
      '/console/api/session',
      '/console/api/overview',
      '/console/api/audit/rows',
      `/console/api/audit/events/${event.id}`,
      '/api/v1/connected_accounts',
      '/api/v1/audit/events',
    ]) {
      answers[`GET ${url}`] = await t.app.inject({ method: 'GET', url, headers: { cookie: s.cookie } });
    }
    const missing: string[] = [];
    for (const [what, res] of Object.entries(answers)) {
      expect(res.statusCode, what).toBeLessThan(300);
      const cc = String(res.headers['cache-control'] ?? '');
      if (!/\bno-store\b/.test(cc)) missing.push(`${what} -> cache-control: ${cc || '(none)'}`);
    }
    expect(missing).toEqual([]);
  });

  // --- CSRF: every way a cross-site or forged request could dress up a change --------------------

  it('HELD: a body-less change (offboard) sent as a form or text/plain, or with a method override, needs the token', async () => {
    const s = await signIn(t, { api_key: acme.apiKey });
    const url = '/api/v1/identities/alice%40acme.com/offboard';
    const attempts: Array<{
      label: string;
      method: 'POST';
      url: string;
      headers: Record<string, string>;
      payload?: string;
    }> = [
      { label: 'no body', method: 'POST', url, headers: {} },
      { label: 'text/plain', method: 'POST', url, headers: { 'content-type': 'text/plain' }, payload: '{}' },
      {
        label: 'form',
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'revoke_upstream=true',
      },
      {
        label: 'multipart',
        method: 'POST',
        url,
        headers: { 'content-type': 'multipart/form-data; boundary=x' },
        payload: '--x--\r\n',
      },
      {
        label: 'json, empty',
        method: 'POST',
        url,
        headers: { 'content-type': 'application/json' },
        payload: '',
      },
      { label: 'x-http-method-override', method: 'POST', url, headers: { 'x-http-method-override': 'GET' } },
      { label: 'x-http-method', method: 'POST', url, headers: { 'x-http-method': 'GET' } },
      { label: '_method query', method: 'POST', url: `${url}?_method=GET`, headers: {} },
      { label: 'empty token', method: 'POST', url, headers: { 'x-csrf-token': '' } },
      { label: 'token of no session', method: 'POST', url, headers: { 'x-csrf-token': 'abc-def' } },
      { label: 'trailing slash', method: 'POST', url: `${url}/`, headers: {} },
      { label: 'double slash inside', method: 'POST', url: url.replace('/v1/', '/v1//'), headers: {} },
      { label: 'double slash first', method: 'POST', url: `/${url}`, headers: {} },
      { label: 'encoded a', method: 'POST', url: url.replace('/api/', '/%61pi/'), headers: {} },
      { label: 'encoded slash', method: 'POST', url: url.replace('/api/v1/', '/api%2Fv1/'), headers: {} },
      { label: 'upper case', method: 'POST', url: url.replace('/api/v1/', '/API/V1/'), headers: {} },
      {
        label: 'dot segment',
        method: 'POST',
        url: url.replace('/api/v1/', '/console/../api/v1/'),
        headers: {},
      },
    ];
    const seen: string[] = [];
    for (const a of attempts) {
      const res = await t.app.inject({
        method: a.method,
        url: a.url,
        headers: {
          cookie: s.cookie,
          origin: 'https://evil.example',
          'sec-fetch-site': 'cross-site',
          ...a.headers,
        },
        ...(a.payload !== undefined ? { payload: a.payload } : {}),
      });
      seen.push(`${a.label}: ${res.statusCode}`);
      expect(isRefused(res.statusCode), `${a.label}: ${res.statusCode} ${res.body}`).toBe(true);
    }
    for (const method of ['HEAD', 'OPTIONS'] as const) {
      const res = await t.app.inject({ method, url, headers: { cookie: s.cookie } });
      seen.push(`${method}: ${res.statusCode}`);
    }
    expect(await accountStatus(acmeAccount)).toBe('ACTIVE');
    // The control: the same request with the session's token goes through (on an identity with nothing).
    const ok = await t.app.inject({
      method: 'POST',
      url: '/api/v1/identities/nobody%40acme.com/offboard',
      headers: { cookie: s.cookie, 'x-csrf-token': s.csrf },
    });
    expect(ok.statusCode, ok.body).toBe(200);
  });

  it('HELD: login CSRF: a sign-in posted as a form or text/plain sets no cookie', async () => {
    for (const [type, payload] of [
      ['text/plain', JSON.stringify({ api_key: acme.apiKey })],
      ['application/x-www-form-urlencoded', `api_key=${encodeURIComponent(acme.apiKey)}`],
    ] as const) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/console/api/session',
        headers: { 'content-type': type, origin: 'https://evil.example' },
        payload,
      });
      expect(res.statusCode, type).toBe(415);
      expect(res.headers['set-cookie'], type).toBeUndefined();
    }
    const sso = await t.app.inject({
      method: 'POST',
      url: '/console/api/sso',
      headers: { 'content-type': 'text/plain' },
      payload: JSON.stringify({ email: 'a@acme.com' }),
    });
    expect(sso.statusCode).toBe(415);
  });

  it('HELD: session fixation: a cookie value the client chose is no session, and sign-in issues a new secret', async () => {
    const chosen = 'attacker-chosen-secret-aaaaaaaaaaaaaaaaaaaaaaaaaa';
    const before = await t.app.inject({
      method: 'GET',
      url: '/console/api/session',
      headers: { cookie: `warden_console=${chosen}` },
    });
    expect(before.statusCode).toBe(401);
    const s = await signIn(t, { api_key: acme.apiKey }, { cookie: `warden_console=${chosen}` });
    expect(s.res.statusCode).toBe(201);
    expect(s.secret).not.toBe(chosen);
    expect(s.secret.length).toBeGreaterThanOrEqual(43);
    const after = await t.app.inject({
      method: 'GET',
      url: '/console/api/session',
      headers: { cookie: `warden_console=${chosen}` },
    });
    expect(after.statusCode).toBe(401);
    // Signing in again over a live session needs that session's token (no silent swap to another tenant).
    const swap = await signIn(t, { api_key: other.apiKey }, { cookie: s.cookie });
    expect(swap.res.statusCode).toBe(403);
  });

  it("HELD: a tenant session reaches neither another tenant's objects (404) nor the admin API (401)", async () => {
    const s = await signIn(t, { api_key: acme.apiKey });
    const h = { cookie: s.cookie, 'x-csrf-token': s.csrf };
    const foreignEvent = await t.container.db.kysely
      .selectFrom('audit_events')
      .select('id')
      .where('tenant_id', '=', other.tenantId)
      .executeTakeFirstOrThrow();
    for (const [method, url, payload] of [
      ['GET', `/api/v1/connected_accounts/${otherAccount}`, undefined],
      [
        'PUT',
        `/api/v1/connected_accounts/${otherAccount}`,
        { authorization: { type: 'api_token', api_token: tokens[0] } },
      ],
      ['DELETE', `/api/v1/connected_accounts/${otherAccount}`, undefined],
      ['DELETE', `/api/v1/connected_accounts/${otherAccount}/r2_access_key`, undefined],
      ['GET', `/console/api/audit/events/${foreignEvent.id}`, undefined],
    ] as const) {
      const res = await t.app.inject({ method, url, headers: h, ...(payload ? { payload } : {}) });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(404);
    }
    expect(await accountStatus(otherAccount)).toBe('ACTIVE');
    const rows = await t.app.inject({
      method: 'GET',
      url: `/console/api/audit/rows?identifier=${encodeURIComponent('olga@other.com')}`,
      headers: { cookie: s.cookie },
    });
    expect((rows.json() as { rows: unknown[] }).rows).toEqual([]);
    for (const [method, url] of [
      ['GET', '/admin/v1/tenants'],
      ['POST', `/admin/v1/tenants/${acme.tenantId}/api_keys`],
      ['GET', '/admin/v1/keys'],
      ['GET', '/admin/v1/audit/export?format=ndjson'],
      ['DELETE', '/admin/v1/sso/domains/acme.com'],
    ] as const) {
      const res = await t.app.inject({ method, url, headers: h });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(401);
    }
  });

  it('HELD: a session ends with its API key (revoked by the operator), at sign-out, and with a changed admin token', async () => {
    const issued = await t.app.inject({
      method: 'POST',
      url: `/admin/v1/tenants/${acme.tenantId}/api_keys`,
      headers: { authorization: `Bearer ${t.adminToken}` },
    });
    expect(issued.statusCode).toBe(201);
    const key = issued.json() as { api_key: string; api_key_id: string };
    t.secrets.add(key.api_key);
    const s = await signIn(t, { api_key: key.api_key });
    const get = (cookie: string, url = '/api/v1/connected_accounts') =>
      t.app.inject({ method: 'GET', url, headers: { cookie } });
    expect((await get(s.cookie)).statusCode).toBe(200);
    const keyId = key.api_key_id as string;
    const revoked = await t.app.inject({
      method: 'DELETE',
      url: `/admin/v1/tenants/${acme.tenantId}/api_keys/${keyId}`,
      headers: { authorization: `Bearer ${t.adminToken}` },
    });
    expect(revoked.statusCode).toBe(204);
    expect((await get(s.cookie)).statusCode).toBe(401);
    expect((await get(s.cookie, '/console/api/session')).statusCode).toBe(401);

    const s2 = await signIn(t, { api_key: acme.apiKey });
    const out = await t.app.inject({
      method: 'DELETE',
      url: '/console/api/session',
      headers: { cookie: s2.cookie, 'x-csrf-token': s2.csrf },
    });
    expect(out.statusCode).toBe(204);
    expect(String(out.headers['set-cookie'])).toMatch(/warden_console=;.*Expires=Thu, 01 Jan 1970/i);
    expect((await get(s2.cookie)).statusCode).toBe(401);

    // Another replica of the same database with another WARDEN_ADMIN_TOKEN: the rotated token.
    const op = await signIn(t, { admin_token: t.adminToken });
    expect((await get(op.cookie, '/admin/v1/tenants')).statusCode).toBe(200);
    const rotated = await startTestApp({ CLOUDFLARE_API_BASE: cf.url }, { replicaOf: t });
    try {
      const res = await rotated.app.inject({
        method: 'GET',
        url: '/admin/v1/tenants',
        headers: { cookie: op.cookie },
      });
      expect(res.statusCode).toBe(401);
    } finally {
      await rotated.close();
    }
  });

  it('HELD: every console page carries the CSP, no framing, no-store; no path redirects off-site', async () => {
    for (const [method, url] of [
      ['GET', '/console'],
      ['GET', '/console/'],
      ['GET', '/console/identities'],
      ['GET', '/console/a/b/c?next=https://evil.example'],
      ['GET', '/console//evil.example'],
      ['GET', '/console/%2F%2Fevil.example'],
      ['GET', '/console/api'],
      ['HEAD', '/console'],
      ['GET', '/console?sso_error=%3Cscript%3Ealert(1)%3C/script%3E'],
    ] as const) {
      const res = await t.app.inject({ method, url });
      const what = `${method} ${url}`;
      expect(res.statusCode >= 300 && res.statusCode < 400, `${what}: ${res.statusCode}`).toBe(false);
      expect(res.headers.location, what).toBeUndefined();
      expect(String(res.headers['content-security-policy']), what).toContain("frame-ancestors 'none'");
      expect(String(res.headers['content-security-policy']), what).toContain("script-src 'self'");
      expect(res.headers['x-frame-options'], what).toBe('DENY');
      expect(res.headers['x-content-type-options'], what).toBe('nosniff');
      expect(String(res.headers['cache-control']), what).toContain('no-store');
    }
  });

  it('HELD: no console answer holds a vaulted token or the API key', async () => {
    const s = await signIn(t, { api_key: acme.apiKey });
    const bodies: string[] = [s.res.body];
    const events = await t.container.db.kysely
      .selectFrom('audit_events')
      .select('id')
      .where('tenant_id', '=', acme.tenantId)
      .execute();
    for (const url of [
      '/console/api/session',
      '/console/api/overview',
      '/console/api/audit/rows?limit=1000',
      '/api/v1/connected_accounts',
      `/api/v1/connected_accounts/${acmeAccount}`,
      ...events.map((e) => `/console/api/audit/events/${e.id}`),
    ]) {
      const res = await t.app.inject({ method: 'GET', url, headers: { cookie: s.cookie } });
      expect(res.statusCode, url).toBe(200);
      bodies.push(res.body);
    }
    const all = bodies.join('\n');
    for (const secret of [...tokens, acme.apiKey, other.apiKey, t.adminToken, s.secret]) {
      expect(all.includes(secret), 'a secret in a console answer').toBe(false);
    }
  });

  it('HELD: assets: no path escapes the bundle, a missing one is refused, served nosniff and same-origin only', async () => {
    const js = readdirSync(path.join(CONSOLE_DIST, 'assets')).find((f) => f.endsWith('.js'))!;
    const asset = await t.app.inject({ method: 'GET', url: `/console/assets/${js}` });
    expect(asset.statusCode).toBe(200);
    expect(asset.headers['x-content-type-options']).toBe('nosniff');
    expect(asset.headers['cross-origin-resource-policy']).toBe('same-origin');
    for (const url of [
      '/console/assets/../../package.json',
      '/console/assets/%2e%2e/%2e%2e/package.json',
      '/console/assets/..%2f..%2fpackage.json',
      '/console/assets/%252e%252e%252f%252e%252e%252fpackage.json',
      '/console/assets/..%5c..%5cpackage.json',
      '/console/assets/.build-stamp',
      '/console/assets/../.build-stamp',
      '/console/assets/%2e%2e/index.html',
      '/console/assets/nothing-here.js',
    ]) {
      const res = await t.app.inject({ method: 'GET', url });
      expect(res.body, url).not.toContain('"name": "@warden/console"');
      expect(res.body, url).not.toMatch(/^[0-9a-f]{64}$/);
      if (res.statusCode === 200) {
        // Only the page itself may answer (with its headers), never a file outside assets/.
        expect(String(res.headers['content-type']), url).toContain('text/html');
        expect(String(res.headers['content-security-policy']), url).toContain("frame-ancestors 'none'");
      } else {
        expect(res.statusCode, url).toBeGreaterThanOrEqual(400);
      }
    }
  });
});

describe('attack29: the cookie behind an https PUBLIC_URL', () => {
  async function cookieFor(publicUrl: string) {
    const t = await startTestApp({ PUBLIC_URL: publicUrl });
    try {
      const res = await consoleKeySignIn(t);
      return { raw: String(res.headers['set-cookie']), cookies: res.cookies };
    } finally {
      await t.close();
    }
  }

  function expectHostOnlySecure(raw: string, cookies: Array<{ name: string }>) {
    expect(cookies.map((c) => c.name)).toEqual(['__Host-warden_console']);
    expect(raw).toMatch(/;\s*Secure/i);
    expect(raw).toMatch(/;\s*HttpOnly/i);
    expect(raw).toMatch(/;\s*SameSite=Strict/i);
    expect(raw).toMatch(/;\s*Path=\/(;|$)/i);
    expect(raw).not.toMatch(/;\s*Domain=/i);
  }

  it('HELD: https://… gives a __Host- cookie: Secure, HttpOnly, SameSite=Strict, Path=/, no Domain', async () => {
    const { raw, cookies } = await cookieFor('https://warden.example.test');
    expectHostOnlySecure(raw, cookies);
  });

  it('an https PUBLIC_URL spelled with an upper-case scheme (HTTPS://, a valid URL) still gives a Secure __Host- cookie', async () => {
    const { raw, cookies } = await cookieFor('HTTPS://warden.example.test');
    expectHostOnlySecure(raw, cookies);
  });
});
