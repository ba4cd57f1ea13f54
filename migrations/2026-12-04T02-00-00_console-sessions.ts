import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * Admin console sign-ins, shared by every replica: the browser holds only a random session id
 * in an httpOnly cookie (stored here as its SHA-256), and each row keeps what it was signed in
 * with (a tenant API key id, or the admin token's fingerprint) so revoking that ends the session.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('console_sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('tenant', 'operator')`))
    .addColumn('tenant_id', 'text', (c) => c.references('tenants.id').onDelete('cascade'))
    .addColumn('api_key_id', 'text')
    .addColumn('admin_fingerprint', 'text')
    // The secret @fastify/csrf derives this session's anti-forgery tokens from.
    .addColumn('csrf_secret', 'text', (c) => c.notNull())
    .addColumn('ip', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_seen_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', TIMESTAMP, (c) => c.notNull())
    .addColumn('revoked_at', TIMESTAMP)
    .execute();
  await sql`create index console_sessions_key_idx on console_sessions (api_key_id) where api_key_id is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('console_sessions').execute();
}
