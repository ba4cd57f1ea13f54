import type { PGlite } from '@electric-sql/pglite';
import type { PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';

/**
 * PGlite is a single Postgres backend. Kysely's Postgres driver expects a pool of
 * clients; this adapter hands out the one backend to one holder at a time, so a
 * transaction on one request never interleaves statements from another.
 */
export function pglitePool(pg: PGlite): PostgresPool {
  let tail: Promise<void> = Promise.resolve();

  async function connect(): Promise<PostgresPoolClient> {
    let release!: () => void;
    const previous = tail;
    tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    let released = false;
    return {
      async query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> {
        const result = await pg.query<R>(sql, parameters as unknown[]);
        return {
          command: (result.command?.toUpperCase() ?? 'SELECT') as PostgresQueryResult<R>['command'],
          rowCount: result.rowCount ?? result.affectedRows ?? result.rows.length,
          rows: result.rows,
        };
      },
      release() {
        if (released) return;
        released = true;
        release();
      },
    } as unknown as PostgresPoolClient;
  }

  return {
    connect,
    end: () => pg.close(),
    options: {},
  };
}
