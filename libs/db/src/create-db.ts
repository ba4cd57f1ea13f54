import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Database } from './database.ts';
import { acquireDataDirLock } from './data-dir-lock.ts';
import type { DataDirLock } from './data-dir-lock.ts';
import { isDatabaseWriteRefused } from './errors.ts';
import { pglitePool } from './pglite-pool.ts';
import { createStatementNamer } from './prepared-statements.ts';
import type { PreparedStatementOptions } from './prepared-statements.ts';

export type DbOptions =
  | {
      kind: 'postgres';
      url: string;
      poolSize?: number;
      /** Fail a query that cannot get a connection within this time (ms). */
      connectionTimeoutMs?: number;
      statementTimeoutMs?: number;
      /**
       * Run repeated statements as named prepared statements (default on); off behind a
       * transaction-mode pooler. See prepared-statements.ts.
       */
      preparedStatements?: boolean | PreparedStatementOptions;
    }
  | { kind: 'pglite'; dataDir: string | null };

export interface Db {
  readonly kysely: Kysely<Database>;
  readonly kind: DbOptions['kind'];
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * `pglite` with `dataDir: null` keeps the database in memory (tests of the embedded path). A
 * `pglite` directory belongs to one process: the lock `<dataDir>.lock` is taken first and
 * released by `close()` (DataDirLockedError names the process holding it).
 */
export async function createDb(options: DbOptions): Promise<Db> {
  let dialect: PostgresDialect;
  let lock: DataDirLock | null = null;
  if (options.kind === 'postgres') {
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
      statement_timeout: options.statementTimeoutMs ?? 30_000,
      application_name: 'warden',
    });
    // An idle client that loses its server emits 'error' on the pool; without a
    // listener that would crash the process. The next query reports the outage.
    pool.on('error', () => {});
    const prepared = options.preparedStatements ?? true;
    const namer = prepared === false ? null : createStatementNamer(prepared === true ? {} : prepared);
    // A checked-out client whose server goes away between queries emits 'error' with no
    // listener of the pool's attached; queries on it fail on their own, so swallow the event.
    pool.on('connect', (client) => {
      client.on('error', () => {});
      namer?.install(client);
      recycleOnWriteRefusal(client);
    });
    dialect = new PostgresDialect({ pool });
  } else {
    if (options.dataDir !== null) {
      mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
      lock = acquireDataDirLock(options.dataDir);
    }
    const pglite = options.dataDir === null ? new PGlite() : new PGlite(options.dataDir);
    try {
      await pglite.waitReady;
    } catch (error) {
      lock?.release();
      throw error;
    }
    dialect = new PostgresDialect({ pool: pglitePool(pglite) });
  }
  const kysely = new Kysely<Database>({ dialect });
  return {
    kysely,
    kind: options.kind,
    async ping() {
      await sql`select 1`.execute(kysely);
    },
    async close() {
      try {
        await kysely.destroy();
      } finally {
        lock?.release();
      }
    },
  };
}

/**
 * A client whose query met a write refusal (read-only session, missing privilege) is destroyed
 * when released instead of going back to the pool: `ALTER DATABASE … SET
 * default_transaction_read_only` and most privilege fixes reach new sessions only, so the
 * service recovers by itself within a few queries of the fix.
 */
function recycleOnWriteRefusal(client: pg.PoolClient): void {
  const query = client.query;
  const poison = () => {
    const release = client.release;
    client.release = (error?: Error | boolean) =>
      release.call(client, error || new Error('recycled after the database refused a write'));
  };
  client.query = function (this: pg.PoolClient, ...args: unknown[]): unknown {
    const result = (query as (...a: unknown[]) => unknown).apply(this, args);
    if (result instanceof Promise) {
      result.catch((error: unknown) => {
        if (isDatabaseWriteRefused(error)) poison();
      });
    }
    return result;
  } as typeof client.query;
}
