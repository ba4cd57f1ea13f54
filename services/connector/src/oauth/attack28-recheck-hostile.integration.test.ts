import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { createSsoDomainRecheck } from '@warden/vault';
import type { DomainProof } from '@warden/vault';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startDomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { DomainProofFixture, ReplicaWithoutProof } from './test-support/sso-domain-proof.ts';
import type { TestDns } from './test-support/test-dns.ts';

/**
 * attack28: an outsider and a hostile tenant against 5df40a2 (DNS-proven SSO domains are
 * re-checked: `sso-domain-recheck.ts` `runOnce` / `applyLookUp`, verify while the record is
 * missing, `proof_missing_since` / `lapses_at`). Two replicas share one database: `fx`
 * (SSO_DOMAIN_PROOF=dns, DNS on loopback, re-check every 24 h, lapse after 72 h) and `none`
 * (SSO_DOMAIN_PROOF=none). Time passing is the claims' timestamps moved back, as in
 * oauth-sso-domain-recheck. `runOnce` looks at every tenant's claims, so each test first marks
 * every claim but its own as just checked (`onlyDue`).
 *
 * HELD tests assert the defence; the three defects found ("Was BROKEN") are fixed and their
 * tests assert the fix.
 */
describe('attack28: re-checked SSO domain proofs', () => {
  let fx: DomainProofFixture;
  let f: OAuthFixture;
  let dns: TestDns;
  let none: ReplicaWithoutProof;

  const db = () => f.t.container.db.kysely;
  const recheck = () => f.t.container.ssoDomainRecheck.runOnce();
  const rec = (domain: string) => `_warden-challenge.${domain}`;

  /** Every claim but those of `domains` counts as checked just now: only these can be due. */
  async function onlyDue(...domains: string[]) {
    await db()
      .updateTable('tenant_sso_domains')
      .set({ proof_checked_at: sql`now()` })
      .where('domain', 'not in', domains)
      .execute();
  }
  /** Moves `domain`'s last check (and, when given, the start of its missing record) back. */
  async function age(domain: string, checkedHoursAgo: number, missingHoursAgo?: number) {
    await db()
      .updateTable('tenant_sso_domains')
      .set({
        proof_checked_at: sql`now() - make_interval(hours => ${checkedHoursAgo})`,
        ...(missingHoursAgo !== undefined
          ? { proof_missing_since: sql`now() - make_interval(hours => ${missingHoursAgo})` }
          : {}),
      })
      .where('domain', '=', domain)
      .execute();
  }
  /** `domain`'s record is taken down, and its claim alone is due, checked (and missing) this long ago. */
  async function recordGone(domain: string, checkedHoursAgo: number, missingHoursAgo?: number) {
    dns.setTxt(rec(domain), null);
    await onlyDue(domain);
    await age(domain, checkedHoursAgo, missingHoursAgo);
  }
  /** A new tenant whose SSO lists `domains`, the first proven by its DNS record. */
  async function provenTenant(name: string, ...domains: string[]) {
    const tenant = await f.t.createTenant(name);
    const listed = await fx.putSso(tenant.apiKey, domains);
    expect(listed.status, listed.raw).toBe(200);
    const proven = await fx.prove(tenant.apiKey, domains[0]!);
    expect(proven.status, proven.raw).toBe(200);
    return tenant;
  }
  /** Which tenant the sign-in page would send `domain`'s engineers to (the dns replica's view). */
  async function routesTo(domain: string): Promise<string[]> {
    const rows = await db()
      .selectFrom('tenant_sso_domains')
      .select('tenant_id')
      .where('domain', '=', domain)
      .where('verified_at', 'is not', null)
      .where('proven_by', 'in', ['dns', 'before_proofs'])
      .execute();
    return rows.map((r) => r.tenant_id);
  }
  /** Routing claims (dns mode) of `root` and every name under it, across tenants. */
  async function routingInTree(root: string) {
    return db()
      .selectFrom('tenant_sso_domains')
      .select(['tenant_id', 'domain'])
      .where((eb) => eb.or([eb('domain', '=', root), eb('domain', 'like', `%.${root}`)]))
      .where('verified_at', 'is not', null)
      .where('proven_by', 'in', ['dns', 'before_proofs'])
      .execute();
  }

  beforeAll(async () => {
    fx = await startDomainProofFixture();
    ({ f, dns } = fx);
    none = await fx.startReplicaWithoutProof();
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('HELD: an outsider cannot list, verify or unseat a proven domain, before or during its grace', async () => {
    const d = 'v.a28o.example';
    const victim = await provenTenant('Victim a28o', d);
    const outsider = await f.t.createTenant('Outsider a28o');
    const tryAll = async () => {
      for (const list of [[d], ['a28o.example'], [`x.${d}`], ['V.A28O.Example']]) {
        const res = await fx.putSso(outsider.apiKey, list);
        expect(res.status, `${list}: ${res.raw}`).toBe(409);
      }
      expect((await fx.verify(outsider.apiKey, d)).status).toBe(404);
      expect((await none.verify(outsider.apiKey, d)).status).toBe(404);
    };
    await tryAll();
    // The victim's record goes (its DNS is in trouble, say): the grace starts.
    await recordGone(d, 25);
    expect(await recheck()).toMatchObject({ checked: 1, applied: { missing: 1 } });
    // The outsider publishes nothing of use: a record of its own (there is no claim of it) changes nothing.
    await tryAll();
    expect((await fx.claimsOf(d)).map((c) => c.tenant_id)).toEqual([victim.tenantId]);
    expect(await routesTo(d)).toEqual([victim.tenantId]);
    expect((await fx.claimsOf(`x.${d}`)).length + (await fx.claimsOf('a28o.example')).length).toBe(0);
  });

  it('HELD: resolver edge cases: chunks join, other tokens/case/split records are missing, SERVFAIL and timeouts are no evidence', async () => {
    const d = 'r.a28r.example';
    const tenant = await provenTenant('R a28r', d);
    const [claim] = await fx.claimsOf(d);
    const token = claim!.proof_token!;
    const value = `warden-domain-verification=${token}`;
    const lookUp = async (answer: readonly unknown[] | null) => {
      dns.setTxt(rec(d), answer as string[] | null);
      await onlyDue(d);
      await age(d, 25);
      return recheck();
    };
    // One record as several character-strings (long TXT records are split so): found.
    expect(
      await lookUp([['warden-domain-verification=', token.slice(0, 10), token.slice(10)]]),
    ).toMatchObject({
      applied: { kept: 1 },
    });
    // Another token, the value in other case or with a leading space, and the value split over two records: missing.
    for (const answer of [
      [`warden-domain-verification=${'A'.repeat(24)}`],
      [value.toUpperCase()],
      ['warden-domain-verification=', token],
      [` ${value}`],
    ]) {
      const report = await lookUp(answer);
      expect(report.applied.missing + report.applied.still_missing, JSON.stringify(answer)).toBe(1);
      expect((await fx.domainOf(tenant.apiKey, d))?.status).toBe('verified');
      // Back to found, ending the grace, before the next case.
      expect(await lookUp([value])).toMatchObject({ applied: { restored: 1 } });
    }
    // Past the lapse time, a resolver in trouble (SERVFAIL) does not lapse the claim.
    await recordGone(d, 1, 100);
    dns.fail(true);
    try {
      expect(await recheck()).toMatchObject({ checked: 1, unanswered: 1, applied: { lapsed: 0 } });
    } finally {
      dns.fail(false);
    }
    // Nor does one that never answers (a timeout), with the re-check's own code path.
    const hole: Socket = createSocket('udp4');
    await new Promise<void>((resolve) => hole.bind(0, '127.0.0.1', resolve));
    try {
      const resolver = new Resolver({ timeout: 300, tries: 1 });
      resolver.setServers([`127.0.0.1:${hole.address().port}`]);
      const domainProof: DomainProof = {
        mode: 'dns',
        resolveTxt: (name) => resolver.resolveTxt(name),
        recheck: f.t.container.domainProof.recheck,
      };
      const blackHoled = createSsoDomainRecheck({
        db: db(),
        audit: f.t.container.lifecycleAudit,
        domainProof,
      });
      await onlyDue(d);
      await age(d, 1);
      expect(await blackHoled.runOnce()).toMatchObject({ checked: 1, unanswered: 1, applied: { lapsed: 0 } });
    } finally {
      hole.close();
    }
    expect((await fx.domainOf(tenant.apiKey, d))?.status).toBe('verified');
    expect(await fx.lifecycleEvents(tenant.apiKey, 'sso.domain_lapsed')).toEqual([]);
  });

  it('HELD: the holder of a domain whose record is gone cannot stretch the grace (re-PUT, case variants, pumping verify)', async () => {
    const d = 'x.a28x.example';
    const holder = await provenTenant('X a28x', d, 'other.a28x.example');
    await recordGone(d, 25);
    expect(await recheck()).toMatchObject({ applied: { missing: 1 } });
    const since = (await fx.claimsOf(d))[0]!.proof_missing_since!.getTime();
    for (const list of [[d, 'other.a28x.example'], ['X.A28X.EXAMPLE'], [` ${d} `, 'other.a28x.example']]) {
      const res = await fx.putSso(holder.apiKey, list);
      expect(res.status, res.raw).toBe(200);
      expect((await fx.claimsOf(d))[0]!.proof_missing_since!.getTime()).toBe(since);
    }
    for (let i = 0; i < 3; i++) {
      const res = await fx.verify(holder.apiKey, d);
      expect(res.status, res.raw).toBe(400);
      expect((await fx.claimsOf(d))[0]!.proof_missing_since!.getTime()).toBe(since);
    }
    // Pumping verify keeps the scheduled re-check away (each look-up counts as a check), but
    // verify itself lapses the claim once the grace is over.
    await age(d, 0, 73);
    const late = await fx.verify(holder.apiKey, d);
    expect(late.status, late.raw).toBe(400);
    expect(late.body.error?.message).toContain('pending again');
    expect(await routesTo(d)).toEqual([]);
    expect(await fx.lifecycleEvents(holder.apiKey, 'sso.domain_lapsed')).toHaveLength(1);
    expect(await fx.lifecycleEvents(holder.apiKey, 'sso.domain_proof_missing')).toHaveLength(1);
  });

  it('HELD: re-checks run at once on several replicas: one missing record, one lapse, no errors', async () => {
    const d = 'c.a28c.example';
    const tenant = await provenTenant('C a28c', d);
    await recordGone(d, 25);
    const first = await Promise.all([recheck(), recheck(), recheck()]);
    expect(first.reduce((n, r) => n + r.applied.missing, 0)).toBe(1);
    await age(d, 1, 73);
    const second = await Promise.all([recheck(), recheck(), recheck()]);
    expect(second.reduce((n, r) => n + r.applied.lapsed, 0)).toBe(1);
    expect(await fx.lifecycleEvents(tenant.apiKey, 'sso.domain_proof_missing')).toHaveLength(1);
    expect(await fx.lifecycleEvents(tenant.apiKey, 'sso.domain_lapsed')).toHaveLength(1);
    expect((await fx.domainOf(tenant.apiKey, d))?.status).toBe('pending');
  });

  it('HELD: the lapse raced with verify, release, re-listing and removal: no 5xx, nothing left routing without a record', async () => {
    for (const round of [0, 1, 2]) {
      const d = `r${round}.a28race.example`;
      const a = await provenTenant(`A a28race${round}`, d);
      await recordGone(d, 1, 73);
      const last =
        round === 2
          ? fx.call(a.apiKey, 'DELETE', '/api/v1/mcp/sso')
          : round === 1
            ? fx.putSso(a.apiKey, ['other.a28race.example'])
            : fx.putSso(a.apiKey, [d]);
      const [run, ...calls] = await Promise.all([
        recheck(),
        fx.verify(a.apiKey, d),
        fx.release(d).then((r) => ({ status: r.statusCode, raw: r.body })),
        last,
      ]);
      for (const call of calls) expect(call.status, call.raw).toBeLessThan(500);
      expect(run.applied.lapsed + run.applied.gone + run.applied.still_missing).toBeLessThanOrEqual(1);
      expect(await routingInTree(d), `round ${round}`).toEqual([]);
      expect((await fx.lifecycleEvents(a.apiKey, 'sso.domain_lapsed')).length).toBeLessThanOrEqual(1);
    }
    // After the lapse, two organizations prove the domain at once (both records published): one holds it.
    const d = 'won.a28race.example';
    const a = await provenTenant('A a28won', d);
    await recordGone(d, 1, 73);
    expect(await recheck()).toMatchObject({ applied: { lapsed: 1 } });
    const b = await f.t.createTenant('B a28won');
    expect((await fx.putSso(b.apiKey, [d, `eng.${d}`])).status).toBe(200);
    const tokens = await db()
      .selectFrom('tenant_sso_domains')
      .select(['proof_token'])
      .where('domain', 'in', [d])
      .execute();
    dns.setTxt(
      rec(d),
      tokens.map((t) => `warden-domain-verification=${t.proof_token}`),
    );
    const bTokens = await fx.claimsOf(`eng.${d}`);
    dns.setTxt(rec(`eng.${d}`), [`warden-domain-verification=${bTokens[0]!.proof_token}`]);
    const results = await Promise.all([
      fx.verify(a.apiKey, d),
      fx.verify(b.apiKey, d),
      fx.verify(b.apiKey, `eng.${d}`),
      recheck(),
    ]);
    for (const r of results.slice(0, 3) as { status: number; raw: string }[]) {
      expect(r.status, r.raw).toBeLessThan(500);
    }
    const routing = await routingInTree(d);
    expect(new Set(routing.map((r) => r.tenant_id)).size, JSON.stringify(routing)).toBe(1);
  });

  it('Was BROKEN, fixed: a lapse-due claim no longer waits behind routine re-checks (missing records first, and a run takes every claim due)', async () => {
    // The holder of stolen.a28b.example lost its DNS (the domain changed hands); the record
    // has been missing for 73 hours, its last look-up an hour ago: its lapse is due.
    const stolen = 'stolen.a28b.example';
    const holder = await provenTenant('Holder a28b', stolen);
    dns.setTxt(rec(stolen), null);
    // Two organizations (50 domains each, the most one configuration lists) with their records
    // published, proven a day ago: their routine re-checks are due.
    const fleet: string[] = [];
    for (const n of [1, 2]) {
      const t = await f.t.createTenant(`Fleet${n} a28b`);
      const domains = Array.from({ length: 50 }, (_, i) => `d${i}.f${n}.a28b.example`);
      expect((await fx.putSso(t.apiKey, domains)).status).toBe(200);
      fleet.push(...domains);
    }
    const claims = await db()
      .selectFrom('tenant_sso_domains')
      .select(['domain', 'proof_token'])
      .where('domain', 'in', fleet)
      .execute();
    for (const c of claims) dns.setTxt(rec(c.domain), [`warden-domain-verification=${c.proof_token}`]);
    // (Proven a day ago: the state 100 proofs through verify leave; written directly to stay under the verify limit.)
    await db()
      .updateTable('tenant_sso_domains')
      .set({ verified_at: sql`now() - interval '25 hours'`, proven_by: 'dns' })
      .where('domain', 'in', fleet)
      .execute();
    /** One hourly run with the next 100 routine re-checks due; who the stolen domain routes to after it. */
    const routesAfterRun = async () => {
      await onlyDue(stolen, ...fleet);
      await db()
        .updateTable('tenant_sso_domains')
        .set({ proof_checked_at: sql`now() - interval '25 hours'` })
        .where('domain', 'in', fleet)
        .execute();
      await age(stolen, 1, 73);
      const report = await recheck();
      // Every claim due, in one run: the 100 routine ones and the stolen one (the first time).
      expect(report.checked).toBeGreaterThanOrEqual(100);
      return routesTo(stolen);
    };
    // Each hourly run with 100 routine re-checks due (a deployment with 2,400 proven domains has
    // that many every hour): the stolen domain's lapse is not kept waiting behind them.
    for (let run = 0; run < 2; run++) {
      expect(await routesAfterRun(), `run ${run}: the stolen domain still routes to its old holder`).toEqual(
        [],
      );
    }
    expect(holder.tenantId).toBeDefined();
  });

  it('HELD: an engineer mid sign-in when the domain lapses is refused at the callback; new sign-ins are not routed', async () => {
    const proven = await fx.prove(f.tenant.apiKey, 'acme.com');
    expect(proven.status, proven.raw).toBe(200);
    const ua = f.userAgent();
    const login = await ua.get(f.authorization().url.href);
    const idpLogin = await ua.submit(login, { email: ALICE.email }, '/sso');
    expect(idpLogin.url.startsWith(f.idp.issuer), idpLogin.body).toBe(true);
    // The domain lapses while Alice is at her identity provider.
    dns.setTxt(rec('acme.com'), null);
    await onlyDue('acme.com');
    await age('acme.com', 1, 73);
    expect(await recheck()).toMatchObject({ applied: { lapsed: 1 } });
    f.refusal(await f.idpSignIn(ua, idpLogin, ALICE));
    expect((await fx.signInGoesTo(ALICE.email)).url.startsWith(f.idp.issuer)).toBe(false);
  });

  it('HELD: claims counted without a record (before_proofs, a listing under dns) are never looked up nor lapsed', async () => {
    const p = await f.t.createTenant('P a28p');
    expect((await fx.putSso(p.apiKey, ['bp.a28p.example', 'ls.a28p.example'])).status).toBe(200);
    await db()
      .updateTable('tenant_sso_domains')
      .set({
        verified_at: sql`now() - interval '200 hours'`,
        proof_checked_at: sql`now() - interval '200 hours'`,
        proof_missing_since: sql`now() - interval '100 hours'`,
        proven_by: sql`(case domain when 'bp.a28p.example' then 'before_proofs' else 'listing' end)`,
      })
      .where('tenant_id', '=', p.tenantId)
      .execute();
    await onlyDue('bp.a28p.example', 'ls.a28p.example');
    const asked = dns.questions.length;
    expect(await recheck()).toMatchObject({ checked: 0 });
    expect(dns.questions.length).toBe(asked);
    expect(await routesTo('bp.a28p.example')).toEqual([p.tenantId]);
    // Nor shown as missing: only a DNS-proven claim has a record that keeps it.
    const view = await fx.domainOf(p.apiKey, 'bp.a28p.example');
    expect(view).toMatchObject({
      status: 'verified',
      txt_record: null,
      proof_missing_since: null,
      lapses_at: null,
    });
  });

  it('HELD: nothing of the re-check leaks to another organization (view fields, trail)', async () => {
    const d = 'l.a28l.example';
    const b = await f.t.createTenant('B a28l');
    // B listed the domain first (pending); A proves it; A's record then goes missing.
    expect((await fx.putSso(b.apiKey, [d])).status).toBe(200);
    const a = await provenTenant('A a28l', d);
    await recordGone(d, 25);
    expect(await recheck()).toMatchObject({ applied: { missing: 1 } });
    const seen = await fx.domainOf(b.apiKey, d);
    expect(seen).toEqual({
      domain: d,
      status: 'held_elsewhere',
      txt_record: null,
      proof_missing_since: null,
      lapses_at: null,
    });
    for (const action of ['sso.domain_proof_missing', 'sso.domain_lapsed', 'sso.domain_proof_restored']) {
      expect(await fx.lifecycleEvents(b.apiKey, action)).toEqual([]);
    }
    const aMissing = await fx.lifecycleEvents(a.apiKey, 'sso.domain_proof_missing');
    expect(JSON.stringify(aMissing)).not.toContain(b.tenantId);
  });

  it('Was BROKEN, fixed: a look-up answered before the tenant put its record back and verified is stale once that verify applied: no false sso.domain_proof_missing', async () => {
    const d = 'g.a28g.example';
    const tenant = await provenTenant('G a28g', d);
    const [claim] = await fx.claimsOf(d);
    const value = `warden-domain-verification=${claim!.proof_token}`;
    await recordGone(d, 25);
    expect(await recheck()).toMatchObject({ applied: { missing: 1 } });
    // The next run's look-up gets its answer (missing), then is slow to apply it (a busy
    // replica, a long claims lock): the re-check's own code, with the container's resolver.
    let answered!: () => void;
    const looked = new Promise<void>((resolve) => (answered = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const real = f.t.container.domainProof;
    const slow = createSsoDomainRecheck({
      db: db(),
      audit: f.t.container.lifecycleAudit,
      domainProof: {
        ...real,
        resolveTxt: async (name) => {
          try {
            return await real.resolveTxt(name);
          } finally {
            answered();
            await gate;
          }
        },
      },
    });
    await onlyDue(d);
    await age(d, 1);
    const run = slow.runOnce();
    await looked;
    // Meanwhile the tenant puts the record back and verifies: the grace ends (restored).
    dns.setTxt(rec(d), [value]);
    const back = await fx.verify(tenant.apiKey, d);
    expect(back.status, back.raw).toBe(200);
    expect(await fx.lifecycleEvents(tenant.apiKey, 'sso.domain_proof_restored')).toHaveLength(1);
    release();
    expect(await run).toMatchObject({ checked: 1 });
    // The record is published and was seen after that look-up: nothing should be missing.
    const after = await fx.domainOf(tenant.apiKey, d);
    expect(after?.proof_missing_since, 'grace restarted by a stale answer').toBeNull();
    expect(await fx.lifecycleEvents(tenant.apiKey, 'sso.domain_proof_missing')).toHaveLength(1);
  });

  it('Was BROKEN, fixed: under SSO_DOMAIN_PROOF=none, verify does not run the DNS re-check, and the domain keeps counting', async () => {
    // The deployment ran with the DNS proof; M's record went missing; the operator turned the
    // proof off (one organization, say). Under none a listed domain counts, first come.
    const d = 'm.a28n.example';
    const m = await provenTenant('M a28n', d);
    await recordGone(d, 25);
    expect(await recheck()).toMatchObject({ applied: { missing: 1 } });
    await age(d, 1, 73);
    // Under none the view shows nothing of a grace...
    const view = await none.domainOf(m.apiKey, d);
    expect(view).toMatchObject({ status: 'verified', proof_missing_since: null, lapses_at: null });
    // ...and the re-check does not run there...
    const asked = dns.questions.length;
    expect(await none.app.container.ssoDomainRecheck.runOnce()).toMatchObject({ checked: 0 });
    // ...but verify (a no-op for a listed domain under none) asks DNS and lapses it.
    const res = await none.verify(m.apiKey, d);
    expect(dns.questions.length, 'verify under none asked DNS').toBe(asked);
    expect(res.status, res.raw).toBe(200);
    const claim = (await fx.claimsOf(d))[0]!;
    expect(claim.verified_at, 'the listed domain no longer counts under none').not.toBeNull();
    // First come under none: anyone listing it now takes it, and M can no longer list it back.
    const b = await f.t.createTenant('B a28n');
    expect((await none.putSso(b.apiKey, [d])).status).toBe(409);
    expect((await none.putSso(m.apiKey, [d])).status).toBe(200);
  });
});
