import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

export async function up(db: Kysely<unknown>): Promise<void> {
  // Per-user MCP session tokens: only a SHA-256 of the token is stored.
  await db.schema
    .createTable('mcp_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('identifier', 'text', (c) => c.notNull())
    .addColumn('connection_names', 'jsonb')
    .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
    .addColumn('audience', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text')
    .addColumn('expires_at', TIMESTAMP, (c) => c.notNull())
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', TIMESTAMP)
    .addColumn('last_used_at', TIMESTAMP)
    // MCP clientInfo from the last initialize, so stateless requests on any replica can attribute calls.
    .addColumn('client_name', 'text')
    .addColumn('client_version', 'text')
    .execute();
  await db.schema
    .createIndex('mcp_tokens_identity_idx')
    .on('mcp_tokens')
    .columns(['tenant_id', 'identifier'])
    .execute();

  // Policies for one identifier; the tenant-wide policy lives in tenants.settings.
  await db.schema
    .createTable('identity_policies')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('identifier', 'text', (c) => c.notNull())
    .addColumn('policy', 'jsonb', (c) => c.notNull())
    .addColumn('updated_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('identity_policies_pk', ['tenant_id', 'identifier'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('identity_policies').ifExists().execute();
  await db.schema.dropTable('mcp_tokens').ifExists().execute();
}
