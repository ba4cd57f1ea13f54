import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_FOLDER, createTestDatabase } from '@warden/testing';
import { createDb } from './create-db.ts';
import type { Db } from './create-db.ts';
import { migrateToLatest } from './migrate.ts';

async function tableNames(db: Db) {
  const { rows } = await sql<{ table_name: string }>`
    select table_name from information_schema.tables where table_schema = 'public' order by table_name`.execute(
    db.kysely,
  );
  return rows.map((r) => r.table_name);
}

describe('migrations', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it('apply on real PostgreSQL and are idempotent', async () => {
    const t = await createTestDatabase({ migrate: false });
    cleanups.push(t.drop);
    const first = await migrateToLatest(t.db.kysely, MIGRATIONS_FOLDER);
    expect(first.applied.length).toBeGreaterThan(0);
    const second = await migrateToLatest(t.db.kysely, MIGRATIONS_FOLDER);
    expect(second.applied).toEqual([]);
    expect(await tableNames(t.db)).toEqual(
      expect.arrayContaining(['tenants', 'connected_accounts', 'sealed_credentials']),
    );
  });

  it('apply on PGlite, giving the same tables as PostgreSQL', async () => {
    const lite = await createDb({ kind: 'pglite', dataDir: null });
    cleanups.push(() => lite.close());
    await migrateToLatest(lite.kysely, MIGRATIONS_FOLDER);
    const t = await createTestDatabase();
    cleanups.push(t.drop);
    expect(await tableNames(lite)).toEqual(await tableNames(t.db));
  });
});
