import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * How a routing SSO domain claim was proven: `dns` (its TXT record) or `listing` (listed where the
 * deployment asked no proof, `SSO_DOMAIN_PROOF=none`). Under `dns`, a claim proven by listing
 * alone counts no more: Warden turns it back into a pending claim with a proof token, so a
 * deployment that ran without the proof for a while does not keep routing domains nobody proved.
 *
 * Existing rows: a claim that routes without a proof token, made after the proofs migration,
 * was proven by listing (it gets a token now). Claims made before it (taken as proven then) and claims with a token
 * stay unmarked (null) and keep routing: a pending claim that came to count by listing, under
 * `none`, cannot be told from one proven by DNS.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('tenant_sso_domains')
    .addColumn('proven_by', 'text', (col) => col.check(sql`proven_by in ('dns', 'listing')`))
    .execute();
  // They get a proof token (122 random bits of gen_random_uuid, base64url) to be proven with.
  await sql`
    update tenant_sso_domains
    set proven_by = 'listing',
      proof_token = rtrim(translate(encode(decode(replace(gen_random_uuid()::text, '-', ''), 'hex'), 'base64'), '+/', '-_'), '=')
    where verified_at is not null and proof_token is null
      and created_at > coalesce(
        (select timestamp::timestamptz from kysely_migration where name = '2026-12-12T00-00-00_sso-domain-proofs'),
        '-infinity'::timestamptz)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('tenant_sso_domains').dropColumn('proven_by').execute();
}
