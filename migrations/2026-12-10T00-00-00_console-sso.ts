import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * Console sign-in through the tenant's SSO. The SSO configuration names the identifiers that may
 * administer the tenant in the console (none by default). A session signed in that way keeps the
 * identifier and the configuration's `updated_at` it was signed in under: a changed or removed
 * configuration, an identifier no longer named, or an offboarding ends it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('tenant_sso_configs')
    .addColumn('console_admins', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .execute();
  await db.schema
    .alterTable('console_sessions')
    .addColumn('sso_identifier', 'text')
    .addColumn('sso_config_updated_at', sql`timestamptz(3)`)
    .execute();
  await sql`create index console_sessions_sso_idx on console_sessions (tenant_id, sso_identifier) where sso_identifier is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('console_sessions')
    .dropColumn('sso_identifier')
    .dropColumn('sso_config_updated_at')
    .execute();
  await db.schema.alterTable('tenant_sso_configs').dropColumn('console_admins').execute();
}
