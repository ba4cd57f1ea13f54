import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * MCP sign-in with OAuth 2.1: the authorization server's state (grants, codes, tokens,
 * sessions, registered clients, pending sign-ins), shared by every replica; the server's
 * own keys; and each tenant's OpenID Connect provider, its client secret sealed like a credential.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('oauth_artifacts')
    .addColumn('model', 'text', (c) => c.notNull())
    // Bearer values (tokens, codes, cookies) are stored as their SHA-256 only.
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('payload', 'jsonb', (c) => c.notNull())
    .addColumn('grant_id', 'text')
    .addColumn('uid', 'text')
    // The signed-in identity, so offboarding finds everything of it in one statement.
    .addColumn('tenant_id', 'text')
    .addColumn('identifier', 'text')
    .addColumn('client_id', 'text')
    .addColumn('expires_at', TIMESTAMP)
    .addColumn('consumed_at', TIMESTAMP)
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('oauth_artifacts_pk', ['model', 'id'])
    .execute();
  await sql`create index oauth_artifacts_grant_idx on oauth_artifacts (grant_id) where grant_id is not null`.execute(
    db,
  );
  await sql`create index oauth_artifacts_uid_idx on oauth_artifacts (uid) where uid is not null`.execute(db);
  await sql`create index oauth_artifacts_identity_idx on oauth_artifacts (tenant_id, identifier, model) where tenant_id is not null`.execute(
    db,
  );
  await sql`create index oauth_artifacts_expiry_idx on oauth_artifacts (expires_at) where expires_at is not null`.execute(
    db,
  );

  const sealed = (t: ReturnType<Kysely<unknown>['schema']['createTable']>) =>
    t
      .addColumn('key_provider', 'text', (c) => c.notNull())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('wrapped_key', 'bytea', (c) => c.notNull())
      .addColumn('iv', 'bytea', (c) => c.notNull())
      .addColumn('ciphertext', 'bytea', (c) => c.notNull());

  // Cookie-signing keys and the token-signing key: one row every replica reads.
  await sealed(db.schema.createTable('oauth_server_keys').addColumn('id', 'text', (c) => c.primaryKey()))
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await sealed(
    db.schema
      .createTable('tenant_sso_configs')
      .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id').onDelete('cascade'))
      .addColumn('id', 'text', (c) => c.notNull().unique())
      .addColumn('issuer', 'text', (c) => c.notNull())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('identifier_claim', 'text', (c) => c.notNull())
      .addColumn('allowed_email_domains', 'jsonb', (c) => c.notNull()),
  )
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index tenant_sso_configs_domains_idx on tenant_sso_configs using gin (allowed_email_domains)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('tenant_sso_configs').ifExists().execute();
  await db.schema.dropTable('oauth_server_keys').ifExists().execute();
  await db.schema.dropTable('oauth_artifacts').ifExists().execute();
}
