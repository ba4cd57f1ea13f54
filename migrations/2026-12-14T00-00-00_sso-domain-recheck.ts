import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * A domain proven by its DNS record stays proven only while the record is there: Warden looks
 * it up again (`SSO_DOMAIN_RECHECK_HOURS`), and a claim whose record stays missing for
 * `SSO_DOMAIN_LAPSE_HOURS` lapses to pending, so a domain that changed hands can be proven by
 * its new owner. `proof_checked_at`: the last look-up that got an answer; `proof_missing_since`:
 * when a look-up first found the record missing (null while it is there).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('tenant_sso_domains')
    .addColumn('proof_checked_at', TIMESTAMP)
    .addColumn('proof_missing_since', TIMESTAMP)
    .execute();
  // The proof itself was the last look-up of claims proven by DNS so far.
  await sql`update tenant_sso_domains set proof_checked_at = verified_at where proven_by = 'dns'`.execute(db);
  await sql`create index tenant_sso_domains_recheck_idx on tenant_sso_domains (proof_checked_at) where proven_by = 'dns' and verified_at is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists tenant_sso_domains_recheck_idx`.execute(db);
  await db.schema
    .alterTable('tenant_sso_domains')
    .dropColumn('proof_checked_at')
    .dropColumn('proof_missing_since')
    .execute();
}
