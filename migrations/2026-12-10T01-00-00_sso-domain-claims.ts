import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * An email domain signs in to one tenant only. The sign-in page sends an engineer to the
 * identity provider of the tenant whose SSO lists their email domain, and any tenant could list
 * any domain, so a tenant listing another's domain could receive that tenant's engineers (at an
 * identity provider it runs). `tenant_sso_domains` holds each domain once (first come), beside
 * the configuration's own list, and goes with the configuration.
 *
 * A domain listed by several tenants already stays with the configuration made first; the
 * others' lists lose it (a list can end up empty: that tenant's SSO then signs nobody in until
 * it lists a domain of its own).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('tenant_sso_domains')
    .addColumn('domain', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) =>
      c.notNull().references('tenant_sso_configs.tenant_id').onDelete('cascade'),
    )
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index tenant_sso_domains_tenant_idx on tenant_sso_domains (tenant_id)`.execute(db);
  await sql`
    insert into tenant_sso_domains (domain, tenant_id)
    select distinct on (d.domain) d.domain, s.tenant_id
    from tenant_sso_configs s
    cross join lateral jsonb_array_elements_text(s.allowed_email_domains) as d(domain)
    order by d.domain, s.created_at, s.tenant_id
  `.execute(db);
  await sql`
    update tenant_sso_configs s
    set allowed_email_domains = coalesce(
      (
        select jsonb_agg(e.domain order by e.position)
        from jsonb_array_elements_text(s.allowed_email_domains) with ordinality as e(domain, position)
        join tenant_sso_domains d on d.domain = e.domain and d.tenant_id = s.tenant_id
      ),
      '[]'::jsonb
    )
    where exists (
      select 1
      from jsonb_array_elements_text(s.allowed_email_domains) as e(domain)
      join tenant_sso_domains d on d.domain = e.domain and d.tenant_id <> s.tenant_id
    )
  `.execute(db);
  // Sign-in looks domains up in the new table; the list's index served the old lookup only.
  await sql`drop index if exists tenant_sso_configs_domains_idx`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`create index if not exists tenant_sso_configs_domains_idx on tenant_sso_configs using gin (allowed_email_domains)`.execute(
    db,
  );
  await db.schema.dropTable('tenant_sso_domains').ifExists().execute();
}
