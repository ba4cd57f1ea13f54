import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startDomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { DomainProofFixture, ReplicaWithoutProof } from './test-support/sso-domain-proof.ts';

/**
 * A deployment that ran without the proof (`SSO_DOMAIN_PROOF=none`, first come) and then turns it
 * on: a domain that counted only because it was listed counts no more. Before, such a claim kept
 * routing the domain's engineers to whoever listed it first, and kept the domain's real owner from
 * even listing it. Two replicas share one database here, one without the proof (as the deployment
 * was) and one with it (as it is now).
 */
describe('turning the SSO domain proof on after running without it', () => {
  let fx: DomainProofFixture;
  let f: OAuthFixture;
  /** The replica without the proof (as the deployment ran), on the same database. */
  let before: ReplicaWithoutProof;
  let squatter: { tenantId: string; apiKey: string };

  beforeAll(async () => {
    // With the proof on: Acme lists acme.com (pending).
    fx = await startDomainProofFixture();
    f = fx.f;
    before = await fx.startReplicaWithoutProof();
    squatter = await f.t.createTenant('Squatter');
    // Without the proof, the squatter lists acme.com first: it counts at once, first come.
    const squat = await before.putSso(squatter.apiKey, ['acme.com']);
    expect(squat.status, squat.raw).toBe(200);
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('a domain proven only by being listed routes nobody once the proof is on, and waits for its TXT record', async () => {
    // Where no proof is asked, it counts (and Acme's pending claim of it went).
    expect((await before.domainOf(squatter.apiKey, 'acme.com'))?.status).toBe('verified');
    expect((await before.domainOf(f.tenant.apiKey, 'acme.com'))?.status).toBe('held_elsewhere');
    // With the proof on, nobody holds it: Acme, which still lists it, sees it pending.
    expect((await fx.domainOf(f.tenant.apiKey, 'acme.com'))?.status).toBe('pending');

    // With the proof on, it is pending, with a TXT record of its own to prove it by.
    const claim = await fx.domainOf(squatter.apiKey, 'acme.com');
    expect(claim?.status).toBe('pending');
    expect(claim?.txt_record?.name).toBe('_warden-challenge.acme.com');
    expect(claim?.txt_record?.value).toMatch(/^warden-domain-verification=[A-Za-z0-9_-]{24}$/);

    const page = await fx.signInGoesTo(ALICE.email);
    expect(page.url.startsWith(f.idp.issuer), page.url).toBe(false);
    expect(page.body).toContain('No organization signs in engineers with @acme.com email addresses here.');
  });

  it('the real owner may list it again and prove it: the claim that was only listed goes, on the record', async () => {
    // Not refused as held elsewhere: under the proof, a listed-only claim holds nothing.
    const listed = await fx.putSso(f.tenant.apiKey, ['acme.com']);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    const record = listed.body.sso?.domains.find((d) => d.domain === 'acme.com')?.txt_record;
    expect(record).toBeTruthy();

    // The squatter cannot prove what it does not hold: Acme's record proves nothing for it.
    fx.dns.setTxt(record!.name, [record!.value]);
    expect((await fx.verify(squatter.apiKey, 'acme.com')).status).toBe(400);

    const proven = await fx.verify(f.tenant.apiKey, 'acme.com');
    expect(proven.status, JSON.stringify(proven.body)).toBe(200);
    expect(proven.body.sso?.domains.find((d) => d.domain === 'acme.com')?.status).toBe('verified');
    const page = await fx.signInGoesTo(ALICE.email);
    expect(page.url.startsWith(f.idp.issuer), page.url).toBe(true);

    // The squatter's claim went on both replicas, and its trail says so (by Warden).
    expect((await fx.domainOf(squatter.apiKey, 'acme.com'))?.status).toBe('held_elsewhere');
    expect((await before.domainOf(squatter.apiKey, 'acme.com'))?.status).toBe('held_elsewhere');
    const lost = await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_lost');
    expect(lost).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'system', id: null }),
        details: { domain: 'acme.com', reason: 'proven_by_another_organization', proven: 'acme.com' },
      }),
    ]);
    // Its listing counted once, on the record as such.
    const squatVerified = await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_verified');
    expect(squatVerified.map((e) => e.details)).toEqual([{ domain: 'acme.com', proof: 'none' }]);
  });

  it('a domain proven by DNS keeps counting without the proof, and one only listed proves like any pending one', async () => {
    // Acme's DNS proof counts on the replica without the proof too.
    expect((await before.domainOf(f.tenant.apiKey, 'acme.com'))?.status).toBe('verified');

    // The squatter lists another domain without the proof, then proves it by DNS with the proof on.
    const other = await before.putSso(squatter.apiKey, ['squatter.example']);
    expect(other.status, other.raw).toBe(200);
    const record = await fx.publishTxt(squatter.apiKey, 'squatter.example');
    expect(record).toBeTruthy();
    const proven = await fx.verify(squatter.apiKey, 'squatter.example');
    expect(proven.status, JSON.stringify(proven.body)).toBe(200);
    expect(proven.body.sso?.domains).toEqual([
      {
        domain: 'squatter.example',
        status: 'verified',
        txt_record: record,
        proof_missing_since: null,
        lapses_at: null,
      },
    ]);
    const verified = await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_verified');
    expect(verified.map((e) => e.details)).toEqual([
      { domain: 'acme.com', proof: 'none' },
      { domain: 'squatter.example', proof: 'none' },
      { domain: 'squatter.example', proof: 'dns' },
    ]);
  });

  it('where no proof is asked, a DNS proof does not take a domain another organization holds by listing', async () => {
    const lister = await f.t.createTenant('Lister');
    const prover = await f.t.createTenant('Prover');
    // Listed first without the proof; the prover lists it with the proof on (pending: the listing
    // holds nothing there) and publishes its record.
    expect((await before.putSso(lister.apiKey, ['first.example'])).status).toBe(200);
    const listed = await fx.putSso(prover.apiKey, ['first.example']);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    const record = listed.body.sso?.domains[0]?.txt_record;
    fx.dns.setTxt(record!.name, [record!.value]);
    // On the replica without the proof, first come holds: refused, and nothing changes.
    const refused = await before.verify(prover.apiKey, 'first.example');
    expect(refused.status, refused.raw).toBe(409);
    expect((await before.domainOf(lister.apiKey, 'first.example'))?.status).toBe('verified');
    expect(await fx.lifecycleEvents(lister.apiKey, 'sso.domain_lost')).toEqual([]);
    // With the proof on, the DNS proof wins.
    const proven = await fx.verify(prover.apiKey, 'first.example');
    expect(proven.status, JSON.stringify(proven.body)).toBe(200);
    expect((await before.domainOf(lister.apiKey, 'first.example'))?.status).toBe('held_elsewhere');
  });
});
