import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { useMigrationDatabase } from './migration-database.ts';

/**
 * The migration that starts re-checking DNS proofs gives the claims already proven by DNS their
 * proof time as their last check (so they are due a day after it), and nothing else a check:
 * claims counted without a record (before proofs, by listing), unrecorded and pending ones.
 */
describe('migration 2026-12-14 sso-domain-recheck (from the attack28 campaign)', () => {
  const database = useMigrationDatabase();
  const migrateTo = (name: string) => database.migrateTo(name);
  const rows = async () =>
    (
      await sql<{
        domain: string;
        verified_at: Date | null;
        proof_checked_at: Date | null;
        proof_missing_since: Date | null;
      }>`select domain, verified_at, proof_checked_at, proof_missing_since from tenant_sso_domains order by domain`.execute(
        database.db,
      )
    ).rows;

  it('HELD: only DNS-proven claims get a last check (their proof time), none starts missing; down and up again the same', async () => {
    await migrateTo('2026-12-13T00-00-00_sso-domain-proven-by');
    await sql`insert into tenants (id, name) values ('ten_m', 'ten_m')`.execute(database.db);
    await sql`
      insert into tenant_sso_configs (tenant_id, id, issuer, client_id, identifier_claim, allowed_email_domains,
        key_provider, key_id, wrapped_key, iv, ciphertext)
      values ('ten_m', 'sso:ten_m', 'https://idp.example', 'client', 'email', '[]'::jsonb,
        'local', 'k1', '\\x00'::bytea, '\\x00'::bytea, '\\x00'::bytea)`.execute(database.db);
    await sql`
      insert into tenant_sso_domains (domain, tenant_id, created_at, verified_at, proof_token, proven_by) values
        ('dns.example', 'ten_m', now(), now() - interval '30 days', 'tok_dns', 'dns'),
        ('before.example', 'ten_m', now(), now() - interval '30 days', null, 'before_proofs'),
        ('listed.example', 'ten_m', now(), now() - interval '30 days', 'tok_listed', 'listing'),
        ('unrecorded.example', 'ten_m', now(), now() - interval '30 days', 'tok_unrec', null),
        ('pending.example', 'ten_m', now(), null, 'tok_pending', null)`.execute(database.db);
    const check = async () => {
      const all = await rows();
      for (const r of all) {
        expect(r.proof_missing_since, r.domain).toBeNull();
        if (r.domain === 'dns.example') expect(r.proof_checked_at?.getTime()).toBe(r.verified_at?.getTime());
        else expect(r.proof_checked_at, r.domain).toBeNull();
      }
    };
    await migrateTo('2026-12-14T00-00-00_sso-domain-recheck');
    await check();
    await migrateTo('2026-12-13T00-00-00_sso-domain-proven-by');
    await migrateTo('2026-12-14T00-00-00_sso-domain-recheck');
    await check();
  });
});
