import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/** Every table that holds envelope-sealed secrets (libs/vault SEALED_TABLES). */
const SEALED = [
  'sealed_credentials',
  'audit_sinks',
  'tenant_webhooks',
  'tenant_sso_configs',
  'oauth_server_keys',
];

/**
 * Sealed secrets say how they are bound to their row. The rows already sealed keep format 1 (the
 * KMS context and AAD named every kind a connected account); the service seals format 2 (kind and
 * id) and says so in each write. The default stays 1 so a replica still running the previous
 * release during a rolling deploy writes rows that read back right; `warden keys rotate`
 * re-seals format-1 rows.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  for (const table of SEALED) {
    await sql`alter table ${sql.table(table)} add column seal_format smallint not null default 1
      check (seal_format in (1, 2))`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of SEALED) {
    await sql`alter table ${sql.table(table)} drop column seal_format`.execute(db);
  }
}
