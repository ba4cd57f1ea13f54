import { sql } from 'kysely';
import type { Kysely } from 'kysely';

// Millisecond precision, like the JavaScript Date every reader turns it into, so keyset
// pagination cursors built from a Date compare exactly with the stored value.
const TIMESTAMP = sql`timestamptz(3)`;

// Migrations never import application code: they describe the schema as it was
// on the day they were written.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('tenants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('settings', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('tenant_api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', TIMESTAMP)
    .addColumn('last_used_at', TIMESTAMP)
    .execute();
  await db.schema
    .createIndex('tenant_api_keys_tenant_idx')
    .on('tenant_api_keys')
    .column('tenant_id')
    .execute();

  await db.schema
    .createTable('connections')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('connections_tenant_name_key', ['tenant_id', 'name'])
    .addUniqueConstraint('connections_tenant_id_key', ['tenant_id', 'id'])
    .execute();

  await db.schema
    .createTable('connected_accounts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('connection_id', 'text', (c) => c.notNull())
    .addColumn('identifier', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('ACTIVE', 'INVALID', 'REVOKED')`))
    .addColumn('authorization_type', 'text', (c) =>
      c.notNull().check(sql`authorization_type in ('api_token', 'global_api_key')`),
    )
    .addColumn('token_kind', 'text', (c) => c.notNull().check(sql`token_kind in ('user', 'account')`))
    .addColumn('cf_user_id', 'text')
    .addColumn('cf_accounts', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('cf_token_id', 'text')
    .addColumn('token_status', 'text', (c) => c.notNull())
    .addColumn('expires_on', TIMESTAMP)
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', TIMESTAMP)
    .addColumn('revoked_at', TIMESTAMP)
    // The connection must belong to the same tenant as the account.
    .addForeignKeyConstraint(
      'connected_accounts_connection_fk',
      ['tenant_id', 'connection_id'],
      'connections',
      ['tenant_id', 'id'],
    )
    .execute();
  await db.schema
    .createIndex('connected_accounts_lookup_idx')
    .on('connected_accounts')
    .columns(['tenant_id', 'identifier', 'connection_id', 'status'])
    .execute();
  await db.schema
    .createIndex('connected_accounts_page_idx')
    .on('connected_accounts')
    .columns(['tenant_id', 'created_at', 'id'])
    .execute();

  await db.schema
    .createTable('sealed_credentials')
    .addColumn('connected_account_id', 'text', (c) =>
      c.primaryKey().references('connected_accounts.id').onDelete('cascade'),
    )
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('key_provider', 'text', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('wrapped_key', 'bytea', (c) => c.notNull())
    .addColumn('iv', 'bytea', (c) => c.notNull())
    .addColumn('ciphertext', 'bytea', (c) => c.notNull())
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('sealed_credentials_key_idx')
    .on('sealed_credentials')
    .column('key_id')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'sealed_credentials',
    'connected_accounts',
    'connections',
    'tenant_api_keys',
    'tenants',
  ]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}
