import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startDomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { DomainProofFixture } from './test-support/sso-domain-proof.ts';

/**
 * Attack on DELETE /admin/v1/sso/domains/:domain, as an outsider and as a hostile tenant.
 * Each test asserts the safe behaviour.
 */
type Tenant = { tenantId: string; apiKey: string };
type Events = { events: Array<{ action: string; caller: { type: string }; details: unknown }> };

async function releasedEvents(f: OAuthFixture, apiKey: string) {
  const res = await f.t.app.inject({
    method: 'GET',
    url: '/api/v1/audit/events?kind=lifecycle&page_size=100',
    headers: { authorization: `Bearer ${apiKey}` },
  });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as Events).events.filter((e) => e.action === 'sso.domain_released');
}

describe('release attack (DNS proof mode)', () => {
  let fx: DomainProofFixture;
  let f: OAuthFixture;
  let victim: Tenant;
  let mallory: Tenant;

  async function proveFor(t: Tenant, domain: string, others: string[] = []) {
    const put = await fx.putSso(t.apiKey, [domain, ...others]);
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const rec = put.body.sso!.domains.find((d) => d.domain === domain)!.txt_record!;
    fx.dns.setTxt(rec.name, [rec.value]);
    const v = await fx.verify(t.apiKey, domain);
    expect(v.status, JSON.stringify(v.body)).toBe(200);
    return rec.value;
  }

  const victimStillHolds = async () =>
    expect((await fx.domainOf(victim.apiKey, 'victim.example'))?.status).toBe('verified');

  beforeAll(async () => {
    fx = await startDomainProofFixture();
    f = fx.f;
    victim = await f.t.createTenant('Victim');
    mallory = await f.t.createTenant('Mallory');
    await proveFor(victim, 'victim.example');
    expect((await fx.putSso(mallory.apiKey, ['mallory.example'])).status).toBe(200);
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('no admin token: tenant key, MCP token, tenant console session, no/malformed header, query token', async () => {
    const url = '/admin/v1/sso/domains/victim.example';
    const admin = f.t.adminToken;
    const headerCases: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${mallory.apiKey}` },
      { authorization: `Bearer ${victim.apiKey}` },
      { authorization: '' },
      { authorization: 'Bearer' },
      { authorization: 'Bearer ' },
      { authorization: `Basic ${Buffer.from(`admin:${admin}`).toString('base64')}` },
      { authorization: `Basic ${admin}` },
      { authorization: `Bearer ${admin} extra` },
      { authorization: `Bearer ${admin.slice(0, -1)}` },
      { authorization: `Bearer ${admin}x` },
      { authorization: `Bearer ${admin.toUpperCase()}` },
      { authorization: `Token ${admin}` },
      { authorization: admin },
      { 'x-admin-token': admin },
      { 'x-warden-admin-token': admin },
      { cookie: `warden_admin=${admin}` },
    ];
    for (const headers of headerCases) {
      const res = await f.t.app.inject({ method: 'DELETE', url, headers });
      expect(res.statusCode, `${JSON.stringify(Object.keys(headers))} -> ${res.body}`).toBe(401);
      expect(res.body).not.toContain(victim.tenantId);
    }
    for (const q of ['token', 'access_token', 'admin_token', 'authorization']) {
      // A deliberately wrong value: a real admin token in a URL would land in access logs.
      const res = await f.t.app.inject({ method: 'DELETE', url: `${url}?${q}=${mallory.apiKey}` });
      expect(res.statusCode, `${q} -> ${res.body}`).toBe(401);
    }

    // MCP access token of a tenant user.
    const { url: authUrl, verifier } = f.authorization();
    const back = await f.linkSignIn(f.userAgent(), authUrl, ALICE.email);
    const code = new URL(back.url).searchParams.get('code');
    expect(code, back.url).toBeTruthy();
    const tok = await f.token({
      grant_type: 'authorization_code',
      code: code!,
      code_verifier: verifier,
      redirect_uri: f.callbackUrl,
      resource: f.mcpUrl,
    });
    expect(tok.status).toBe(200);
    const access = (tok.body as { access_token: string }).access_token;
    f.t.secrets.add(access);
    const viaMcp = await f.t.app.inject({
      method: 'DELETE',
      url,
      headers: { authorization: `Bearer ${access}` },
    });
    expect(viaMcp.statusCode, viaMcp.body).toBe(401);

    // Tenant console session (with its CSRF token).
    const session = await f.t.app.inject({
      method: 'POST',
      url: '/console/api/session',
      payload: { api_key: mallory.apiKey },
    });
    expect(session.statusCode, session.body).toBe(201);
    const cookie = session.cookies.find((c) => c.name.endsWith('warden_console'))!;
    const csrf = (session.json() as { session: { csrf_token: string } }).session.csrf_token;
    const viaConsole = await f.t.app.inject({
      method: 'DELETE',
      url,
      headers: { cookie: `${cookie.name}=${cookie.value}`, 'x-csrf-token': csrf },
    });
    expect(viaConsole.statusCode, viaConsole.body).toBe(401);

    await victimStillHolds();
  });

  it('operator console session without its CSRF token is refused', async () => {
    const session = await f.t.app.inject({
      method: 'POST',
      url: '/console/api/session',
      payload: { admin_token: f.t.adminToken },
    });
    expect(session.statusCode, session.body).toBe(201);
    const cookie = session.cookies.find((c) => c.name.endsWith('warden_console'))!;
    const res = await f.t.app.inject({
      method: 'DELETE',
      url: '/admin/v1/sso/domains/victim.example',
      headers: { cookie: `${cookie.name}=${cookie.value}` },
    });
    expect(res.statusCode, res.body).toBe(403);
    await victimStillHolds();
  });

  it('other methods and path tricks never release (with or without the admin token)', async () => {
    const paths = [
      '/admin/v1/sso/domains/victim.example',
      '/admin/v1/sso/domains/victim.example/',
      '//admin/v1/sso/domains/victim.example',
      '/admin//v1/sso/domains/victim.example',
      '/admin/v1/sso/domains//victim.example',
      '/admin/v1/sso/domains/%2e%2e/domains/victim.example',
      '/admin/v1/sso/%2e/domains/victim.example',
      '/admin/v1/sso/domains%2Fvictim.example',
      '/admin%2Fv1%2Fsso%2Fdomains%2Fvictim.example',
      '/ADMIN/V1/SSO/DOMAINS/victim.example',
      '/Admin/v1/sso/domains/victim.example',
      '/api/v1/../../admin/v1/sso/domains/victim.example',
      '/api/v1/%2e%2e/%2e%2e/admin/v1/sso/domains/victim.example',
      '/console/api/../../admin/v1/sso/domains/victim.example',
      '/admin/v1/sso/domains/victim.example;x',
      '/admin/v1/sso/domains/victim.example%00',
    ];
    for (const path of paths) {
      const res = await f.t.app.inject({
        method: 'DELETE',
        url: path,
        headers: { authorization: `Bearer ${mallory.apiKey}` },
      });
      expect(res.statusCode, `${path} -> ${res.body}`).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, `${path} -> ${res.body}`).toBeLessThan(500);
    }
    await victimStillHolds();
    for (const method of ['HEAD', 'OPTIONS', 'GET', 'POST', 'PUT', 'PATCH'] as const) {
      for (const auth of [null, mallory.apiKey, f.t.adminToken]) {
        const res = await f.t.app.inject({
          method,
          url: '/admin/v1/sso/domains/victim.example',
          headers: auth ? { authorization: `Bearer ${auth}` } : {},
        });
        expect(res.statusCode, `${method} -> ${res.body}`).not.toBe(200);
        expect(res.statusCode, `${method} -> ${res.body}`).toBeLessThan(500);
      }
    }
    await victimStillHolds();
  });

  it('odd domain strings: 4xx never 5xx; uppercase / padded release the lowercase claim', async () => {
    const admin = { authorization: `Bearer ${f.t.adminToken}` };
    const odd = [
      'ex%C3%A4mple.com',
      '%E2%80%AEmoc.elpmaxe',
      'xn--exmple-cua.com%C3%A4',
      `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`,
      `${'a.'.repeat(200)}com`,
      'a'.repeat(5000),
      'victim.example.',
      '.victim.example',
      'victim..example',
      '*.victim.example',
      '%25.example',
      '_.example',
      'victim.example%00',
      "victim.example'--",
      'victim.example%0d%0aX-Injected:%201',
      '%F0%9F%98%80.com',
      '%FF%FE',
      '%',
      '%%',
      '-',
      '1.2.3.4',
      '[::1]',
    ];
    for (const d of odd) {
      const res = await f.t.app.inject({
        method: 'DELETE',
        url: `/admin/v1/sso/domains/${d}`,
        headers: admin,
      });
      expect(res.statusCode, `${d.slice(0, 60)} -> ${res.body.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, `${d.slice(0, 60)} -> ${res.body.slice(0, 200)}`).toBeLessThan(500);
    }
    await victimStillHolds();

    const upper = await f.t.app.inject({
      method: 'DELETE',
      url: '/admin/v1/sso/domains/VICTIM.Example',
      headers: admin,
    });
    expect(upper.statusCode, upper.body).toBe(200);
    expect(upper.json()).toEqual({ domain: 'victim.example', released_from: [victim.tenantId] });
    expect((await fx.domainOf(victim.apiKey, 'victim.example'))?.status).toBe('pending');

    await proveFor(victim, 'victim.example');
    const padded = await f.t.app.inject({
      method: 'DELETE',
      url: '/admin/v1/sso/domains/%20victim.example%20',
      headers: admin,
    });
    expect(padded.statusCode, padded.body).toBe(200);
    expect(padded.json()).toEqual({ domain: 'victim.example', released_from: [victim.tenantId] });
    await proveFor(victim, 'victim.example');
  });

  it('release with several claimants: audit in each affected tenant only, new distinct tokens, nothing leaked to tenants', async () => {
    const [a, b, bystander] = [
      await f.t.createTenant('A'),
      await f.t.createTenant('B'),
      await f.t.createTenant('Bystander'),
    ];
    const putA = await fx.putSso(a.apiKey, ['shared.example']);
    const putB = await fx.putSso(b.apiKey, ['shared.example']);
    expect((await fx.putSso(bystander.apiKey, ['bystander.example'])).status).toBe(200);
    const oldA = putA.body.sso!.domains[0]!.txt_record!.value;
    const oldB = putB.body.sso!.domains[0]!.txt_record!.value;

    const res = await f.t.app.inject({
      method: 'DELETE',
      url: '/admin/v1/sso/domains/shared.example',
      headers: { authorization: `Bearer ${f.t.adminToken}` },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ domain: 'shared.example', released_from: [a.tenantId, b.tenantId].sort() });
    // The operator's answer names tenants, never tokens.
    expect(res.body).not.toContain(oldA);
    expect(res.body).not.toContain(oldB);

    const [viewA, viewB] = await Promise.all([
      fx.call(a.apiKey, 'GET', '/api/v1/mcp/sso'),
      fx.call(b.apiKey, 'GET', '/api/v1/mcp/sso'),
    ]);
    const newA = viewA.body.sso!.domains.find((d) => d.domain === 'shared.example')!;
    const newB = viewB.body.sso!.domains.find((d) => d.domain === 'shared.example')!;
    expect(newA.status).toBe('pending');
    expect(newB.status).toBe('pending');
    expect(new Set([oldA, oldB, newA.txt_record!.value, newB.txt_record!.value]).size).toBe(4);
    // A tenant's view carries nothing of the other's.
    for (const s of [b.tenantId, oldB, newB.txt_record!.value]) expect(viewA.raw).not.toContain(s);
    for (const s of [a.tenantId, oldA, newA.txt_record!.value]) expect(viewB.raw).not.toContain(s);

    for (const t of [a, b]) {
      const ev = await releasedEvents(f, t.apiKey);
      expect(ev).toEqual([
        expect.objectContaining({
          caller: expect.objectContaining({ type: 'admin' }),
          details: { domain: 'shared.example', was: 'pending' },
        }),
      ]);
      expect(JSON.stringify(ev)).not.toContain(t === a ? b.tenantId : a.tenantId);
    }
    expect(await releasedEvents(f, bystander.apiKey)).toEqual([]);
    // The victim's trail holds only its own two releases of victim.example.
    const victimEv = await releasedEvents(f, victim.apiKey);
    expect(victimEv.map((e) => (e.details as { domain: string }).domain)).toEqual([
      'victim.example',
      'victim.example',
    ]);

    // Old tokens prove nothing any more.
    fx.dns.setTxt('_warden-challenge.shared.example', [oldA, oldB]);
    expect((await fx.verify(a.apiKey, 'shared.example')).status).toBe(400);
    expect((await fx.verify(b.apiKey, 'shared.example')).status).toBe(400);
  });

  it('release racing a verify with the old token: no 5xx, old token never proves the new claim, at most one verified', async () => {
    const racer = await f.t.createTenant('Racer');
    const rival = await f.t.createTenant('Rival');
    for (let round = 0; round < 6; round++) {
      const domain = `race${round}.example`;
      const put = await fx.putSso(racer.apiKey, [domain]);
      expect(put.status).toBe(200);
      expect((await fx.putSso(rival.apiKey, [domain])).status).toBe(200);
      const old = put.body.sso!.domains.find((d) => d.domain === domain)!.txt_record!;
      fx.dns.setTxt(old.name, [old.value]);
      const [verify, release] = await Promise.all([
        fx.verify(racer.apiKey, domain),
        f.t.app.inject({
          method: 'DELETE',
          url: `/admin/v1/sso/domains/${domain}`,
          headers: { authorization: `Bearer ${f.t.adminToken}` },
        }),
      ]);
      expect(verify.status, `round ${round} verify ${verify.raw}`).toBeLessThan(500);
      expect(release.statusCode, `round ${round} release ${release.body}`).toBe(200);
      const [mine, theirs] = await Promise.all([
        fx.domainOf(racer.apiKey, domain),
        fx.domainOf(rival.apiKey, domain),
      ]);
      // Release ran (before or after the verify): both claims pending, with new tokens.
      expect(mine?.status, `round ${round}`).toBe('pending');
      expect(theirs?.status, `round ${round}`).toBe('pending');
      expect(mine?.txt_record?.value).not.toBe(old.value);
      // The old record still published proves nothing.
      const again = await fx.verify(racer.apiKey, domain);
      expect(again.status, `round ${round} ${again.raw}`).toBe(400);
      expect((await fx.domainOf(racer.apiKey, domain))?.status).toBe('pending');
      const verified = [mine, theirs].filter((v) => v?.status === 'verified');
      expect(verified.length).toBeLessThanOrEqual(1);
      expect((await fx.signInGoesTo(`dev@${domain}`)).url.startsWith(f.idp.issuer)).toBe(false);
    }
  });
});

describe('release attack (SSO_DOMAIN_PROOF=none)', () => {
  let f: OAuthFixture;
  beforeAll(async () => {
    f = await startOAuthFixture({ SSO_DOMAIN_PROOF: 'none' });
  });
  afterAll(async () => {
    await f?.close();
  });

  it('releases the verified claim, writes the record, gives no pending claim, and sign-in stops routing', async () => {
    const before = await f.userAgent().get(f.authorization().url.href);
    expect(before.status).toBe(200);
    const goes = async (email: string) => {
      const ua = f.userAgent();
      const login = await ua.get(f.authorization().url.href);
      return ua.submit(login, { email }, '/sso');
    };
    expect((await goes(ALICE.email)).url.startsWith(f.idp.issuer)).toBe(true);

    const noAuth = await f.t.app.inject({ method: 'DELETE', url: '/admin/v1/sso/domains/acme.com' });
    expect(noAuth.statusCode).toBe(401);
    const tenantKey = await f.t.app.inject({
      method: 'DELETE',
      url: '/admin/v1/sso/domains/acme.com',
      headers: { authorization: `Bearer ${f.tenant.apiKey}` },
    });
    expect(tenantKey.statusCode).toBe(401);

    const res = await f.t.app.inject({
      method: 'DELETE',
      url: '/admin/v1/sso/domains/ACME.com',
      headers: { authorization: `Bearer ${f.t.adminToken}` },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ domain: 'acme.com', released_from: [f.tenant.tenantId] });

    const sso = await f.t.app.inject({
      method: 'GET',
      url: '/api/v1/mcp/sso',
      headers: { authorization: `Bearer ${f.tenant.apiKey}` },
    });
    expect(sso.statusCode, sso.body).toBe(200);
    const view = (
      sso.json() as { sso: { domains: Array<{ domain: string; status: string; txt_record: unknown }> } }
    ).sso.domains.find((d) => d.domain === 'acme.com');
    expect(view?.status).not.toBe('verified');
    expect(view?.txt_record ?? null).toBeNull();
    expect((await goes(ALICE.email)).url.startsWith(f.idp.issuer)).toBe(false);

    expect(await releasedEvents(f, f.tenant.apiKey)).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'admin' }),
        details: { domain: 'acme.com', was: 'verified' },
      }),
    ]);
    const twice = await f.t.app.inject({
      method: 'DELETE',
      url: '/admin/v1/sso/domains/acme.com',
      headers: { authorization: `Bearer ${f.t.adminToken}` },
    });
    expect(twice.statusCode).toBe(404);
  });
});
