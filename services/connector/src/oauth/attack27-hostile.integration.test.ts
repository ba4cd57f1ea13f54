import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startDomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { DomainProofFixture, ReplicaWithoutProof } from './test-support/sso-domain-proof.ts';

/**
 * attack27: a hostile tenant against ccd2c80 (verify's `claimToProve` now writes claims: a token
 * for a claim without one, a new claim for a listed domain nobody holds, counting at once under
 * `none`). Two replicas share one database: `fx` (SSO_DOMAIN_PROOF=dns, DNS on loopback) and
 * `none` (SSO_DOMAIN_PROOF=none).
 *
 * HELD tests assert the defence; the two defects found ("Was BROKEN") are fixed and their tests
 * assert the fix.
 */

describe('attack27: claims written by verify (claimToProve)', () => {
  let fx: DomainProofFixture;
  let f: OAuthFixture;
  let none: ReplicaWithoutProof;

  const db = () => f.t.container.db.kysely;
  const claimsOf = (domain: string) => fx.claimsOf(domain);
  const releaseOnNone = (domain: string) => none.release(domain);

  beforeAll(async () => {
    fx = await startDomainProofFixture();
    f = fx.f;
    none = await fx.startReplicaWithoutProof();
  });
  afterAll(async () => {
    await fx?.close();
  });

  // HELD: verify writes no claim of a domain the tenant does not list (held by another or not),
  // of a public suffix, nor of a parent/subdomain of a listed one; answers name the field.
  it('HELD: verify creates no claim of unlisted domains, suffixes, parents or subdomains (dns and none)', async () => {
    const owner = await f.t.createTenant('Owner a27u');
    const attacker = await f.t.createTenant('Attacker a27u');
    // A second attacker for the replica without the proof, whose verify limit is the default 5 a minute.
    const attacker2 = await f.t.createTenant('Attacker2 a27u');
    expect((await none.putSso(owner.apiKey, ['own.a27u.example'])).status).toBe(200);
    expect((await fx.putSso(attacker.apiKey, ['mine.a27u.example'])).status).toBe(200);
    expect((await none.putSso(attacker2.apiKey, ['mine2.a27u.example'])).status).toBe(200);
    const cases = [
      { api: fx, who: attacker, mine: 'mine', suffixes: ['co.uk', 'github.io', 'com'] },
      { api: none, who: attacker2, mine: 'mine2', suffixes: ['co.uk'] },
    ];
    for (const { api, who, mine, suffixes } of cases) {
      for (const domain of [
        'own.a27u.example',
        'other.a27u.example',
        'a27u.example',
        `x.${mine}.a27u.example`,
      ]) {
        const res = await api.verify(who.apiKey, domain);
        expect(res.status, `${domain}: ${res.raw}`).toBe(404);
        expect(res.body.error?.field).toBe('domain');
      }
      for (const suffix of suffixes) {
        const res = await api.verify(who.apiKey, suffix);
        expect(res.status, res.raw).toBe(400);
        expect(res.body.error?.field).toBe('domain');
      }
      const rows = await db()
        .selectFrom('tenant_sso_domains')
        .select('domain')
        .where('tenant_id', '=', who.tenantId)
        .execute();
      expect(rows.map((r) => r.domain)).toEqual([`${mine}.a27u.example`]);
    }
    expect((await claimsOf('own.a27u.example')).map((c) => c.tenant_id)).toEqual([owner.tenantId]);
  });

  // HELD: under none, verify of a listed domain whose claim went (operator release) does not take
  // it back once another organization holds it by listing (no bypass of PUT's 409), nor when
  // another holds its parent; nobody's claim changes.
  it('HELD: under none, verify cannot take a listed domain (or the child of one) another organization holds', async () => {
    const a = await f.t.createTenant('A a27b');
    const b = await f.t.createTenant('B a27b');
    expect((await none.putSso(a.apiKey, ['a27b.example', 'eng.a27c.example'])).status).toBe(200);
    expect((await releaseOnNone('a27b.example')).statusCode).toBe(200);
    expect((await releaseOnNone('eng.a27c.example')).statusCode).toBe(200);
    expect(await claimsOf('a27b.example')).toEqual([]);
    expect((await none.putSso(b.apiKey, ['a27b.example', 'a27c.example'])).status).toBe(200);
    const before = [...(await claimsOf('a27b.example')), ...(await claimsOf('a27c.example'))];

    for (const domain of ['a27b.example', 'eng.a27c.example']) {
      const res = await none.verify(a.apiKey, domain);
      expect(res.status, res.raw).toBe(404);
      expect(res.body.error?.field).toBe('domain');
    }
    expect([...(await claimsOf('a27b.example')), ...(await claimsOf('a27c.example'))]).toEqual(before);
    expect(await claimsOf('eng.a27c.example')).toEqual([]);
    expect((await none.domainOf(a.apiKey, 'a27b.example'))?.status).toBe('held_elsewhere');
    expect((await none.domainOf(a.apiKey, 'eng.a27c.example'))?.status).toBe('held_elsewhere');
  });

  // HELD: under none, verify of a listed domain nobody holds counts at once and is recorded
  // (sso.domain_verified, proof none, by the tenant's actor); repeating it writes nothing more.
  it('HELD: under none, verify re-claims an unheld listed domain at once, with one audit record', async () => {
    const a = await f.t.createTenant('A a27d');
    expect((await none.putSso(a.apiKey, ['a27d.example'])).status).toBe(200);
    expect((await releaseOnNone('a27d.example')).statusCode).toBe(200);
    const recordsBefore = (await fx.lifecycleEvents(a.apiKey, 'sso.domain_verified')).length;
    const res = await none.verify(a.apiKey, 'A27D.example ');
    expect(res.status, res.raw).toBe(200);
    expect(res.body.sso?.domains).toEqual([
      {
        domain: 'a27d.example',
        status: 'verified',
        txt_record: null,
        proof_missing_since: null,
        lapses_at: null,
      },
    ]);
    const again = await none.verify(a.apiKey, 'a27d.example');
    expect(again.status).toBe(200);
    const records = await fx.lifecycleEvents(a.apiKey, 'sso.domain_verified');
    expect(records.length).toBe(recordsBefore + 1);
    expect(records.at(-1)?.details).toEqual({ domain: 'a27d.example', proof: 'none' });
    const [claim] = await claimsOf('a27d.example');
    expect(claim).toMatchObject({ tenant_id: a.tenantId, proven_by: 'listing' });
    expect(claim?.proof_token).toMatch(/^[A-Za-z0-9_-]{24}$/);
  });
  // HELD: two organizations listing one domain whose claims went verify it at once: under none
  // one gets it (200, verified) and the other a 404, never a 500 on the unique index; under dns
  // each gets its own pending claim whose token the other never sees.
  it('HELD: concurrent re-claims by verify: one routing claim under none, separate tokens under dns', async () => {
    const a = await f.t.createTenant('A a27g');
    const b = await f.t.createTenant('B a27g');
    for (const t of [a, b])
      expect((await fx.putSso(t.apiKey, ['a27g.example', 'a27h.example'])).status).toBe(200);
    for (const d of ['a27g.example', 'a27h.example']) expect((await releaseOnNone(d)).statusCode).toBe(200);

    const [ra, rb] = await Promise.all([
      none.verify(a.apiKey, 'a27g.example'),
      none.verify(b.apiKey, 'a27g.example'),
    ]);
    expect([ra.status, rb.status].sort(), `${ra.raw} ${rb.raw}`).toEqual([200, 404]);
    const routing = (await claimsOf('a27g.example')).filter((c) => c.verified_at !== null);
    expect(routing).toHaveLength(1);
    const winner = ra.status === 200 ? a : b;
    expect(routing[0]?.tenant_id).toBe(winner.tenantId);
    const records = await fx.lifecycleEvents(winner.apiKey, 'sso.domain_verified');
    expect(records.filter((r) => (r.details as { domain: string }).domain === 'a27g.example')).toHaveLength(
      1,
    );

    const [da, db2] = await Promise.all([
      fx.verify(a.apiKey, 'a27h.example'),
      fx.verify(b.apiKey, 'a27h.example'),
    ]);
    expect([da.status, db2.status], `${da.raw} ${db2.raw}`).toEqual([400, 400]);
    const claims = await claimsOf('a27h.example');
    expect(claims.map((c) => c.verified_at)).toEqual([null, null]);
    const tokens = claims.map((c) => c.proof_token);
    expect(new Set(tokens).size).toBe(2);
    const viewA = JSON.stringify((await fx.call(a.apiKey, 'GET', '/api/v1/mcp/sso')).body);
    const viewB = JSON.stringify((await fx.call(b.apiKey, 'GET', '/api/v1/mcp/sso')).body);
    const tokenOf = (t: { tenantId: string }) => claims.find((c) => c.tenant_id === t.tenantId)!.proof_token!;
    expect(viewA).toContain(tokenOf(a));
    expect(viewA).not.toContain(tokenOf(b));
    expect(viewB).toContain(tokenOf(b));
    expect(viewB).not.toContain(tokenOf(a));
    expect(da.raw).not.toContain(tokenOf(b));
    expect(db2.raw).not.toContain(tokenOf(a));
  });

  // Was BROKEN (fixed): a claim that routes but has no token (made before proofs existed,
  // proven_by before_proofs, as the migration leaves it) answered verify with 404 "not one of your
  // allowed_email_domains" although GET showed it verified: verify looked for a token before
  // looking whether the claim already counts.
  it('verify of a verified claim without a token (before_proofs) answers 200: nothing to prove', async () => {
    const a = await f.t.createTenant('A a27e');
    expect((await fx.putSso(a.apiKey, ['a27e.example'])).status).toBe(200);
    await db()
      .updateTable('tenant_sso_domains')
      .set({ verified_at: new Date(), proven_by: 'before_proofs', proof_token: null })
      .where('domain', '=', 'a27e.example')
      .execute();
    expect((await fx.domainOf(a.apiKey, 'a27e.example'))?.status).toBe('verified');
    const res = await fx.verify(a.apiKey, 'a27e.example');
    expect(res.status, res.raw).toBe(200);
  });

  // Was BROKEN (fixed): verify's claimToProve read the configuration's list without locking the
  // row while its removal was under way; the new claim's foreign key then met the removed
  // configuration and verify answered 500. It now key-share locks the row (waiting for the
  // removal) and remove takes the claims lock. Simulated deterministically: the configuration's
  // delete is open in another transaction while verify runs, and commits 700 ms later.
  it('race: verify re-claiming a listed domain while the configuration is removed answers 404, never 500', async () => {
    const a = await f.t.createTenant('A a27f');
    expect((await fx.putSso(a.apiKey, ['a27f.example'])).status).toBe(200);
    await db().deleteFrom('tenant_sso_domains').where('domain', '=', 'a27f.example').execute();
    let verifying: Promise<Awaited<ReturnType<typeof fx.verify>>> | undefined;
    await db()
      .transaction()
      .execute(async (trx) => {
        await trx.deleteFrom('tenant_sso_configs').where('tenant_id', '=', a.tenantId).execute();
        verifying = fx.verify(a.apiKey, 'a27f.example');
        await new Promise((r) => setTimeout(r, 700));
      });
    const res = await verifying!;
    expect(res.status, res.raw).not.toBe(500);
    expect([404]).toContain(res.status);
    expect(await claimsOf('a27f.example')).toEqual([]);
  });
});
