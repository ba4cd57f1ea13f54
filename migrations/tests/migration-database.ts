import type { Kysely } from 'kysely';
import { afterAll, beforeAll } from 'vitest';
import { createMigrationTestDatabase } from '@warden/testing';
import type { MigrationTestDatabase } from '@warden/testing';

/**
 * A database of the calling test file's own with no migration applied, created before its tests
 * and dropped after them: `db` to write and read, `migrateTo` to move it between migrations.
 */
export function useMigrationDatabase(): {
  readonly db: Kysely<unknown>;
  migrateTo(name: string): Promise<void>;
} {
  let database: MigrationTestDatabase | undefined;
  const created = (): MigrationTestDatabase => {
    if (!database) throw new Error('the migration database is created in beforeAll; use it in a test');
    return database;
  };
  beforeAll(async () => {
    database = await createMigrationTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });
  return {
    get db() {
      return created().db;
    },
    migrateTo: (name) => created().migrateTo(name),
  };
}
