import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FileMigrationProvider, Migrator } from 'kysely/migration';
import type { Kysely } from 'kysely';
import type { MigrationResultSet } from 'kysely/migration';

/** Kysely's migrator over the migration files in `folder`. */
export function createMigrator<DB>(db: Kysely<DB>, folder: string): Migrator {
  return new Migrator({
    db: db as unknown as Kysely<unknown>,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: path.resolve(folder) }),
  });
}

export interface MigrationReport {
  applied: string[];
}

/**
 * Applies every pending migration in `folder`. Kysely takes a lock table row inside
 * a transaction, so replicas starting together apply each migration once.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>, folder: string): Promise<MigrationReport> {
  const migrator = createMigrator(db, folder);
  const result: MigrationResultSet = await migrator.migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`migration ${failed} failed`, { cause: result.error });
  }
  return { applied: (result.results ?? []).map((r) => r.migrationName) };
}
