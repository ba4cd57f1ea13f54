import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * Delivery to the outside: tenants' SIEM sinks and their own webhook, both fed by a
 * transactional outbox written in the same transaction as the change it reports.
 * Sink and webhook secrets are sealed like credentials (envelope encryption).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const sealedColumns = (t: ReturnType<Kysely<unknown>['schema']['createTable']>) =>
    t
      .addColumn('key_provider', 'text')
      .addColumn('key_id', 'text')
      .addColumn('wrapped_key', 'bytea')
      .addColumn('iv', 'bytea')
      .addColumn('ciphertext', 'bytea');

  await sealedColumns(
    db.schema
      .createTable('audit_sinks')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      // The sink configuration without its secret (webhook secret, HEC token).
      .addColumn('config', 'jsonb', (c) => c.notNull())
      .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true)),
  )
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('audit_sinks_tenant_idx')
    .on('audit_sinks')
    .columns(['tenant_id', 'enabled'])
    .execute();

  await sealedColumns(
    db.schema
      .createTable('tenant_webhooks')
      .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id').onDelete('cascade'))
      .addColumn('id', 'text', (c) => c.notNull().unique())
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true)),
  )
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('outbox')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('destination_type', 'text', (c) =>
      c.notNull().check(sql`destination_type in ('audit_sink', 'tenant_webhook')`),
    )
    .addColumn('destination_id', 'text', (c) => c.notNull())
    // The stable id receivers de-duplicate on (the audit event id, or the webhook event id).
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('payload', 'jsonb', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .defaultTo('pending')
        .check(sql`status in ('pending', 'sending', 'delivered', 'failed')`),
    )
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('delivery_id', 'text')
    .addColumn('last_error', 'text')
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('delivered_at', TIMESTAMP)
    .execute();
  await sql`create index outbox_due_idx on outbox (next_attempt_at) where status in ('pending', 'sending')`.execute(
    db,
  );
  await db.schema
    .createIndex('outbox_destination_idx')
    .on('outbox')
    .columns(['tenant_id', 'destination_id', 'status'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('outbox').ifExists().execute();
  await db.schema.dropTable('tenant_webhooks').ifExists().execute();
  await db.schema.dropTable('audit_sinks').ifExists().execute();
}
