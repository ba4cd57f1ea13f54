import { promises as fs } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { FileMigrationProvider, Migrator } from 'kysely/migration';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_FOLDER, createTestDatabase } from '@warden/testing';
import type { TestDatabase } from '@warden/testing';

interface ClaimRow {
  domain: string;
  verified_at: Date | null;
  proof_token: string | null;
  proven_by: string | null;
}

/**
 * The migration that records how a routing SSO domain claim was proven marks, among the claims
 * already there, exactly those that count only because they were listed (made after the proofs
 * migration, routing, with no proof token) and gives them a token to be proven with.
 */
describe('migration 2026-12-13 sso-domain-proven-by', () => {
  let tdb: TestDatabase;
  let db: Kysely<unknown>;
  let migrator: Migrator;

  async function migrateTo(name: string): Promise<void> {
    const result = await migrator.migrateTo(name);
    if (result.error) throw result.error;
  }

  beforeAll(async () => {
    tdb = await createTestDatabase({ migrate: false });
    db = tdb.db.kysely as unknown as Kysely<unknown>;
    migrator = new Migrator({
      db,
      provider: new FileMigrationProvider({ fs, path, migrationFolder: path.resolve(MIGRATIONS_FOLDER) }),
    });
  });
  afterAll(async () => {
    await tdb?.drop();
  });

  it('marks claims that route by listing alone, and only those', async () => {
    await migrateTo('2026-12-10T01-00-00_sso-domain-claims');
    for (const tenant of ['ten_a', 'ten_b', 'ten_c', 'ten_d']) {
      await sql`insert into tenants (id, name) values (${tenant}, ${tenant})`.execute(db);
      // Claims belong to an SSO configuration (its sealed secret is not read here).
      await sql`
        insert into tenant_sso_configs (tenant_id, id, issuer, client_id, identifier_claim, allowed_email_domains,
          key_provider, key_id, wrapped_key, iv, ciphertext)
        values (${tenant}, ${`sso:${tenant}`}, 'https://idp.example', 'client', 'email', '[]'::jsonb,
          'local', 'k1', '\\x00'::bytea, '\\x00'::bytea, '\\x00'::bytea)`.execute(db);
    }
    // Made before there were proofs: the proofs migration took it as proven.
    await sql`insert into tenant_sso_domains (domain, tenant_id) values ('old.example', 'ten_a')`.execute(db);
    await migrateTo('2026-12-12T00-00-00_sso-domain-proofs');
    await sql`
      insert into tenant_sso_domains (domain, tenant_id, created_at, verified_at, proof_token) values
        ('listed.example', 'ten_b', now() + interval '1 second', now() + interval '1 second', null),
        ('proven.example', 'ten_c', now() + interval '1 second', now() + interval '2 seconds', 'tok_proven'),
        ('pending.example', 'ten_d', now() + interval '1 second', null, 'tok_pending')`.execute(db);

    await migrateTo('2026-12-13T00-00-00_sso-domain-proven-by');
    const { rows } = await sql<ClaimRow>`
      select domain, verified_at, proof_token, proven_by from tenant_sso_domains order by domain`.execute(db);
    const byDomain = Object.fromEntries(rows.map((r) => [r.domain, r]));
    expect(byDomain['listed.example']?.proven_by).toBe('listing');
    expect(byDomain['listed.example']?.proof_token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(byDomain['listed.example']?.verified_at).not.toBeNull();
    expect(byDomain['old.example']).toMatchObject({ proven_by: null, proof_token: null });
    expect(byDomain['proven.example']).toMatchObject({ proven_by: null, proof_token: 'tok_proven' });
    expect(byDomain['pending.example']).toMatchObject({
      proven_by: null,
      proof_token: 'tok_pending',
      verified_at: null,
    });

    // Only those two values are taken.
    await expect(
      sql`update tenant_sso_domains set proven_by = 'guess' where domain = 'old.example'`.execute(db),
    ).rejects.toThrow(/check constraint/);

    // And it can be undone.
    await migrateTo('2026-12-12T00-00-00_sso-domain-proofs');
    const { rows: columns } = await sql<{ column_name: string }>`
      select column_name from information_schema.columns where table_name = 'tenant_sso_domains'`.execute(db);
    expect(columns.map((c) => c.column_name)).not.toContain('proven_by');
  });
});
