import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * An email domain routes to a tenant's identity provider only once the tenant has proven it
 * holds the domain (a DNS TXT record), unless the deployment turns the proof off
 * (`SSO_DOMAIN_PROOF=none`: claims count at once, first come, as before). Until then several
 * tenants may list a domain, each with its own proof token; the first to prove it keeps it, and
 * the others' unproven claims of it (and of names under it) go.
 *
 * Claims made before this migration keep routing: they are taken as proven when they were made.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('tenant_sso_domains')
    .addColumn('verified_at', TIMESTAMP)
    .addColumn('proof_token', 'text')
    .execute();
  await sql`update tenant_sso_domains set verified_at = created_at`.execute(db);
  await sql`alter table tenant_sso_domains drop constraint tenant_sso_domains_pkey`.execute(db);
  await sql`alter table tenant_sso_domains add primary key (domain, tenant_id)`.execute(db);
  await sql`create unique index tenant_sso_domains_verified_idx on tenant_sso_domains (domain) where verified_at is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`delete from tenant_sso_domains where verified_at is null`.execute(db);
  await sql`drop index if exists tenant_sso_domains_verified_idx`.execute(db);
  await sql`alter table tenant_sso_domains drop constraint tenant_sso_domains_pkey`.execute(db);
  await sql`alter table tenant_sso_domains add primary key (domain)`.execute(db);
  await db.schema
    .alterTable('tenant_sso_domains')
    .dropColumn('verified_at')
    .dropColumn('proof_token')
    .execute();
}
