import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * An R2 access key pair vaulted on a connected account, a second kind of credential beside its
 * API token: R2 requests sign with it when it is present. The pair is sealed as a whole (kind
 * `r2_access_key`, id = the connected account's); `access_key_id` is kept in clear only to show
 * which key is vaulted. Revoking the account deletes it with the account's own credential.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('r2_access_keys')
    .addColumn('connected_account_id', 'text', (c) =>
      c.primaryKey().references('connected_accounts.id').onDelete('cascade'),
    )
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('access_key_id', 'text', (c) => c.notNull())
    .addColumn('key_provider', 'text', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('wrapped_key', 'bytea', (c) => c.notNull())
    .addColumn('iv', 'bytea', (c) => c.notNull())
    .addColumn('ciphertext', 'bytea', (c) => c.notNull())
    .addColumn('seal_format', 'smallint', (c) =>
      c
        .notNull()
        .defaultTo(2)
        .check(sql`seal_format in (1, 2)`),
    )
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('r2_access_keys_key_idx').on('r2_access_keys').column('key_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('r2_access_keys').ifExists().execute();
}
