import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, MALLORY } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startDomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { DomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { TestDns } from './test-support/test-dns.ts';

/**
 * With the DNS proof (the default), listing an email domain routes nobody anywhere until the
 * organization publishes the TXT record Warden gives it: a tenant can no longer squat a domain
 * that is not its own and receive that domain's engineers at an identity provider it runs.
 */
describe('SSO email domains are proven by DNS before they route anyone', () => {
  let fx: DomainProofFixture;
  let f: OAuthFixture;
  let dns: TestDns;
  let squatter: { tenantId: string; apiKey: string };

  beforeAll(async () => {
    // The fixture configures Acme's SSO with acme.com (pending now, with the proof on).
    fx = await startDomainProofFixture();
    ({ f, dns } = fx);
    squatter = await f.t.createTenant('Squatter');
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('a listed domain is pending with its TXT record, and routes nobody until proven', async () => {
    const acme = await fx.domainOf(f.tenant.apiKey, 'acme.com');
    expect(acme?.status).toBe('pending');
    expect(acme?.txt_record?.type).toBe('TXT');
    expect(acme?.txt_record?.name).toBe('_warden-challenge.acme.com');
    expect(acme?.txt_record?.value).toMatch(/^warden-domain-verification=[A-Za-z0-9_-]{24}$/);

    // The squatter lists acme.com too: accepted (it blocks nobody), pending, with a token of its own.
    const squat = await fx.putSso(squatter.apiKey, ['acme.com', 'squatter.example']);
    expect(squat.status, JSON.stringify(squat.body)).toBe(200);
    const squatClaim = squat.body.sso?.domains.find((d) => d.domain === 'acme.com');
    expect(squatClaim?.status).toBe('pending');
    expect(squatClaim?.txt_record?.value).not.toBe(acme?.txt_record?.value);

    const page = await fx.signInGoesTo(ALICE.email);
    expect(page.url.startsWith(f.idp.issuer)).toBe(false);
    expect(page.body).toContain('No organization signs in engineers with @acme.com email addresses here.');
  });

  it('verifying without the record, with a wrong one, or while DNS fails is refused, naming the fix', async () => {
    const missing = await fx.verify(f.tenant.apiKey, 'acme.com');
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ code: 'invalid_request', field: 'domain' });
    expect(missing.body.error?.message).toContain('_warden-challenge.acme.com');
    expect(missing.body.error?.message).toContain('warden-domain-verification=');

    // The squatter can publish nothing at acme.com: a record there with a token one character off
    // from its own proves nothing, for it or for Acme.
    const squatToken = (await fx.domainOf(squatter.apiKey, 'acme.com'))?.txt_record?.value as string;
    dns.setTxt('_warden-challenge.acme.com', [
      'v=spf1 -all',
      `${squatToken.slice(0, -1)}${squatToken.endsWith('A') ? 'B' : 'A'}`,
    ]);
    expect((await fx.verify(f.tenant.apiKey, 'acme.com')).status).toBe(400);
    expect((await fx.verify(squatter.apiKey, 'acme.com')).status).toBe(400);

    dns.fail(true);
    const down = await fx.verify(f.tenant.apiKey, 'acme.com');
    dns.fail(false);
    expect(down.status, JSON.stringify(down.body)).toBe(503);
    expect(down.body.error?.code).toBe('unavailable');

    // Not a listed domain, or not a domain at all.
    expect((await fx.verify(f.tenant.apiKey, 'globex.example')).status).toBe(404);
    expect((await fx.verify(f.tenant.apiKey, 'not_a_domain')).body.error).toMatchObject({
      code: 'invalid_request',
      field: 'domain',
    });
    expect((await fx.domainOf(f.tenant.apiKey, 'acme.com'))?.status).toBe('pending');
  });

  it('the owner proves its domain: engineers then reach its provider, and the squatter loses its claim', async () => {
    const record = (await fx.domainOf(f.tenant.apiKey, 'acme.com'))?.txt_record;
    expect(record).toBeTruthy();
    // Published among other TXT records, as DNS providers keep them.
    dns.setTxt(record!.name, ['v=spf1 -all', record!.value]);
    const proven = await fx.verify(f.tenant.apiKey, 'acme.com');
    expect(proven.status, JSON.stringify(proven.body)).toBe(200);
    // Verified, with the record that keeps it so (Warden looks it up again).
    expect(proven.body.sso?.domains.find((d) => d.domain === 'acme.com')).toEqual({
      domain: 'acme.com',
      status: 'verified',
      txt_record: { type: 'TXT', ...record },
      proof_missing_since: null,
      lapses_at: null,
    });
    // Again: nothing more to do, same answer.
    expect((await fx.verify(f.tenant.apiKey, 'acme.com')).status).toBe(200);

    const page = await fx.signInGoesTo(ALICE.email);
    expect(page.url.startsWith(f.idp.issuer), page.url).toBe(true);

    // The squatter's claim went: it shows as held elsewhere, cannot be proven, nor listed again.
    expect((await fx.domainOf(squatter.apiKey, 'acme.com'))?.status).toBe('held_elsewhere');
    expect((await fx.verify(squatter.apiKey, 'acme.com')).status).toBe(404);
    const again = await fx.putSso(squatter.apiKey, ['squatter.example', 'eng.acme.com']);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'conflict', field: 'allowed_email_domains' });

    // The proof is on the record, with who proved it.
    const verified = await fx.lifecycleEvents(f.tenant.apiKey, 'sso.domain_verified');
    expect(verified).toHaveLength(1);
    expect(verified[0]).toMatchObject({
      caller: { type: 'api_key' },
      details: { domain: 'acme.com', proof: 'dns' },
    });
    // The squatter's trail says its claim went, by Warden: the prover's key stays out of it.
    const lost = await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_lost');
    expect(lost).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'system', id: null }),
        details: { domain: 'acme.com', reason: 'proven_by_another_organization', proven: 'acme.com' },
      }),
    ]);
    expect(JSON.stringify(lost)).not.toContain(verified[0]!.caller.id as string);
    // Acme lost nothing.
    expect(await fx.lifecycleEvents(f.tenant.apiKey, 'sso.domain_lost')).toEqual([]);
  });

  it('an engineer of a listed domain still pending is not signed in, even by an identity provider that vouches', async () => {
    // Acme lists evil.example too, unproven. Alice's address routes to Acme's provider, where
    // Mallory (mallory@evil.example, a verified email there) signs in instead.
    const listed = await fx.putSso(f.tenant.apiKey, ['acme.com', 'evil.example']);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    expect(listed.body.sso?.domains.map((d) => [d.domain, d.status])).toEqual([
      ['acme.com', 'verified'],
      ['evil.example', 'pending'],
    ]);
    const ua = f.userAgent();
    const login = await ua.get(f.authorization().url.href);
    const idpLogin = await ua.submit(login, { email: ALICE.email }, '/sso');
    expect(idpLogin.url.startsWith(f.idp.issuer)).toBe(true);
    // Refused back to the client: no code, access_denied naming the address.
    const refusal = f.refusal(await f.idpSignIn(ua, idpLogin, MALLORY));
    expect(refusal.get('error_description')).toContain(
      'mallory@evil.example is not in a domain this organization allows to sign in',
    );
  });

  it('two organizations proving one domain at once: exactly one keeps it', async () => {
    const [b, c] = [await f.t.createTenant('B'), await f.t.createTenant('C')];
    expect((await fx.putSso(b.apiKey, ['contested.example'])).status).toBe(200);
    expect((await fx.putSso(c.apiKey, ['contested.example'])).status).toBe(200);
    const tokens = await Promise.all(
      [b, c].map(
        async (t) => (await fx.domainOf(t.apiKey, 'contested.example'))?.txt_record?.value as string,
      ),
    );
    // Both records published (the domain changed hands, say): the proofs race, one wins.
    dns.setTxt('_warden-challenge.contested.example', tokens);
    const results = await Promise.all([
      fx.verify(b.apiKey, 'contested.example'),
      fx.verify(c.apiKey, 'contested.example'),
    ]);
    const statuses = results.map((r) => r.status).sort();
    expect(statuses[0]).toBe(200);
    expect([404, 409]).toContain(statuses[1]);
    const views = await Promise.all([b, c].map((t) => fx.domainOf(t.apiKey, 'contested.example')));
    expect(views.map((v) => v?.status).sort()).toEqual(['held_elsewhere', 'verified']);
  });

  it('the operator settles a dispute: releasing a domain frees it for whoever proves it next, on the record', async () => {
    // A team with a delegated zone proved team.bigcorp.example first; BigCorp cannot list its own domain.
    const [team, bigcorp] = [await f.t.createTenant('Team'), await f.t.createTenant('BigCorp')];
    const listed = await fx.putSso(team.apiKey, ['team.bigcorp.example']);
    const teamRecord = listed.body.sso?.domains[0]?.txt_record;
    dns.setTxt(teamRecord!.name, [teamRecord!.value]);
    expect((await fx.verify(team.apiKey, 'team.bigcorp.example')).status).toBe(200);
    expect((await fx.putSso(bigcorp.apiKey, ['bigcorp.example'])).status).toBe(409);

    const release = (domain: string, token: string | null = f.t.adminToken) =>
      f.t.app.inject({
        method: 'DELETE',
        url: `/admin/v1/sso/domains/${domain}`,
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
    // Only the operator: a tenant API key is not the admin token.
    expect((await release('team.bigcorp.example', team.apiKey)).statusCode).toBe(401);
    expect((await release('team.bigcorp.example', null)).statusCode).toBe(401);
    expect((await release('nobody.example')).statusCode).toBe(404);
    expect((await release('not_a_domain')).json()).toMatchObject({
      error: { code: 'invalid_request', field: 'domain' },
    });
    const released = await release('team.bigcorp.example');
    expect(released.statusCode, released.body).toBe(200);
    expect(released.json()).toEqual({ domain: 'team.bigcorp.example', released_from: [team.tenantId] });

    // The team still lists it: pending again, with a new token, routing nobody meanwhile.
    const again = await fx.domainOf(team.apiKey, 'team.bigcorp.example');
    expect(again?.status).toBe('pending');
    expect(again?.txt_record?.value).not.toBe(teamRecord!.value);
    expect((await fx.signInGoesTo('dev@team.bigcorp.example')).url.startsWith(f.idp.issuer)).toBe(false);

    // BigCorp may now list and prove its domain, which takes the team's pending claim below it.
    const bigcorpListed = await fx.putSso(bigcorp.apiKey, ['bigcorp.example']);
    expect(bigcorpListed.status, JSON.stringify(bigcorpListed.body)).toBe(200);
    const bigcorpRecord = bigcorpListed.body.sso?.domains[0]?.txt_record;
    dns.setTxt(bigcorpRecord!.name, [bigcorpRecord!.value]);
    expect((await fx.verify(bigcorp.apiKey, 'bigcorp.example')).status).toBe(200);
    expect((await fx.domainOf(team.apiKey, 'team.bigcorp.example'))?.status).toBe('held_elsewhere');

    // The team's trail says who released its domain, then that BigCorp's proof took its claim.
    expect(await fx.lifecycleEvents(team.apiKey, 'sso.domain_released')).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'admin' }),
        details: { domain: 'team.bigcorp.example', was: 'verified' },
      }),
    ]);
    expect(await fx.lifecycleEvents(team.apiKey, 'sso.domain_lost')).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'system' }),
        details: {
          domain: 'team.bigcorp.example',
          reason: 'proven_by_another_organization',
          proven: 'bigcorp.example',
        },
      }),
    ]);
  });
});
