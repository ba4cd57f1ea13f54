import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';
import { startDomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { DomainProofFixture } from './test-support/sso-domain-proof.ts';
import type { TestDns } from './test-support/test-dns.ts';

const HOUR_MS = 3_600_000;

/**
 * A domain proven by its DNS record stays proven only while the record is there: Warden looks it
 * up again (SSO_DOMAIN_RECHECK_HOURS, 24 by default), warns when it is gone, and lets the domain
 * lapse to pending once it stays gone for SSO_DOMAIN_LAPSE_HOURS (72), so a domain that changed
 * hands goes to whoever proves it next. Time passing is the claim's timestamps moved back.
 */
describe('SSO domain proofs are re-checked: a record gone for good lets the domain lapse', () => {
  let fx: DomainProofFixture;
  let f: OAuthFixture;
  let dns: TestDns;
  let record: { name: string; value: string };

  const recheck = () => f.t.container.ssoDomainRecheck.runOnce();
  /** Moves acme.com's last check (and, when given, the start of its missing record) back in time. */
  async function age(checkedHoursAgo: number, missingHoursAgo?: number) {
    await f.t.container.db.kysely
      .updateTable('tenant_sso_domains')
      .set({
        proof_checked_at: sql`now() - make_interval(hours => ${checkedHoursAgo})`,
        ...(missingHoursAgo !== undefined
          ? { proof_missing_since: sql`now() - make_interval(hours => ${missingHoursAgo})` }
          : {}),
      })
      .where('domain', '=', 'acme.com')
      .execute();
  }
  const acme = async () => (await fx.domainOf(f.tenant.apiKey, 'acme.com'))!;
  const asked = () => dns.questions.filter((q) => q === '_warden-challenge.acme.com TXT').length;
  const routesToAcme = async () => (await fx.signInGoesTo(ALICE.email)).url.startsWith(f.idp.issuer);

  beforeAll(async () => {
    fx = await startDomainProofFixture();
    ({ f, dns } = fx);
    const proven = await fx.prove(f.tenant.apiKey, 'acme.com');
    expect(proven.status, JSON.stringify(proven.body)).toBe(200);
    const shown = await acme();
    record = { name: shown.txt_record!.name, value: shown.txt_record!.value };
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('a verified domain shows the record that keeps it, and is not looked up again before its interval', async () => {
    expect(await acme()).toEqual({
      domain: 'acme.com',
      status: 'verified',
      txt_record: { type: 'TXT', ...record },
      proof_missing_since: null,
      lapses_at: null,
    });
    const before = asked();
    expect(await recheck()).toMatchObject({ checked: 0 });
    expect(asked()).toBe(before);

    // A day later it is looked up: the record is there, nothing changes but the check's time.
    await age(25);
    const report = await recheck();
    expect(report).toMatchObject({ checked: 1, unanswered: 0, applied: { kept: 1 } });
    expect(asked()).toBe(before + 1);
    const [claim] = await fx.claimsOf('acme.com');
    expect(Date.now() - claim!.proof_checked_at!.getTime()).toBeLessThan(60_000);
    expect(claim!.proof_missing_since).toBeNull();
    expect(await routesToAcme()).toBe(true);
  });

  it('DNS that does not answer is no evidence: nothing starts, the claim is asked again later', async () => {
    dns.setTxt(record.name, null);
    await age(25);
    dns.fail(true);
    try {
      expect(await recheck()).toMatchObject({ checked: 1, unanswered: 1, applied: { missing: 0 } });
    } finally {
      dns.fail(false);
    }
    expect((await acme()).proof_missing_since).toBeNull();
    expect(await fx.lifecycleEvents(f.tenant.apiKey, 'sso.domain_proof_missing')).toEqual([]);
    // Moved to the back of the queue: not due again until its interval.
    expect(await recheck()).toMatchObject({ checked: 0 });
  });

  it('a record found missing starts the grace: on the record, shown with the lapse time, still routing', async () => {
    await age(25);
    expect(await recheck()).toMatchObject({ checked: 1, applied: { missing: 1 } });
    const view = await acme();
    expect(view.status).toBe('verified');
    expect(view.txt_record).toEqual({ type: 'TXT', ...record });
    const since = Date.parse(view.proof_missing_since!);
    expect(Date.now() - since).toBeLessThan(60_000);
    expect(Date.parse(view.lapses_at!) - since).toBe(72 * HOUR_MS);
    expect(await routesToAcme()).toBe(true);

    const missing = await fx.lifecycleEvents(f.tenant.apiKey, 'sso.domain_proof_missing');
    expect(missing).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'system', id: null }),
        details: { domain: 'acme.com', record: record.name, lapses_at: view.lapses_at },
      }),
    ]);
    // While missing, it is looked up at every run (not once a day), so its return shows soon.
    await age(1);
    expect(await recheck()).toMatchObject({ checked: 1, applied: { still_missing: 1 } });
    expect((await acme()).proof_missing_since).toBe(view.proof_missing_since);
  });

  it('verify while the record is missing says so with the lapse time; the record back ends the grace at once', async () => {
    const refused = await fx.verify(f.tenant.apiKey, 'acme.com');
    expect(refused.status, JSON.stringify(refused.body)).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'invalid_request', field: 'domain' });
    expect(refused.body.error?.message).toContain(record.name);
    expect(refused.body.error?.message).toContain((await acme()).lapses_at);

    dns.setTxt(record.name, ['v=spf1 -all', record.value]);
    const back = await fx.verify(f.tenant.apiKey, 'acme.com');
    expect(back.status, JSON.stringify(back.body)).toBe(200);
    expect(back.body.sso?.domains.find((d) => d.domain === 'acme.com')).toMatchObject({
      status: 'verified',
      proof_missing_since: null,
      lapses_at: null,
    });
    const restored = await fx.lifecycleEvents(f.tenant.apiKey, 'sso.domain_proof_restored');
    expect(restored).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'api_key' }),
        details: expect.objectContaining({ domain: 'acme.com', record: record.name }),
      }),
    ]);
  });

  it('a record gone past the grace lapses the domain: pending with the same record, routing nobody, on the record', async () => {
    dns.setTxt(record.name, null);
    await age(25);
    expect(await recheck()).toMatchObject({ applied: { missing: 1 } });
    // Not yet: 71 hours missing.
    await age(1, 71);
    expect(await recheck()).toMatchObject({ applied: { still_missing: 1, lapsed: 0 } });
    expect((await acme()).status).toBe('verified');
    // 73 hours missing: lapsed.
    await age(1, 73);
    expect(await recheck()).toMatchObject({ applied: { lapsed: 1 } });
    expect(await acme()).toEqual({
      domain: 'acme.com',
      status: 'pending',
      txt_record: { type: 'TXT', ...record },
      proof_missing_since: null,
      lapses_at: null,
    });
    expect(await routesToAcme()).toBe(false);
    const lapsed = await fx.lifecycleEvents(f.tenant.apiKey, 'sso.domain_lapsed');
    expect(lapsed).toEqual([
      expect.objectContaining({
        caller: expect.objectContaining({ type: 'system' }),
        details: expect.objectContaining({ domain: 'acme.com', record: record.name }),
      }),
    ]);
    // A pending claim is not looked up again by the re-check.
    await age(48);
    expect(await recheck()).toMatchObject({ checked: 0 });

    // In the SIEM exports too, in every format.
    for (const format of ['ndjson', 'ocsf', 'cef']) {
      const exported = await f.t.auditExport(f.tenant.apiKey, format);
      for (const action of ['sso.domain_proof_missing', 'sso.domain_proof_restored', 'sso.domain_lapsed']) {
        expect(exported, `${format} ${action}`).toContain(action);
      }
    }
  });

  it('the domain changed hands: its new owner proves it, and the old claim is lost on its trail', async () => {
    const globex = await f.t.createTenant('Globex');
    const listed = await fx.putSso(globex.apiKey, ['acme.com']);
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    const theirs = listed.body.sso?.domains[0]?.txt_record;
    dns.setTxt(theirs!.name, [theirs!.value]);
    const proven = await fx.verify(globex.apiKey, 'acme.com');
    expect(proven.status, JSON.stringify(proven.body)).toBe(200);
    expect((await acme()).status).toBe('held_elsewhere');
    expect(await fx.lifecycleEvents(f.tenant.apiKey, 'sso.domain_lost')).toEqual([
      expect.objectContaining({
        details: { domain: 'acme.com', reason: 'proven_by_another_organization', proven: 'acme.com' },
      }),
    ]);
  });
});
