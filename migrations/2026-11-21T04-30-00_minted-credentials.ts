import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * Credentials an agent created through Warden (API tokens, Access service tokens, Stream
 * signing keys), when the tenant policy allows it: offboarding revokes the ones still live
 * with the credential that created them. Only Cloudflare's id is kept, never a secret.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('minted_credentials')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('identifier', 'text', (c) => c.notNull())
    .addColumn('connected_account_id', 'text', (c) =>
      c.notNull().references('connected_accounts.id').onDelete('cascade'),
    )
    .addColumn('execution_id', 'text')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('upstream_id', 'text', (c) => c.notNull())
    // The DELETE path that revokes it (the creation path plus the id).
    .addColumn('revoke_path', 'text', (c) => c.notNull())
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', TIMESTAMP)
    .addColumn('last_error', 'text')
    .execute();
  await sql`create index minted_credentials_live_idx on minted_credentials (tenant_id, connected_account_id) where revoked_at is null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('minted_credentials').ifExists().execute();
}
