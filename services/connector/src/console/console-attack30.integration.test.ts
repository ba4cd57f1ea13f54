import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.ts';
import { SPEC_PATH } from '../test-support/paths.ts';
import { consoleKeySignIn, startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

/**
 * attack30: the attack29 fixes to the console as seen from outside: "every answer under /api/v1,
 * /admin/v1 and /console/api carries Cache-Control: no-store", the normalized PUBLIC_URL, and the
 * two new /metrics histograms. Each test asserts the secure behaviour; those named HELD passed
 * when written.
 */

function noStore(res: LightMyRequestResponse): boolean {
  return /\bno-store\b/.test(String(res.headers['cache-control'] ?? ''));
}

describe('attack30: Cache-Control: no-store under /api/v1, /admin/v1 and /console/api', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let acme: { tenantId: string; apiKey: string };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      BODY_LIMIT_BYTES: '1024',
      OAUTH_SIGN_IN_LIMIT: '1/600',
    });
    acme = await t.createTenant('Acme');
    const user = cf.state.createUser({ email: 'alice@acme.com' });
    cf.state.createAccount({ name: 'Acme', members: [user.id] });
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['#zone:read', 'com.cloudflare.api.user.read'],
    });
    t.secrets.add(token.value);
    await t.connect(acme.apiKey, 'alice@acme.com', token.value);
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  it('a tenant answer reached through a percent-encoded spelling of the path (/%61pi/v1/…) is no-store too', async () => {
    const auth = { authorization: `Bearer ${acme.apiKey}` };
    const seen: string[] = [];
    for (const url of [
      '/%61pi/v1/connected_accounts',
      '/api/%761/connected_accounts',
      '/%61dmin/v1/tenants',
      '/api/v1/%63onnected_accounts',
    ]) {
      const res = await t.app.inject({
        method: 'GET',
        url,
        headers: url.includes('dmin') ? { authorization: `Bearer ${t.adminToken}` } : auth,
      });
      if (res.statusCode < 300 && !noStore(res))
        seen.push(
          `${url} -> ${res.statusCode} cache-control: ${res.headers['cache-control'] ?? '(none)'} body: ${res.body.slice(0, 80)}`,
        );
    }
    expect(seen).toEqual([]);
  });

  it('router-level refusals under /api/v1 (bad percent-encoding, over-long parameter) are no-store too', async () => {
    const seen: string[] = [];
    for (const url of [
      '/api/v1/connected_accounts/%zz',
      `/api/v1/connected_accounts/${'a'.repeat(5000)}`,
      '/api/v1/identities/%E0%A4%A/policy',
    ]) {
      const res = await t.app.inject({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${acme.apiKey}` },
      });
      if (!noStore(res))
        seen.push(
          `${url.slice(0, 60)} -> ${res.statusCode} cache-control: ${res.headers['cache-control'] ?? '(none)'}`,
        );
    }
    expect(seen).toEqual([]);
  });

  it('HELD: error answers (401, 404, 405, 413, 415, 400) and HEAD, trailing slash and query variants are no-store', async () => {
    const auth = { authorization: `Bearer ${acme.apiKey}` };
    const cases: Array<{
      what: string;
      method: string;
      url: string;
      headers?: Record<string, string>;
      payload?: string;
    }> = [
      { what: '401 no auth', method: 'GET', url: '/api/v1/connected_accounts' },
      {
        what: '401 bad key',
        method: 'GET',
        url: '/api/v1/connected_accounts',
        headers: { authorization: 'Bearer nope' },
      },
      { what: '401 admin', method: 'GET', url: '/admin/v1/tenants', headers: auth },
      { what: '404 no route', method: 'GET', url: '/api/v1/nothing-here', headers: auth },
      { what: '404 object', method: 'GET', url: '/api/v1/connected_accounts/ca_nothing', headers: auth },
      { what: '405', method: 'PATCH', url: '/api/v1/connected_accounts', headers: auth },
      {
        what: '413',
        method: 'POST',
        url: '/api/v1/connected_accounts',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: JSON.stringify({ identifier: 'x', pad: 'a'.repeat(4096) }),
      },
      {
        what: '415',
        method: 'POST',
        url: '/api/v1/connected_accounts',
        headers: { ...auth, 'content-type': 'text/plain' },
        payload: 'x',
      },
      {
        what: '400 bad json',
        method: 'POST',
        url: '/api/v1/connected_accounts',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: '{',
      },
      { what: 'HEAD', method: 'HEAD', url: '/api/v1/connected_accounts', headers: auth },
      { what: 'trailing slash', method: 'GET', url: '/api/v1/connected_accounts/', headers: auth },
      {
        what: 'query',
        method: 'GET',
        url: '/api/v1/connected_accounts?identifier=alice%40acme.com',
        headers: auth,
      },
      { what: 'console 401', method: 'GET', url: '/console/api/overview' },
      { what: 'console session 401', method: 'GET', url: '/console/api/session' },
      { what: 'export', method: 'GET', url: '/api/v1/audit/export?format=ndjson', headers: auth },
      { what: 'export cef', method: 'GET', url: '/api/v1/audit/export?format=cef', headers: auth },
      {
        what: 'admin export',
        method: 'GET',
        url: '/admin/v1/audit/export?format=ndjson',
        headers: { authorization: `Bearer ${t.adminToken}` },
      },
    ];
    for (let i = 0; i < 3; i++)
      cases.push({
        what: `sso start ${i}`,
        method: 'POST',
        url: '/console/api/sso',
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ email: 'dana@nowhere.example' }),
      });
    const missing: string[] = [];
    const statuses: string[] = [];
    for (const c of cases) {
      const res = await t.app.inject({
        method: c.method as 'GET',
        url: c.url,
        headers: c.headers ?? {},
        ...(c.payload !== undefined ? { payload: c.payload } : {}),
      });
      statuses.push(`${c.what}=${res.statusCode}`);
      if (!noStore(res))
        missing.push(
          `${c.what}: ${res.statusCode} cache-control: ${res.headers['cache-control'] ?? '(none)'}`,
        );
    }
    console.log(statuses.join(' '));
    expect(missing).toEqual([]);
  });

  it('HELD: /metrics: a tenant cannot put its own strings into label values (execute_tool with a made-up tool_name) nor grow their number', async () => {
    const names = Array.from({ length: 5 }, (_, i) => `acme-secret-${i}-${acme.tenantId}`);
    for (const tool_name of names) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: { authorization: `Bearer ${acme.apiKey}` },
        payload: { tool_name, identifier: 'alice@acme.com', params: { code: 'async () => 1' } },
      });
      expect(res.statusCode, res.body).toBeLessThan(500);
    }
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    const leaked = metrics.body.split('\n').filter((l) => l.includes('acme-secret-'));
    expect(leaked).toEqual([]);
  });

  it('HELD: /metrics: the new histograms carry only fixed label values, never a tenant, identifier, path, token or secret', async () => {
    // Some upstream answers of each kind: 2xx and 4xx from Cloudflare, through two tenants.
    await t.execute(acme.apiKey, 'alice@acme.com', 'async () => cloudflare.zones.list()');
    await t.execute(
      acme.apiKey,
      'alice@acme.com',
      "async () => { try { await cloudflare.request({ method: 'GET', path: '/zones/00000000000000000000000000000000' }) } catch {} return 1 }",
    );
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    const lines = res.body
      .split('\n')
      .filter((l) => /^warden_(upstream_request|audit_append)_duration_seconds/.test(l));
    expect(lines.length).toBeGreaterThan(0);
    const labels = new Set<string>();
    for (const line of lines) {
      for (const m of line.matchAll(/(\w+)="([^"]*)"/g)) if (m[1] !== 'le') labels.add(`${m[1]}=${m[2]}`);
    }
    for (const l of labels)
      expect(l).toMatch(/^(status=(\dxx|429|no_answer|other)|outcome=(committed|failed))$/);
    expect([...labels]).toContain('outcome=committed');
    expect([...labels].some((l) => l.startsWith('status='))).toBe(true);
    for (const secret of [acme.apiKey, acme.tenantId, 'alice@acme.com', ...t.secrets])
      expect(res.body.includes(secret), 'a tenant value in /metrics').toBe(false);
  });
});

describe('attack30: PUBLIC_URL spellings', () => {
  it('PUBLIC_URL other than http(s) (a typo such as htps://, or javascript:, ftp:) is refused at start-up, not served as a plain-cookie origin', () => {
    const accepted: string[] = [];
    for (const raw of [
      'htps://warden.example.test',
      'javascript:alert(1)',
      'ftp://warden.example.test',
      'wss://warden.example.test',
    ]) {
      try {
        accepted.push(
          `${raw} -> ${loadConfig({ PUBLIC_URL: raw, DATA_DIR: '/tmp/attack30-data' }).publicUrl}`,
        );
      } catch {
        // refused: the operator is told at start-up
      }
    }
    expect(accepted).toEqual([]);
  });

  it('HELD: odd but valid https spellings read as one origin; the Secure __Host- cookie and the OAuth metadata follow it', async () => {
    for (const [raw, expected] of [
      ['HTTPS://Warden.Example.Test', 'https://warden.example.test'],
      ['https://warden.example.test:443/', 'https://warden.example.test'],
      ['  https://warden.example.test//  ', 'https://warden.example.test'],
      ['https://warden.example.test/?x=1#y', 'https://warden.example.test'],
      ['https://user:pw@warden.example.test', 'https://warden.example.test'],
      ['hTTpS:warden.example.test', 'https://warden.example.test'],
    ] as const) {
      let cfg;
      try {
        cfg = loadConfig({ PUBLIC_URL: raw, DATA_DIR: '/tmp/attack30-data' });
      } catch {
        continue; // refused at start-up is fine too
      }
      expect(cfg.publicUrl, raw).toBe(expected);
    }
    const t = await startTestApp({ PUBLIC_URL: 'HTTPS://Warden.Example.Test:443/' });
    try {
      const res = await consoleKeySignIn(t);
      expect(res.cookies.map((c) => c.name)).toEqual(['__Host-warden_console']);
      expect(String(res.headers['set-cookie'])).toMatch(/;\s*Secure/i);
      const prm = await t.app.inject({ method: 'GET', url: '/.well-known/oauth-protected-resource/mcp' });
      if (prm.statusCode === 200) {
        const body = prm.json() as { resource: string; authorization_servers?: string[] };
        expect(body.resource).toBe('https://warden.example.test/mcp');
        for (const s of body.authorization_servers ?? [])
          expect(s.startsWith('https://warden.example.test')).toBe(true);
      }
      const as = await t.app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' });
      if (as.statusCode === 200) {
        const meta = as.json() as Record<string, unknown>;
        for (const [k, v] of Object.entries(meta))
          if (typeof v === 'string' && /^https?:/i.test(v))
            expect(
              v === 'https://warden.example.test' || v.startsWith('https://warden.example.test/'),
              `${k}: ${v}`,
            ).toBe(true);
      }
      const challenge = await t.app.inject({ method: 'POST', url: '/mcp', payload: {} });
      expect(String(challenge.headers['www-authenticate'] ?? '')).not.toMatch(/HTTPS:|Warden\.Example|:443/);
    } finally {
      await t.close();
    }
  });
});
