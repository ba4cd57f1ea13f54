import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * How a routing SSO domain claim was proven: `dns` (its TXT record), `listing` (listed where the
 * deployment asked no proof, `SSO_DOMAIN_PROOF=none`) or `before_proofs` (claimed first come
 * before the proofs migration, which took such claims as proven). Under `dns` only `dns` and
 * `before_proofs` count: a claim proven by listing alone, or whose proof was not recorded (a row a
 * release before this column writes during a rolling upgrade), is pending again, so a deployment
 * that ran without the proof for a while does not keep routing domains nobody proved.
 *
 * Claims already there are marked from what the rows and the trail say, failing closed:
 * - made before the proofs migration (no token, `verified_at` = `created_at`, as that migration
 *   set it) → `before_proofs`;
 * - counting without a token → `listing` (given a token now, to be proven with);
 * - counting with a token: `dns` if its last `sso.domain_verified` record says `proof: dns` (or
 *   names no proof: before records named it, only DNS proofs were recorded); `listing` if it says
 *   `none`, or if there is no record (expired with its partition): such a domain is proven again
 *   with the TXT record it already has.
 *
 * Down drops the column: a release before it treats listed claims as proven again, also under
 * `dns` (turning them back to pending would cut off sign-ins on deployments that run `none`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('tenant_sso_domains')
    .addColumn('proven_by', 'text', (col) => col.check(sql`proven_by in ('dns', 'listing', 'before_proofs')`))
    .execute();
  // The proofs migration's time (app clock) bounds claims it took as proven, with room for skew
  // against the database clock that stamped `created_at`. The trail is read newest first from
  // the claim's creation on (audit_events_time_idx).
  await sql`
    update tenant_sso_domains d
    set proven_by = case
      when d.proof_token is null and d.verified_at = d.created_at and d.created_at <= coalesce(
          (select timestamp::timestamptz + interval '5 minutes' from kysely_migration
           where name = '2026-12-12T00-00-00_sso-domain-proofs'),
          '-infinity'::timestamptz)
        then 'before_proofs'
      when d.proof_token is null then 'listing'
      when (
          select coalesce(e.details ->> 'proof', 'dns') from audit_events e
          where e.tenant_id = d.tenant_id and e.occurred_at >= d.created_at
            and e.kind = 'lifecycle' and e.action = 'sso.domain_verified' and e.details ->> 'domain' = d.domain
          order by e.occurred_at desc, e.seq desc limit 1
        ) = 'dns'
        then 'dns'
      else 'listing'
    end
    where d.verified_at is not null`.execute(db);
  // Listed claims get a proof token (122 random bits of gen_random_uuid, base64url).
  await sql`
    update tenant_sso_domains
    set proof_token = rtrim(translate(encode(decode(replace(gen_random_uuid()::text, '-', ''), 'hex'), 'base64'), '+/', '-_'), '=')
    where proven_by = 'listing' and proof_token is null`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('tenant_sso_domains').dropColumn('proven_by').execute();
}
