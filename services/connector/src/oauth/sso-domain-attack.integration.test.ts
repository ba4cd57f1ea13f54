import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startDomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { DomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { TestDns } from './test-support/test-dns.ts';
interface Tenant {
  tenantId: string;
  apiKey: string;
}

/**
 * Attacks on the SSO email domain proof by a hostile tenant (and an outsider at the sign-in
 * page). Every test asserts the safe behaviour: a failure here is a defect.
 */
describe('SSO domain proof: attacks by a hostile tenant', () => {
  let fx: DomainProofFixture;
  let f: OAuthFixture;
  let dns: TestDns;
  let hostile: Tenant;

  beforeAll(async () => {
    // Proofs per tenant: 30 a minute, room for the attacks below, each tenant's own (see (g)).
    fx = await startDomainProofFixture();
    ({ f, dns } = fx);
    hostile = await f.t.createTenant('Hostile');
  });
  afterAll(async () => {
    await fx?.close();
  });

  /** Lists, publishes and proves a domain for a tenant. */
  async function prove(t: Tenant, domains: string[], domain: string) {
    const put = await fx.putSso(t.apiKey, domains);
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const record = put.body.sso?.domains.find((d) => d.domain === domain)?.txt_record;
    expect(record, JSON.stringify(put.body)).toBeTruthy();
    dns.setTxt(record!.name, [record!.value]);
    const proven = await fx.verify(t.apiKey, domain);
    expect(proven.status, JSON.stringify(proven.body)).toBe(200);
    return proven;
  }
  async function ssoEvents(apiKey: string) {
    const res = await f.t.app.inject({
      method: 'GET',
      url: '/api/v1/audit/events?kind=lifecycle&page_size=100',
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(res.statusCode, res.body).toBe(200);
    return (res.json() as { events: Array<{ action: string; details: unknown }> }).events.filter((e) =>
      e.action.startsWith('sso.'),
    );
  }

  it('(a) spelling variants of a pending domain route nobody to the squatter', async () => {
    // Acme's acme.com is pending (fixture); the hostile tenant lists it too, pending.
    expect((await fx.putSso(hostile.apiKey, ['acme.com', 'hostile.example'])).status).toBe(200);
    for (const email of [
      'ALICE@ACME.COM',
      ' alice@acme.com ',
      'alice@acme.com.',
      'alice@Acme.Com',
      'alice@\u212Acme.com', // Kelvin sign lower-cases to "k"
      'alice@acme.com\u200b',
    ]) {
      const page = await fx.signInGoesTo(email);
      expect(page.url.startsWith(f.idp.issuer), `${email} went to ${page.url}`).toBe(false);
    }
  });

  it('(e) weird domain strings at verify: 400/404, never 5xx, and no DNS question for them', async () => {
    const asked = dns.questions.length;
    const weird = [
      'acme.com.',
      '.acme.com',
      'acme..com',
      '*.acme.com',
      '_warden-challenge.acme.com',
      'acme.com/../x',
      'acme.com%00',
      'xn--80ak6aa92e.com',
      '\u212Acme.com',
      'ａｃｍｅ.com',
      `${'a'.repeat(64)}.com`,
      `${'a.'.repeat(126)}com`,
      'localhost',
      '127.0.0.1',
      '[::1]',
      'a'.repeat(253),
    ];
    for (const domain of weird) {
      const res = await fx.verify(hostile.apiKey, domain);
      expect(res.status, `${domain}: ${res.raw}`).toBeLessThan(500);
      expect([400, 404], `${domain}: ${res.raw}`).toContain(res.status);
    }
    // None of these is a listed claim: Warden asked DNS nothing.
    expect(dns.questions.slice(asked)).toEqual([]);
  });

  it('(e) the same weird strings in PUT: refused with 400, nothing written', async () => {
    const before = await fx.call(hostile.apiKey, 'GET', '/api/v1/mcp/sso');
    for (const domain of [
      'acme.com.',
      '*.acme.com',
      '_x.acme.com',
      'ａｃｍｅ.com',
      'acme.com\u0000',
      'acme .com',
    ]) {
      const res = await fx.putSso(hostile.apiKey, ['hostile.example', domain]);
      expect(res.status, `${JSON.stringify(domain)}: ${res.raw}`).toBe(400);
    }
    const after = await fx.call(hostile.apiKey, 'GET', '/api/v1/mcp/sso');
    expect(after.body.sso?.allowed_email_domains).toEqual(before.body.sso?.allowed_email_domains);
  });

  it('(e) a domain whose proof record cannot exist in DNS is not accepted only to fail with a retryable 503 forever', async () => {
    // 240 characters: a valid domain name, but `_warden-challenge.` + it is 258 > 253.
    const label = 'a'.repeat(61);
    const long = [label, label, label, 'b'.repeat(50), 'com'].join('.');
    expect(long.length).toBe(240);
    const t = await f.t.createTenant('Long');
    const put = await fx.putSso(t.apiKey, [long]);
    if (put.status === 200) {
      const res = await fx.verify(t.apiKey, long);
      // A 503 "DNS did not answer … retry" for a name no DNS can ever hold misleads the tenant
      // (and its clients retry forever): it should be refused for what it is.
      expect(res.status, res.raw).toBe(400);
    } else {
      expect(put.status, put.raw).toBe(400);
    }
  });

  it('(g) verify asks DNS only for _warden-challenge.<a listed domain>, and not for an unlisted one', async () => {
    const asked = dns.questions.length;
    expect((await fx.verify(hostile.apiKey, 'victim-internal.example')).status).toBe(404);
    expect(dns.questions.slice(asked)).toEqual([]);
    expect((await fx.verify(hostile.apiKey, 'hostile.example')).status).toBe(400);
    const names = dns.questions.slice(asked);
    expect(names.length).toBeGreaterThan(0);
    for (const q of names) expect(q).toBe('_warden-challenge.hostile.example TXT');
  });

  it('(g) repeated verify calls do not each send Warden to DNS (no unbounded lookups for a tenant)', async () => {
    const flooder = await f.t.createTenant('Flooder');
    expect((await fx.putSso(flooder.apiKey, ['flood.example'])).status).toBe(200);
    const asked = dns.questions.length;
    const results = await Promise.all(
      Array.from({ length: 60 }, () => fx.verify(flooder.apiKey, 'flood.example')),
    );
    for (const r of results) expect([400, 429]).toContain(r.status);
    // 60 calls within a second: the tenant's proof budget (30 a minute here) holds them to 30.
    expect(results.filter((r) => r.status === 429)).toHaveLength(30);
    expect(dns.questions.length - asked, 'DNS questions sent for 60 verify calls').toBeLessThanOrEqual(30);
    expect(results.find((r) => r.status === 429)?.body.error).toMatchObject({ code: 'rate_limited' });
    // Another tenant's proofs are not held up by it.
    expect((await fx.verify(hostile.apiKey, 'hostile.example')).status).toBe(400);
  });

  it("(d) the hostile tenant never sees another tenant's proof token or client secret", async () => {
    const acmeToken = (await fx.domainOf(f.tenant.apiKey, 'acme.com'))?.txt_record?.value;
    expect(acmeToken).toMatch(/^warden-domain-verification=/);
    const views = [
      await fx.call(hostile.apiKey, 'GET', '/api/v1/mcp/sso'),
      await fx.verify(hostile.apiKey, 'acme.com'),
      await fx.putSso(hostile.apiKey, ['acme.com', 'hostile.example']),
      await fx.call(hostile.apiKey, 'GET', '/api/v1/audit/events?kind=lifecycle&page_size=100'),
    ];
    for (const v of views) {
      expect(v.raw).not.toContain(acmeToken!.split('=')[1]);
      expect(v.raw).not.toContain(f.idp.clientSecret);
    }
    // Acme's own trail carries no token and no secret either.
    const acmeTrail = await fx.call(
      f.tenant.apiKey,
      'GET',
      '/api/v1/audit/events?kind=lifecycle&page_size=100',
    );
    expect(acmeTrail.raw).not.toContain(acmeToken!.split('=')[1]);
    expect(acmeTrail.raw).not.toContain(f.idp.clientSecret);
  });

  it("(b) a squatter's pending claim does not stop the owner proving, and the owner's record does not prove the squatter", async () => {
    const acme = await fx.domainOf(f.tenant.apiKey, 'acme.com');
    // Acme publishes its record (and the squatter publishes nothing it could use).
    dns.setTxt(acme!.txt_record!.name, [acme!.txt_record!.value]);
    expect((await fx.verify(hostile.apiKey, 'acme.com')).status).toBe(400);
    expect((await fx.verify(f.tenant.apiKey, 'ACME.COM')).status).toBe(200);
    expect((await fx.domainOf(f.tenant.apiKey, 'acme.com'))?.status).toBe('verified');
    expect((await fx.domainOf(hostile.apiKey, 'acme.com'))?.status).toBe('held_elsewhere');
    const page = await fx.signInGoesTo(ALICE.email);
    expect(page.url.startsWith(f.idp.issuer)).toBe(true);
  });

  it('(h) after a proof, neither a subdomain nor a parent, in any spelling, can be listed or proven by another tenant', async () => {
    for (const d of ['eng.acme.com', 'ENG.ACME.COM', ' a.b.acme.com ', 'acme.com']) {
      const res = await fx.putSso(hostile.apiKey, ['hostile.example', d]);
      expect(res.status, `${d}: ${res.raw}`).toBe(409);
    }
    // A subsidiary proves sub.corp.example first; then nobody else takes corp.example or x.sub.corp.example.
    const sub = await f.t.createTenant('Subsidiary');
    await prove(sub, ['sub.corp.example'], 'sub.corp.example');
    for (const d of ['corp.example', 'x.sub.corp.example', 'sub.corp.example']) {
      const res = await fx.putSso(hostile.apiKey, ['hostile.example', d]);
      expect(res.status, `${d}: ${res.raw}`).toBe(409);
    }
  });

  it('(h) parent and subdomain proven at the same time by two tenants: never both', async () => {
    const [p, c] = [await f.t.createTenant('Parent'), await f.t.createTenant('Child')];
    const pp = await fx.putSso(p.apiKey, ['race.example']);
    const cp = await fx.putSso(c.apiKey, ['deep.race.example']);
    const pr = pp.body.sso!.domains[0]!.txt_record!;
    const cr = cp.body.sso!.domains[0]!.txt_record!;
    dns.setTxt(pr.name, [pr.value]);
    dns.setTxt(cr.name, [cr.value]);
    const results = await Promise.all([
      fx.verify(p.apiKey, 'race.example'),
      fx.verify(c.apiKey, 'deep.race.example'),
    ]);
    for (const r of results) expect(r.status, r.raw).toBeLessThan(500);
    const rows = await sql<{ domain: string }>`
      select domain from tenant_sso_domains
      where verified_at is not null and (domain = 'race.example' or domain like '%.race.example')`.execute(
      f.t.container.db.kysely,
    );
    expect(rows.rows).toHaveLength(1);
  });

  it("(c) another tenant proving a subdomain does not leave the parent's tenant with a claim it is told to prove but never can", async () => {
    const parent = await f.t.createTenant('Parent org');
    const put = await fx.putSso(parent.apiKey, ['bigcorp.example']);
    expect(put.status).toBe(200);
    const sub = await f.t.createTenant('Team with a delegated zone');
    await prove(sub, ['team.bigcorp.example'], 'team.bigcorp.example');
    // The parent organization's claim: still "pending" with a TXT record to publish?
    const view = await fx.domainOf(parent.apiKey, 'bigcorp.example');
    const record = view?.txt_record;
    if (view?.status === 'pending' && record) {
      dns.setTxt(record.name, [record.value]);
      const res = await fx.verify(parent.apiKey, 'bigcorp.example');
      // Told to publish a record, it publishes it, and the proof is then refused.
      expect(res.status, `pending with a TXT record, but verify answers ${res.status}: ${res.raw}`).toBe(200);
    }
  });

  it('(e)(f) concurrent PUT, verify and DELETE of one tenant: no 5xx, and every change that happened is on the record', async () => {
    const t = await f.t.createTenant('Racer');
    const first = await fx.putSso(t.apiKey, ['racer.example', 'racer2.example']);
    const record = first.body.sso!.domains[0]!.txt_record!;
    dns.setTxt(record.name, [record.value]);
    const statuses: number[] = [];
    let changes = 1; // the first PUT
    for (let round = 0; round < 6; round++) {
      const results = await Promise.all([
        fx.verify(t.apiKey, 'racer.example'),
        fx.call(t.apiKey, 'DELETE', '/api/v1/mcp/sso'),
        fx.putSso(t.apiKey, round % 2 ? ['racer.example'] : ['racer.example', 'racer2.example']),
        fx.verify(t.apiKey, 'racer.example'),
        fx.putSso(t.apiKey, ['racer2.example', 'racer.example']),
      ]);
      for (const r of results) {
        statuses.push(r.status);
        expect(r.status, r.raw).toBeLessThan(500);
      }
      changes += [results[1], results[2], results[4]].filter(
        (r) => r.status === 200 || r.status === 204,
      ).length;
    }
    const events = await ssoEvents(t.apiKey);
    expect(events.filter((e) => e.action !== 'sso.domain_verified')).toHaveLength(changes);
    // Claims and configuration agree: no claim of a domain the configuration does not list.
    const orphans = await sql<{ domain: string }>`
      select d.domain from tenant_sso_domains d join tenant_sso_configs s on s.tenant_id = d.tenant_id
      where d.tenant_id = ${t.tenantId} and not (s.allowed_email_domains ? d.domain)`.execute(
      f.t.container.db.kysely,
    );
    expect(orphans.rows).toEqual([]);
  });

  it('(f) every domain that starts routing has an sso.domain_verified record naming it', async () => {
    const rows = await sql<{ tenant_id: string; domain: string }>`
      select tenant_id, domain from tenant_sso_domains where verified_at is not null`.execute(
      f.t.container.db.kysely,
    );
    const keys = new Map<string, string>([[f.tenant.tenantId, f.tenant.apiKey]]);
    for (const row of rows.rows) {
      if (!keys.has(row.tenant_id)) continue;
      const events = await ssoEvents(keys.get(row.tenant_id)!);
      expect(
        events.some(
          (e) => e.action === 'sso.domain_verified' && JSON.stringify(e.details).includes(row.domain),
        ),
      ).toBe(true);
    }
  });
});
