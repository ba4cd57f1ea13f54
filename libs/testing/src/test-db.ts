import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDb, createMigrator, migrateToLatest } from '@warden/db';
import type { Db } from '@warden/db';
import { randomString } from '@warden/core';
import type { Kysely } from 'kysely';
import type { Migrator } from 'kysely/migration';
import pg from 'pg';

export const MIGRATIONS_FOLDER = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../migrations',
);

/** A migrator over the project's migrations, for tests that move a database between them. */
export function testMigrator<DB>(db: Kysely<DB>): Migrator {
  return createMigrator(db, MIGRATIONS_FOLDER);
}

export interface TestDatabase {
  readonly db: Db;
  /** Connection string of this test's own database. */
  readonly url: string;
  drop(): Promise<void>;
}

function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set (see vitest.global-setup.ts)');
  return url;
}

/** A fresh, migrated database on the DATABASE_URL server, so test files can run in parallel. */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `warden_test_${randomString(12)}`;
  const admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl());
  url.pathname = `/${name}`;
  const db = await createDb({ kind: 'postgres', url: url.toString(), poolSize: 5 });
  if (options.migrate !== false) await migrateToLatest(db.kysely, MIGRATIONS_FOLDER);
  return {
    db,
    url: url.toString(),
    async drop() {
      await db.close().catch(() => {});
      const client = new pg.Client({ connectionString: serverUrl() });
      await client.connect();
      try {
        await client.query(`drop database if exists ${name} with (force)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** An empty database (no migration applied) and a way to move it to any migration, for migration tests. */
export interface MigrationTestDatabase {
  readonly db: Kysely<unknown>;
  /** Applies (or reverts) migrations up to and including `name`; throws a migration's error. */
  migrateTo(name: string): Promise<void>;
  drop(): Promise<void>;
}

export async function createMigrationTestDatabase(): Promise<MigrationTestDatabase> {
  const test = await createTestDatabase({ migrate: false });
  const db = test.db.kysely as unknown as Kysely<unknown>;
  const migrator = testMigrator(db);
  return {
    db,
    async migrateTo(name) {
      const result = await migrator.migrateTo(name);
      if (result.error) throw result.error;
    },
    drop: () => test.drop(),
  };
}
