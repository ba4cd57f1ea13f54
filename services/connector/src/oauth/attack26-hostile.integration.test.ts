import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testMigrator } from '@warden/testing';
import { ALICE } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startDomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { DomainProofFixture, ReplicaWithoutProof } from './test-support/sso-domain-proof.ts';

/**
 * attack26: a hostile tenant / outsider against b27a2cb (SSO domain claims record how they were
 * proven, `proven_by` dns|listing; under SSO_DOMAIN_PROOF=dns a claim that counted only because it
 * was listed under `none` routes nobody, holds nothing and goes with `sso.domain_lost` when the
 * owner proves the domain).
 *
 * Two replicas share one database, as in oauth-sso-proof-switch: `fx` (dns, with a DNS server on
 * loopback whose TXT records the tests set) and `none` (SSO_DOMAIN_PROOF=none).
 *
 * HELD tests assert the defence and would catch a regression. The three defects the attack found
 * are fixed; their tests (marked "Was BROKEN") now assert the fix.
 */

describe('attack26: listed-only SSO domain claims after SSO_DOMAIN_PROOF switches none → dns', () => {
  let fx: DomainProofFixture;
  let f: OAuthFixture;
  let none: ReplicaWithoutProof;

  /** PUT /api/v1/mcp/sso on the replica without the proof (first come). */
  const putNone = (apiKey: string, domains: string[]) => none.putSso(apiKey, domains);
  const domainOnNone = (apiKey: string, domain: string) => none.domainOf(apiKey, domain);
  const claimsOf = (domain: string) => fx.claimsOf(domain);
  /** Publishes the tenant's TXT record for `domain` (as the domain's owner would) and proves it. */
  const prove = (apiKey: string, domain: string) => fx.prove(apiKey, domain);
  const release = (domain: string) => fx.release(domain);
  /** Whether the sign-in page sends this email on to an identity provider (some tenant's). */
  const routed = async (email: string) => (await fx.signInGoesTo(email)).url.startsWith(f.idp.issuer);

  beforeAll(async () => {
    fx = await startDomainProofFixture();
    f = fx.f;
    none = await fx.startReplicaWithoutProof();
  });
  afterAll(async () => {
    await fx?.close();
  });

  // HELD: under dns, a listed-only claim routes no sign-in, whatever spelling of the email is
  // typed, for the domain itself, a subdomain listed alone, or the parent of a listed subdomain.
  it('HELD: listed-only claims route nobody under dns (case, spaces, trailing dot, subdomains, parents)', async () => {
    const squatter = await f.t.createTenant('Squatter routing');
    const listed = await putNone(squatter.apiKey, ['route1.example', 'eng.route2.example']);
    expect(listed.status, listed.raw).toBe(200);
    // Sanity: where no proof is asked, they count.
    expect((await domainOnNone(squatter.apiKey, 'route1.example'))?.status).toBe('verified');
    expect((await domainOnNone(squatter.apiKey, 'eng.route2.example'))?.status).toBe('verified');

    for (const email of [
      'alice@route1.example',
      'ALICE@ROUTE1.EXAMPLE',
      'alice@Route1.Example',
      ' alice@route1.example ',
      'alice@route1.example.',
      'bob@eng.route2.example',
      'bob@ENG.route2.example',
      'carol@route2.example',
      'dave@x.eng.route2.example',
    ]) {
      expect(await routed(email), email).toBe(false);
    }
    // Its own view under dns: pending, with a TXT record of its own.
    const claim = await fx.domainOf(squatter.apiKey, 'route1.example');
    expect(claim?.status).toBe('pending');
    expect(claim?.txt_record?.value).toMatch(/^warden-domain-verification=[A-Za-z0-9_-]{24}$/);
  });

  // HELD: the real owner is not blocked by a listed-only claim at, above or below its domain:
  // PUT and verify answer 200 (no 409, no unique-index 500), the squatter's claims go, each with
  // an sso.domain_lost record by Warden, and nothing in the owner's answers names the squatter.
  it('HELD: a listed-only claim at, above or below the owner’s domain blocks nothing and goes on the record', async () => {
    const squatter = await f.t.createTenant('Squatter Blocking Ltd');
    const owner = await f.t.createTenant('Owner of blk');
    const squat = await putNone(squatter.apiKey, ['blk1.example', 'eng.blk2.example', 'blk3.example']);
    expect(squat.status, squat.raw).toBe(200);
    const squatterTokens = (await fx.call(squatter.apiKey, 'GET', '/api/v1/mcp/sso')).body.sso!.domains.map(
      (d) => d.txt_record!.value,
    );

    const listed = await fx.putSso(owner.apiKey, ['blk1.example', 'blk2.example', 'sub.blk3.example']);
    expect(listed.status, listed.raw).toBe(200);
    expect(listed.body.sso?.domains.map((d) => d.status)).toEqual(['pending', 'pending', 'pending']);

    const answers = [listed.raw];
    for (const domain of ['blk1.example', 'blk2.example', 'sub.blk3.example']) {
      const proven = await prove(owner.apiKey, domain);
      expect(proven.status, `${domain}: ${proven.raw}`).toBe(200);
      expect(proven.body.sso?.domains.find((d) => d.domain === domain)?.status).toBe('verified');
      answers.push(proven.raw);
    }
    expect(await routed('alice@blk1.example')).toBe(true);

    // The squatter's three claims went, on both replicas, each on its own trail, by Warden.
    for (const domain of ['blk1.example', 'eng.blk2.example', 'blk3.example']) {
      expect((await claimsOf(domain)).filter((c) => c.tenant_id === squatter.tenantId)).toEqual([]);
      expect((await domainOnNone(squatter.apiKey, domain))?.status).toBe('held_elsewhere');
    }
    const lost = await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_lost');
    expect(lost.map((e) => e.details)).toEqual(
      expect.arrayContaining([
        { domain: 'blk1.example', reason: 'proven_by_another_organization', proven: 'blk1.example' },
        { domain: 'eng.blk2.example', reason: 'proven_by_another_organization', proven: 'blk2.example' },
        { domain: 'blk3.example', reason: 'proven_by_another_organization', proven: 'sub.blk3.example' },
      ]),
    );
    expect(lost).toHaveLength(3);
    for (const e of lost) expect(e.caller).toMatchObject({ type: 'system', id: null });
    // No answer to the owner, nor the squatter's records, names the other tenant or its tokens.
    for (const raw of answers) {
      expect(raw).not.toContain(squatter.tenantId);
      expect(raw).not.toContain('Squatter Blocking');
      for (const token of squatterTokens) expect(raw).not.toContain(token.split('=')[1]);
    }
    expect(JSON.stringify(lost)).not.toContain(owner.tenantId);
    expect(JSON.stringify(lost)).not.toContain('Owner of blk');

    // And the squatter cannot list them back under either mode now.
    expect((await putNone(squatter.apiKey, ['blk1.example'])).status).toBe(409);
    expect((await fx.putSso(squatter.apiKey, ['eng.blk2.example'])).status).toBe(409);
  });

  // HELD: the squatter cannot turn its listed-only claim into a routing one under dns with the
  // owner's record, an old token, or by re-listing it on the dns replica.
  it('HELD: re-listing on the dns replica, or the owner’s TXT record, does not make a listed-only claim route', async () => {
    const squatter = await f.t.createTenant('Squatter relist');
    const owner = await f.t.createTenant('Owner relist');
    expect((await putNone(squatter.apiKey, ['relist.example'])).status).toBe(200);
    const relisted = await fx.putSso(squatter.apiKey, ['relist.example', 'other-relist.example']);
    expect(relisted.status, relisted.raw).toBe(200);
    expect(relisted.body.sso?.domains.find((d) => d.domain === 'relist.example')?.status).toBe('pending');
    const [row] = await claimsOf('relist.example');
    expect(row).toMatchObject({ tenant_id: squatter.tenantId, proven_by: 'listing' });

    expect((await fx.putSso(owner.apiKey, ['relist.example'])).status).toBe(200);
    await fx.publishTxt(owner.apiKey, 'relist.example');
    expect((await fx.verify(squatter.apiKey, 'relist.example')).status).toBe(400);
    expect((await fx.verify(squatter.apiKey, 'RELIST.EXAMPLE')).status).toBe(400);
    expect(await routed('x@relist.example')).toBe(false);
  });

  // HELD: races between the owner proving (dns replica) and the squatter re-listing (none and dns
  // replicas): no 5xx, never two claims that count for one domain, the owner's proof and the
  // squatter's listing never both stand, and every claim the squatter lost is on its trail.
  it('HELD: racing proofs against re-listing on both replicas gives no 500, one holder, and no lost record', async () => {
    for (let round = 0; round < 4; round++) {
      const domain = `race${round}.example`;
      const squatter = await f.t.createTenant(`Squatter race ${round}`);
      const owner = await f.t.createTenant(`Owner race ${round}`);
      // Rounds 0-1: the squatter holds a listed-only claim before; 2-3: it lists it in the race.
      if (round < 2) expect((await putNone(squatter.apiKey, [domain])).status).toBe(200);
      else expect((await fx.putSso(squatter.apiKey, [`keep${round}.example`])).status).toBe(200);
      expect((await fx.putSso(owner.apiKey, [domain])).status).toBe(200);
      await fx.publishTxt(owner.apiKey, domain);

      const results = await Promise.all([
        fx.verify(owner.apiKey, domain),
        putNone(squatter.apiKey, [domain, `keep${round}.example`]),
        fx.verify(owner.apiKey, domain),
        fx.putSso(squatter.apiKey, [domain, `keep${round}.example`]),
        putNone(squatter.apiKey, [domain]),
      ]);
      for (const r of results) expect(r.status, r.raw).toBeLessThan(500);

      const claims = await claimsOf(domain);
      expect(claims.filter((c) => c.verified_at !== null).length).toBeLessThanOrEqual(1);
      const ownerClaim = claims.find((c) => c.tenant_id === owner.tenantId);
      const squatterClaim = claims.find((c) => c.tenant_id === squatter.tenantId);
      if (ownerClaim?.proven_by === 'dns') {
        // Proven: the squatter holds nothing of it, and lost whatever it had on the record.
        expect(squatterClaim?.verified_at ?? null).toBeNull();
        expect(await routed(`a@${domain}`)).toBe(true);
      } else {
        // Not proven: then the squatter's listing (none replica) won first come; under dns it routes nobody.
        expect(await routed(`a@${domain}`)).toBe(false);
        if (!ownerClaim) {
          const ownerLost = await fx.lifecycleEvents(owner.apiKey, 'sso.domain_lost');
          expect(ownerLost.map((e) => e.details)).toContainEqual(
            expect.objectContaining({ domain, reason: 'listed_by_another_organization' }),
          );
        }
      }
      const squatterVerified = (await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_verified')).filter(
        (e) => (e.details as { domain: string }).domain === domain,
      );
      const squatterLost = (await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_lost')).filter(
        (e) => (e.details as { domain: string }).domain === domain,
      );
      // Each listing that counted (one record each) is either still there or on the trail as lost
      // (a pending claim the owner's proof dropped is on the trail as lost too, never verified).
      expect(squatterVerified.length).toBeLessThanOrEqual(
        squatterLost.length + (squatterClaim?.verified_at ? 1 : 0),
      );
    }
  });

  // HELD: none → dns → none → dns again. A DNS proof routes throughout; a listed-only claim counts
  // only while the deployment asks no proof; an owner's pending claim that came to count by listing
  // on the none replica is pending again under dns and proves with the same TXT record.
  it('HELD: switching back to none and to dns again keeps DNS proofs, and listing never survives into dns', async () => {
    const squatter = await f.t.createTenant('Squatter flip');
    const owner = await f.t.createTenant('Owner flip');
    expect((await fx.putSso(owner.apiKey, ['flip-proven.example'])).status).toBe(200);
    expect((await prove(owner.apiKey, 'flip-proven.example')).status).toBe(200);
    expect((await putNone(squatter.apiKey, ['flip-listed.example'])).status).toBe(200);

    // Back to none: the DNS proof holds (squatter refused), the listing counts.
    expect((await putNone(squatter.apiKey, ['flip-listed.example', 'flip-proven.example'])).status).toBe(409);
    expect((await domainOnNone(owner.apiKey, 'flip-proven.example'))?.status).toBe('verified');

    // The owner lists a new domain under dns (pending), then re-PUTs on the none replica: it counts by listing.
    expect((await fx.putSso(owner.apiKey, ['flip-proven.example', 'flip-late.example'])).status).toBe(200);
    const record = (await fx.domainOf(owner.apiKey, 'flip-late.example'))?.txt_record;
    expect((await putNone(owner.apiKey, ['flip-proven.example', 'flip-late.example'])).status).toBe(200);
    expect((await domainOnNone(owner.apiKey, 'flip-late.example'))?.status).toBe('verified');
    expect((await claimsOf('flip-late.example'))[0]?.proven_by).toBe('listing');
    expect((await claimsOf('flip-proven.example'))[0]?.proven_by).toBe('dns');

    // dns again: listed-only is pending (same token), the DNS proof keeps routing.
    expect(await routed('a@flip-proven.example')).toBe(true);
    expect(await routed('a@flip-late.example')).toBe(false);
    expect(await routed('a@flip-listed.example')).toBe(false);
    expect((await fx.domainOf(owner.apiKey, 'flip-late.example'))?.txt_record).toEqual(record);
    fx.dns.setTxt(record!.name, [record!.value]);
    const proven = await fx.verify(owner.apiKey, 'flip-late.example');
    expect(proven.status, proven.raw).toBe(200);
    expect((await claimsOf('flip-late.example'))[0]?.proven_by).toBe('dns');
    expect(await routed('a@flip-late.example')).toBe(true);
    const verified = (await fx.lifecycleEvents(owner.apiKey, 'sso.domain_verified')).map((e) => e.details);
    expect(verified).toEqual([
      { domain: 'flip-proven.example', proof: 'dns' },
      { domain: 'flip-late.example', proof: 'none' },
      { domain: 'flip-late.example', proof: 'dns' },
    ]);
  });

  // HELD: the operator's release with a listed-only claim under dns: 200, both listing tenants get a
  // fresh pending claim with a new token (the squatter's old token proves nothing), the release
  // record calls the listed-only claim 'pending' (it routed nobody here), and the owner proves it.
  it('HELD: the operator release handles a listed-only claim under dns', async () => {
    const squatter = await f.t.createTenant('Squatter release');
    const owner = await f.t.createTenant('Owner release');
    expect((await putNone(squatter.apiKey, ['rel.example'])).status).toBe(200);
    const oldSquatterRecord = (await fx.domainOf(squatter.apiKey, 'rel.example'))?.txt_record;
    expect((await fx.putSso(owner.apiKey, ['rel.example'])).status).toBe(200);

    const res = await release('REL.example');
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      domain: 'rel.example',
      released_from: [owner.tenantId, squatter.tenantId].sort(),
    });
    const claims = await claimsOf('rel.example');
    expect(claims).toHaveLength(2);
    for (const c of claims) expect(c).toMatchObject({ verified_at: null, proven_by: null });
    const newSquatterRecord = (await fx.domainOf(squatter.apiKey, 'rel.example'))?.txt_record;
    expect(newSquatterRecord?.value).not.toBe(oldSquatterRecord?.value);
    // The squatter's old record, published, proves nothing now.
    fx.dns.setTxt(oldSquatterRecord!.name, [oldSquatterRecord!.value]);
    expect((await fx.verify(squatter.apiKey, 'rel.example')).status).toBe(400);
    const released = await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_released');
    expect(released.map((e) => e.details)).toEqual([{ domain: 'rel.example', was: 'pending' }]);
    expect(JSON.stringify(released)).not.toContain(owner.tenantId);

    expect((await prove(owner.apiKey, 'rel.example')).status).toBe(200);
    expect(await routed('a@rel.example')).toBe(true);
  });

  // HELD: the operator's release racing the owner's proof and the squatter re-listing on both
  // replicas: no 5xx, never two claims that count, and every claim the squatter lost is on its
  // trail (released by the operator, or lost to the owner's proof).
  it('HELD: release racing proofs and re-listing gives no 500 and loses no record', async () => {
    for (let round = 0; round < 3; round++) {
      const domain = `relrace${round}.example`;
      const squatter = await f.t.createTenant(`Squatter relrace ${round}`);
      const owner = await f.t.createTenant(`Owner relrace ${round}`);
      expect((await putNone(squatter.apiKey, [domain])).status).toBe(200);
      expect((await fx.putSso(owner.apiKey, [domain])).status).toBe(200);
      await fx.publishTxt(owner.apiKey, domain);
      const results = await Promise.all([
        fx.verify(owner.apiKey, domain).then((r) => ({ status: r.status, raw: r.raw })),
        release(domain).then((r) => ({ status: r.statusCode, raw: r.body })),
        putNone(squatter.apiKey, [domain]).then((r) => ({ status: r.status, raw: r.raw })),
        fx.putSso(squatter.apiKey, [domain]).then((r) => ({ status: r.status, raw: r.raw })),
        fx.verify(owner.apiKey, domain).then((r) => ({ status: r.status, raw: r.raw })),
      ]);
      for (const r of results) expect(r.status, r.raw).toBeLessThan(500);
      const claims = await claimsOf(domain);
      expect(
        claims.filter((c) => c.verified_at !== null && c.proven_by !== 'listing').length,
      ).toBeLessThanOrEqual(1);
      expect(claims.filter((c) => c.verified_at !== null).length).toBeLessThanOrEqual(1);
      const squatterClaim = claims.find((c) => c.tenant_id === squatter.tenantId);
      const ownerClaim = claims.find((c) => c.tenant_id === owner.tenantId);
      if (ownerClaim?.proven_by === 'dns') expect(squatterClaim?.verified_at ?? null).toBeNull();
      // The squatter's first listing is still there, or its trail says where it went.
      const firstStill = squatterClaim?.proven_by === 'listing';
      const trail = [
        ...(await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_lost')),
        ...(await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_released')),
      ].filter((e) => (e.details as { domain: string }).domain === domain);
      if (!firstStill) expect(trail.length, JSON.stringify(claims)).toBeGreaterThanOrEqual(1);
      expect(await routed(`a@${domain}`)).toBe(ownerClaim?.proven_by === 'dns');
    }
  });

  // HELD: the identity provider's callback checks the domain again under the replica's mode: a
  // sign-in started while a listed-only claim counted (a none replica, emulated by leaving its
  // proven_by unset for the start) and finished here (dns) is refused, nobody signs in.
  it('HELD: a sign-in started where a listed-only claim counted is refused at the callback under dns', async () => {
    // Acme's own acme.com counts by listing alone (its re-PUT on the none replica).
    expect((await putNone(f.tenant.apiKey, ['acme.com'])).status).toBe(200);
    const [row] = await claimsOf('acme.com');
    expect(row).toMatchObject({ tenant_id: f.tenant.tenantId, proven_by: 'listing' });
    expect(await routed(ALICE.email)).toBe(false);

    const db = f.t.container.db.kysely;
    const mark = (provenBy: 'listing' | 'dns') =>
      db
        .updateTable('tenant_sso_domains')
        .set({ proven_by: provenBy })
        .where('domain', '=', 'acme.com')
        .execute();
    await mark('dns');
    const ua = f.userAgent();
    const login = await ua.get(f.authorization().url.href);
    const idpLogin = await ua.submit(login, { email: ALICE.email }, '/sso');
    expect(idpLogin.url.startsWith(f.idp.issuer), idpLogin.body).toBe(true);
    await mark('listing');
    const idpConsent = await ua.submit(idpLogin, { login: ALICE.email, password: ALICE.password });
    const back = idpConsent.url.startsWith(f.idp.issuer) ? await ua.submit(idpConsent) : idpConsent;
    // Back at the client with access_denied (no code, no consent page).
    expect(back.body).not.toContain('Allow access to Cloudflare?');
    const to = new URL(back.url);
    expect(to.href.startsWith(f.callbackUrl), back.url).toBe(true);
    expect(to.searchParams.get('code')).toBeNull();
    expect(to.searchParams.get('error')).toBe('access_denied');
    expect(to.searchParams.get('error_description')).toContain('is not in a domain this organization allows');
  });

  // HELD: a listed-only claim of a public suffix (listed under none before suffixes were refused,
  // made here by rewriting a listing as an upgraded deployment can hold it) routes nobody under
  // dns and holds nothing: an organization under it lists and proves its own name, and the
  // suffix claim goes on the squatter's trail.
  it('HELD: a listed-only public-suffix claim routes nobody under dns and goes when a name under it is proven', async () => {
    const squatter = await f.t.createTenant('Suffix squatter');
    const owner = await f.t.createTenant('Owner under suffix');
    expect((await putNone(squatter.apiKey, ['sfx-squat.example'])).status).toBe(200);
    const db = f.t.container.db.kysely;
    await db
      .updateTable('tenant_sso_domains')
      .set({ domain: 'github.io' })
      .where('tenant_id', '=', squatter.tenantId)
      .execute();
    await db
      .updateTable('tenant_sso_configs')
      .set({ allowed_email_domains: JSON.stringify(['github.io']) })
      .where('tenant_id', '=', squatter.tenantId)
      .execute();
    expect((await claimsOf('github.io'))[0]).toMatchObject({ proven_by: 'listing' });
    expect(await routed('x@github.io')).toBe(false);
    // The squatter cannot prove a suffix, even with its own record published.
    const own = (await fx.domainOf(squatter.apiKey, 'github.io'))?.txt_record;
    if (own) fx.dns.setTxt(own.name, [own.value]);
    expect((await fx.verify(squatter.apiKey, 'github.io')).status).toBe(400);

    expect((await fx.putSso(owner.apiKey, ['acme-sfx.github.io'])).status).toBe(200);
    const proven = await prove(owner.apiKey, 'acme-sfx.github.io');
    expect(proven.status, proven.raw).toBe(200);
    expect(await routed('a@acme-sfx.github.io')).toBe(true);
    expect(await claimsOf('github.io')).toEqual([]);
    const lost = await fx.lifecycleEvents(squatter.apiKey, 'sso.domain_lost');
    expect(lost.map((e) => e.details)).toEqual([
      { domain: 'github.io', reason: 'proven_by_another_organization', proven: 'acme-sfx.github.io' },
    ]);
  });

  // Was BROKEN (fixed): during a rolling upgrade the previous release's replicas (none) write
  // claims verified at once with no token and proven_by null; a null proven_by counted under dns,
  // so such a claim routed and blocked the owner for good. Now only `dns` (or `before_proofs`)
  // counts under dns: an unrecorded proof waits for its DNS record.
  it('a listing written by a previous-release replica during the rollout routes nobody under dns and blocks nobody', async () => {
    const squatter = await f.t.createTenant('Squatter rollout');
    const owner = await f.t.createTenant('Owner rollout');
    expect((await putNone(squatter.apiKey, ['roll-other.example'])).status).toBe(200);
    // The old replica's PUT adding roll.example (its config list and its claim, as it wrote them).
    const db = f.t.container.db.kysely;
    await db
      .updateTable('tenant_sso_configs')
      .set({ allowed_email_domains: JSON.stringify(['roll-other.example', 'roll.example']) })
      .where('tenant_id', '=', squatter.tenantId)
      .execute();
    await db
      .insertInto('tenant_sso_domains')
      .values({
        domain: 'roll.example',
        tenant_id: squatter.tenantId,
        verified_at: new Date(),
        proof_token: null,
      })
      .execute();

    // Now (dns) it must route nobody and hold nothing, as any claim that was only listed.
    expect(await routed('alice@roll.example')).toBe(false);
    const listed = await fx.putSso(owner.apiKey, ['roll.example']);
    expect(listed.status, listed.raw).toBe(200);
    // The squatter's row is pending and gets a record of its own (it had no token); the owner
    // proves the domain (no unique-index failure on the unrecorded row) and the row goes.
    expect((await fx.domainOf(squatter.apiKey, 'roll.example'))?.status).toBe('pending');
    const squatVerify = await fx.verify(squatter.apiKey, 'roll.example');
    expect(squatVerify.status, squatVerify.raw).toBe(400);
    expect((await fx.domainOf(squatter.apiKey, 'roll.example'))?.txt_record?.value).toMatch(
      /^warden-domain-verification=/,
    );
    const record = listed.body.sso?.domains.find((d) => d.domain === 'roll.example')?.txt_record;
    fx.dns.setTxt(record!.name, [record!.value]);
    const proven = await fx.verify(owner.apiKey, 'roll.example');
    expect(proven.status, proven.raw).toBe(200);
    expect(await routed('alice@roll.example')).toBe(true);
    expect((await fx.domainOf(squatter.apiKey, 'roll.example'))?.status).toBe('held_elsewhere');
  });

  // A DNS proof an earlier release's replica made during the rollout (verified, its token, no
  // proven_by) is asked for again: pending with its record, and proven again at once.
  it('a DNS proof made on a previous-release replica during the rollout is proven again with its record', async () => {
    const holder = await f.t.createTenant('Holder rollout');
    expect((await fx.putSso(holder.apiKey, ['roll-dns.example'])).status).toBe(200);
    const record = await fx.publishTxt(holder.apiKey, 'roll-dns.example');
    // What the earlier release's verify wrote: verified, no proven_by.
    await f.t.container.db.kysely
      .updateTable('tenant_sso_domains')
      .set({ verified_at: new Date() })
      .where('tenant_id', '=', holder.tenantId)
      .where('domain', '=', 'roll-dns.example')
      .execute();
    expect(await routed('alice@roll-dns.example')).toBe(false);
    const view = await fx.domainOf(holder.apiKey, 'roll-dns.example');
    expect(view).toEqual({
      domain: 'roll-dns.example',
      status: 'pending',
      txt_record: record,
      proof_missing_since: null,
      lapses_at: null,
    });
    const proven = await fx.verify(holder.apiKey, 'roll-dns.example');
    expect(proven.status, proven.raw).toBe(200);
    expect(proven.body.sso?.domains).toEqual([
      // Proven by DNS: the record that keeps it so is shown (it is looked up again).
      {
        domain: 'roll-dns.example',
        status: 'verified',
        txt_record: record,
        proof_missing_since: null,
        lapses_at: null,
      },
    ]);
    expect(await routed('alice@roll-dns.example')).toBe(true);
  });

  // Was BROKEN (fixed): the squatter's listing on the none replica dropped the owner's pending
  // claim; under dns that listing holds nothing, yet the owner was told the domain was
  // `held_elsewhere` and verify answered 404. Now it shows pending, and verify makes a new claim
  // and answers with the TXT record to publish (400 until it is there), which GET then shows.
  it('under dns a domain only listed by another tenant is pending for the owner, who can prove it', async () => {
    const squatter = await f.t.createTenant('Squatter gone');
    const owner = await f.t.createTenant('Owner gone');
    expect((await fx.putSso(owner.apiKey, ['gone.example'])).status).toBe(200);
    expect((await putNone(squatter.apiKey, ['gone.example'])).status).toBe(200);
    // Under dns the squatter's listing routes nobody (held)…
    expect(await routed('alice@gone.example')).toBe(false);
    expect((await fx.domainOf(squatter.apiKey, 'gone.example'))?.status).toBe('pending');
    // …but the owner is told another organization holds it, and cannot prove it.
    const view = await fx.domainOf(owner.apiKey, 'gone.example');
    expect(view?.status).toBe('pending');
    const first = await fx.verify(owner.apiKey, 'gone.example');
    expect(first.status, first.raw).toBe(400);
    expect(first.body.error?.message).toContain('_warden-challenge.gone.example');
    const record = (await fx.domainOf(owner.apiKey, 'gone.example'))?.txt_record;
    expect(record?.value).toMatch(/^warden-domain-verification=/);
    expect(first.body.error?.message).toContain(record!.value);
    fx.dns.setTxt(record!.name, [record!.value]);
    const proven = await fx.verify(owner.apiKey, 'gone.example');
    expect(proven.status, proven.raw).toBe(200);
    expect(await routed('alice@gone.example')).toBe(true);
    expect((await fx.domainOf(squatter.apiKey, 'gone.example'))?.status).toBe('held_elsewhere');
  });

  // Last: it migrates the shared database down and up again.
  // Was BROKEN (fixed): the backfill marked as `listing` only routing claims without a proof
  // token, missing a pending claim that came to count by listing (its last sso.domain_verified
  // says proof "none") and, after down/up, every listing of this release (they carry a token).
  // The backfill now reads the trail.
  it('after down/up, listings that kept or got a proof token are marked and route nobody under dns', async () => {
    const lister = await f.t.createTenant('Lister');
    const prover = await f.t.createTenant('Prover');
    const put = (apiKey: string, domains: string[]) => none.putSso(apiKey, domains);
    // mig-pending: pending under dns, then counted by listing on the none replica.
    expect((await fx.putSso(lister.apiKey, ['mig-pending.example'])).status).toBe(200);
    expect((await put(lister.apiKey, ['mig-pending.example'])).status).toBe(200);
    // mig-fresh: listed fresh on the none replica by this release's code.
    expect((await put(lister.apiKey, ['mig-pending.example', 'mig-fresh.example'])).status).toBe(200);
    // mig-dns: proven by DNS (must stay routing).
    expect((await fx.putSso(prover.apiKey, ['mig-dns.example'])).status).toBe(200);
    await fx.publishTxt(prover.apiKey, 'mig-dns.example');
    expect((await fx.verify(prover.apiKey, 'mig-dns.example')).status).toBe(200);
    const verified = await fx.lifecycleEvents(lister.apiKey, 'sso.domain_verified');
    expect(verified.map((e) => e.details)).toEqual([
      { domain: 'mig-pending.example', proof: 'none' },
      { domain: 'mig-fresh.example', proof: 'none' },
    ]);

    const migrator = testMigrator(f.t.db.db.kysely);
    const down = await migrator.migrateTo('2026-12-12T00-00-00_sso-domain-proofs');
    expect(down.error).toBeUndefined();
    const up = await migrator.migrateToLatest();
    expect(up.error).toBeUndefined();

    const provenBy = async (domain: string) =>
      (
        await f.t.container.db.kysely
          .selectFrom('tenant_sso_domains')
          .select('proven_by')
          .where('domain', '=', domain)
          .executeTakeFirst()
      )?.proven_by;
    expect(await provenBy('mig-dns.example')).toBe('dns');
    expect(await routed('a@mig-dns.example')).toBe(true);
    expect(await provenBy('mig-fresh.example')).toBe('listing');
    expect(await provenBy('mig-pending.example')).toBe('listing');
    expect(await routed('a@mig-pending.example')).toBe(false);
  });
}, 120_000);
