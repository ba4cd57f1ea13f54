import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startTestIdp } from './test-support/test-idp.ts';
import type { TestIdp } from './test-support/test-idp.ts';

interface SsoAnswer {
  sso?: { allowed_email_domains: string[] };
  error?: { code: string; field?: string; message: string };
}

/**
 * The sign-in page sends an engineer to the identity provider of the organization whose SSO
 * lists their email domain. Another organization listing that domain must not receive them.
 */
describe('an email domain signs in to one organization only', () => {
  let f: OAuthFixture;
  let evilIdp: TestIdp;
  let evil: { tenantId: string; apiKey: string };

  beforeAll(async () => {
    f = await startOAuthFixture();
    // The attacker's own identity provider, which would gladly "sign in" anyone.
    evilIdp = await startTestIdp({
      redirectUri: `${f.base}/oauth/sso/callback`,
      users: [{ email: ALICE.email, password: 'attacker-knows-this' }],
    });
    f.t.secrets.add(evilIdp.clientSecret);
    evil = await f.t.createTenant('Acme');
  });
  afterAll(async () => {
    await evilIdp.close();
    await f.close();
  });

  async function putSso(apiKey: string, domains: string[], idp = evilIdp) {
    const res = await f.t.app.inject({
      method: 'PUT',
      url: '/api/v1/mcp/sso',
      headers: { authorization: `Bearer ${apiKey}` },
      payload: {
        issuer: idp.issuer,
        client_id: idp.clientId,
        client_secret: idp.clientSecret,
        allowed_email_domains: domains,
      },
    });
    return { status: res.statusCode, body: res.json() as SsoAnswer };
  }

  async function getSso(apiKey: string) {
    const res = await f.t.app.inject({
      method: 'GET',
      url: '/api/v1/mcp/sso',
      headers: { authorization: `Bearer ${apiKey}` },
    });
    return { status: res.statusCode, body: res.json() as SsoAnswer };
  }

  const authorizationUrl = (): URL => f.authorization().url;

  it('refuses a domain another organization listed first with 409 naming the field, writing nothing', async () => {
    const first = await putSso(evil.apiKey, ['evil.example', 'ACME.com']);
    expect(first.status, JSON.stringify(first.body)).toBe(409);
    expect(first.body.error).toMatchObject({ code: 'conflict', field: 'allowed_email_domains' });
    expect(first.body.error?.message).toContain('"acme.com"');
    expect(first.body.error?.message).not.toContain(f.tenant.tenantId);
    expect((await getSso(evil.apiKey)).status).toBe(404);

    // With domains of its own it may configure SSO; adding Acme's later is refused the same way.
    expect((await putSso(evil.apiKey, ['evil.example'])).status).toBe(200);
    const later = await putSso(evil.apiKey, ['evil.example', 'acme.com']);
    expect(later.status).toBe(409);
    expect((await getSso(evil.apiKey)).body.sso?.allowed_email_domains).toEqual(['evil.example']);

    // The owner re-saving its configuration keeps its domain.
    const again = await putSso(f.tenant.apiKey, ['acme.com'], f.idp);
    expect(again.status, JSON.stringify(again.body)).toBe(200);

    // A subdomain of a held domain routes the owner's engineers too (bob@eng.acme.com): refused,
    // as is a parent of one another tenant holds.
    const sub = await putSso(evil.apiKey, ['evil.example', 'eng.acme.com']);
    expect(sub.status, JSON.stringify(sub.body)).toBe(409);
    expect(sub.body.error?.message).toContain('"acme.com"');
    expect((await putSso(evil.apiKey, ['evil.example', 'eu.shared.example'])).status).toBe(200);
    const parent = await putSso(f.tenant.apiKey, ['acme.com', 'shared.example'], f.idp);
    expect(parent.status, JSON.stringify(parent.body)).toBe(409);
    expect(parent.body.error?.message).toContain('"eu.shared.example"');
    expect((await getSso(f.tenant.apiKey)).body.sso?.allowed_email_domains).toEqual(['acme.com']);
    expect((await putSso(evil.apiKey, ['evil.example'])).status).toBe(200);
  });

  it('a public suffix belongs to no organization: refused with 400 naming the field, writing nothing', async () => {
    // Held first come (this deployment asks no DNS proof), co.uk would keep every other
    // organization from listing its own domain under it.
    for (const suffix of ['co.uk', 'GitHub.io', 'com.au']) {
      const squat = await putSso(evil.apiKey, ['evil.example', suffix]);
      expect(squat.status, JSON.stringify(squat.body)).toBe(400);
      expect(squat.body.error).toMatchObject({ code: 'invalid_request', field: 'allowed_email_domains' });
      expect(squat.body.error?.message).toContain(`"${suffix.toLowerCase()}" is a public suffix`);
      expect(squat.body.error?.message).toContain(`"acme.${suffix.toLowerCase()}"`);
    }
    expect((await getSso(evil.apiKey)).body.sso?.allowed_email_domains).toEqual(['evil.example']);
    // A domain under one is an organization's own.
    const other = await f.t.createTenant('Acme UK');
    const own = await putSso(other.apiKey, ['acme.co.uk', 'acme.github.io'], f.idp);
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    expect((await putSso(evil.apiKey, ['evil.example', 'evil.co.uk'])).status).toBe(200);
    expect((await putSso(evil.apiKey, ['evil.example'])).status).toBe(200);
  });

  it('a pending claim left from the DNS proof goes when another organization lists the domain here, on its own trail', async () => {
    // Claimed while the deployment asked for proof, never proven: it routes nobody and can never count now.
    const left = await f.t.createTenant('Left pending');
    expect((await putSso(left.apiKey, ['left.example'])).status).toBe(200);
    const db = f.t.container.db.kysely;
    await db
      .insertInto('tenant_sso_domains')
      .values({
        domain: 'shared-left.example',
        tenant_id: left.tenantId,
        verified_at: null,
        proof_token: 'tok',
      })
      .execute();
    const lister = await f.t.createTenant('Lister');
    expect((await putSso(lister.apiKey, ['eng.shared-left.example'])).status).toBe(200);
    const claims = await db
      .selectFrom('tenant_sso_domains')
      .select('domain')
      .where('tenant_id', '=', left.tenantId)
      .orderBy('domain')
      .execute();
    expect(claims.map((c) => c.domain)).toEqual(['left.example']);
    const events = await f.t.app.inject({
      method: 'GET',
      url: '/api/v1/audit/events?kind=lifecycle&page_size=100',
      headers: { authorization: `Bearer ${left.apiKey}` },
    });
    const lost = (
      events.json() as { events: Array<{ action: string; caller: { type: string }; details: unknown }> }
    ).events.filter((e) => e.action === 'sso.domain_lost');
    expect(lost).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'system' }),
        details: {
          domain: 'shared-left.example',
          reason: 'listed_by_another_organization',
          proven: 'eng.shared-left.example',
        },
      }),
    ]);
  });

  it("an Acme engineer's email still reaches Acme's identity provider, never the other tenant's", async () => {
    const ua = f.userAgent();
    const login = await ua.get(authorizationUrl().href);
    expect(login.body).not.toContain('name="tenant_id"');
    const idpLogin = await ua.submit(login, { email: ALICE.email }, '/sso');
    expect(idpLogin.url.startsWith(f.idp.issuer), idpLogin.url).toBe(true);
    expect(idpLogin.url.startsWith(evilIdp.issuer)).toBe(false);
    // A tenant_id in the form (the old organization chooser) is ignored.
    const forced = await f.userAgent().get(authorizationUrl().href);
    const stillAcme = await f
      .userAgent()
      .submit(forced, { email: ALICE.email, tenant_id: evil.tenantId }, '/sso');
    expect(stillAcme.url.startsWith(evilIdp.issuer)).toBe(false);
  });

  it('claims are first come and unique under concurrency; a removed configuration frees its domains', async () => {
    const [b, c] = [await f.t.createTenant('B'), await f.t.createTenant('C')];
    const results = await Promise.all([
      putSso(b.apiKey, ['contested.example']),
      putSso(c.apiKey, ['contested.example']),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 409]);

    const winner = results[0]!.status === 200 ? b : c;
    const loser = winner === b ? c : b;
    const removed = await f.t.app.inject({
      method: 'DELETE',
      url: '/api/v1/mcp/sso',
      headers: { authorization: `Bearer ${winner.apiKey}` },
    });
    expect(removed.statusCode).toBe(204);
    expect((await putSso(loser.apiKey, ['contested.example'])).status).toBe(200);
  });
});
