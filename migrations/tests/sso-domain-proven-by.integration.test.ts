import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { useMigrationDatabase } from './migration-database.ts';

interface ClaimRow {
  domain: string;
  verified_at: Date | null;
  proof_token: string | null;
  proven_by: string | null;
}

/**
 * The migration that records how a routing SSO domain claim was proven marks the claims already
 * there: made before the proofs migration (kept), routing without a token (listed: given a token
 * to be proven with), routing with a token by its trail (the last sso.domain_verified record's
 * proof; none left: proven again), pending (nothing).
 */
describe('migration 2026-12-13 sso-domain-proven-by', () => {
  const database = useMigrationDatabase();
  const migrateTo = (name: string) => database.migrateTo(name);

  it('marks how each routing claim was proven, and only routing ones', async () => {
    await migrateTo('2026-12-10T01-00-00_sso-domain-claims');
    for (const tenant of ['ten_a', 'ten_b', 'ten_c', 'ten_d']) {
      await sql`insert into tenants (id, name) values (${tenant}, ${tenant})`.execute(database.db);
      // Claims belong to an SSO configuration (its sealed secret is not read here).
      await sql`
        insert into tenant_sso_configs (tenant_id, id, issuer, client_id, identifier_claim, allowed_email_domains,
          key_provider, key_id, wrapped_key, iv, ciphertext)
        values (${tenant}, ${`sso:${tenant}`}, 'https://idp.example', 'client', 'email', '[]'::jsonb,
          'local', 'k1', '\\x00'::bytea, '\\x00'::bytea, '\\x00'::bytea)`.execute(database.db);
    }
    // Made before there were proofs (two hours ago): the proofs migration took it as proven.
    await sql`insert into tenant_sso_domains (domain, tenant_id, created_at)
      values ('old.example', 'ten_a', now() - interval '2 hours')`.execute(database.db);
    await migrateTo('2026-12-12T00-00-00_sso-domain-proofs');
    // As if the migrations so far ran an hour ago (all of them: Kysely keeps them in that order).
    await sql`update kysely_migration set timestamp =
      to_char((timestamp::timestamptz - interval '1 hour') at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`.execute(
      database.db,
    );
    await sql`
      insert into tenant_sso_domains (domain, tenant_id, created_at, verified_at, proof_token) values
        ('listed.example', 'ten_b', now(), now() + interval '3 milliseconds', null),
        ('listed-same-ms.example', 'ten_b', now(), now(), null),
        ('proven.example', 'ten_c', now(), now() + interval '2 seconds', 'tok_proven'),
        ('proven-early.example', 'ten_c', now(), now() + interval '2 seconds', 'tok_early'),
        ('promoted.example', 'ten_c', now(), now() + interval '2 seconds', 'tok_promoted'),
        ('unrecorded.example', 'ten_c', now(), now() + interval '2 seconds', 'tok_unrecorded'),
        ('pending.example', 'ten_d', now(), null, 'tok_pending')`.execute(database.db);
    // Their trail: proven by DNS; proven by DNS before records named the proof; a pending claim
    // that came to count by listing; none (expired with its partition).
    let seq = 0;
    const verified = (domain: string, details: object) =>
      sql`insert into audit_events (id, tenant_id, seq, occurred_at, expires_on, kind, action, outcome,
          caller_type, prev_hash, hash, details)
        values (${`aud_${++seq}`}, 'ten_c', ${seq}, now() + interval '2 seconds', current_date + 30, 'lifecycle',
          'sso.domain_verified', 'success', 'api_key', 'prev', 'hash', ${JSON.stringify({ domain, ...details })}::jsonb)`.execute(
        database.db,
      );
    await verified('proven.example', { proof: 'dns' });
    await verified('proven-early.example', {});
    await verified('promoted.example', { proof: 'none' });

    await migrateTo('2026-12-13T00-00-00_sso-domain-proven-by');
    const { rows } = await sql<ClaimRow>`
      select domain, verified_at, proof_token, proven_by from tenant_sso_domains order by domain`.execute(
      database.db,
    );
    const byDomain = Object.fromEntries(rows.map((r) => [r.domain, r]));
    expect(byDomain['listed.example']?.proven_by).toBe('listing');
    expect(byDomain['listed.example']?.proof_token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(byDomain['listed.example']?.verified_at).not.toBeNull();
    // Stamped in the same millisecond as it was made, but long after the proofs migration: listed.
    expect(byDomain['listed-same-ms.example']?.proven_by).toBe('listing');
    expect(byDomain['old.example']).toMatchObject({ proven_by: 'before_proofs', proof_token: null });
    expect(byDomain['proven.example']).toMatchObject({ proven_by: 'dns', proof_token: 'tok_proven' });
    expect(byDomain['proven-early.example']?.proven_by).toBe('dns');
    expect(byDomain['promoted.example']).toMatchObject({ proven_by: 'listing', proof_token: 'tok_promoted' });
    // No record to go by: proven again, with the token it has.
    expect(byDomain['unrecorded.example']).toMatchObject({
      proven_by: 'listing',
      proof_token: 'tok_unrecorded',
    });
    expect(byDomain['pending.example']).toMatchObject({
      proven_by: null,
      proof_token: 'tok_pending',
      verified_at: null,
    });

    // Only those three values are taken.
    await expect(
      sql`update tenant_sso_domains set proven_by = 'guess' where domain = 'old.example'`.execute(
        database.db,
      ),
    ).rejects.toThrow(/check constraint/);

    // It can be undone, and applied again to the same marks.
    await migrateTo('2026-12-12T00-00-00_sso-domain-proofs');
    const { rows: columns } = await sql<{ column_name: string }>`
      select column_name from information_schema.columns where table_name = 'tenant_sso_domains'`.execute(
      database.db,
    );
    expect(columns.map((c) => c.column_name)).not.toContain('proven_by');
    await migrateTo('2026-12-13T00-00-00_sso-domain-proven-by');
    const { rows: again } = await sql<ClaimRow>`
      select domain, verified_at, proof_token, proven_by from tenant_sso_domains order by domain`.execute(
      database.db,
    );
    expect(again.map((r) => [r.domain, r.proven_by])).toEqual(rows.map((r) => [r.domain, r.proven_by]));
  });
});
