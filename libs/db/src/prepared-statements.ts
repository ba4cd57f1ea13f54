import type pg from 'pg';

/**
 * Names the statements a process runs again and again, so that each PostgreSQL connection
 * parses them once and can reuse their plan, instead of parsing and planning the same SQL on
 * every call (Kysely sends unnamed statements). On the execute path that planning was about
 * half of PostgreSQL's time per call.
 *
 * - Only data statements (select, insert, update, delete, with) qualify, after `minUses`
 *   runs, and at most `maxStatements` distinct texts ever get a name: one-off shapes (an
 *   audit batch of 317 records, an admin listing) stay unnamed and cost nothing.
 * - A schema change can make a prepared statement unusable ("cached plan must not change
 *   result type" after `select *` meets a new column). The text then gets a fresh name,
 *   which every connection prepares anew, and the query is retried once if the connection
 *   is outside a transaction (the failed statement ran nothing). Inside a transaction the
 *   error stands: the transaction is already aborted.
 * - Named statements need a session per connection: behind a transaction-mode pooler
 *   (PgBouncer before 1.21) turn them off (`DATABASE_PREPARED_STATEMENTS=false`).
 */
export interface PreparedStatementOptions {
  /** Runs of a text before it gets a name. */
  readonly minUses?: number;
  /** Distinct texts that may ever get a name in this process (each connection prepares at most these). */
  readonly maxStatements?: number;
  /** Longer texts are never named. */
  readonly maxTextLength?: number;
}

const DATA_STATEMENT = /^\s*(select|insert|update|delete|with)\b/i;
/** Times a text is renamed after stale-statement errors before it stays unnamed for good. */
const MAX_RENAMES = 3;

/** A prepared statement that no longer fits its schema, or that the session lost. */
function isStaleStatement(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (code === '26000') return true;
  return code === '0A000' && typeof message === 'string' && message.includes('cached plan must not change');
}

type QueryFn = (text: unknown, values?: unknown, callback?: unknown) => unknown;

export interface StatementNamer {
  /** Wraps a freshly connected client's `query` so repeated statements run by name. */
  install(client: pg.PoolClient): void;
  /** Distinct texts that run by name. */
  named(): number;
}

export function createStatementNamer(options: PreparedStatementOptions = {}): StatementNamer {
  const minUses = options.minUses ?? 3;
  const maxStatements = options.maxStatements ?? 256;
  const maxTextLength = options.maxTextLength ?? 16_384;
  const uses = new Map<string, number>();
  /** A text's current name; null once it was renamed too often to be worth naming. */
  const names = new Map<string, string | null>();
  const renames = new Map<string, number>();
  let generation = 0;

  function nameFor(text: string): string | undefined {
    const name = names.get(text);
    if (name !== undefined) return name ?? undefined;
    if (names.size >= maxStatements || text.length > maxTextLength || !DATA_STATEMENT.test(text)) {
      return undefined;
    }
    const count = (uses.get(text) ?? 0) + 1;
    if (count < minUses) {
      // Bounded: texts that never reach minUses must not grow this map forever.
      if (uses.size >= maxStatements * 4) uses.clear();
      uses.set(text, count);
      return undefined;
    }
    uses.delete(text);
    const fresh = `warden_${++generation}`;
    names.set(text, fresh);
    return fresh;
  }

  /** Gives a stale statement's text a new name (or none); false if the error is another one. */
  function renameIfStale(text: string, name: string, error: unknown): boolean {
    if (!isStaleStatement(error)) return false;
    // Another caller may have renamed it already; either way the next run uses the new name.
    if (names.get(text) === name) {
      const count = (renames.get(text) ?? 0) + 1;
      renames.set(text, count);
      names.set(text, count > MAX_RENAMES ? null : `warden_${++generation}`);
    }
    return true;
  }

  return {
    named: () => [...names.values()].filter((name) => name !== null).length,
    install(client) {
      const original = client.query.bind(client) as QueryFn;
      const query: QueryFn = (text, values, callback) => {
        // Cursors, config objects and callback-style calls go through untouched.
        if (typeof text !== 'string' || !Array.isArray(values) || callback !== undefined) {
          return original(text, values, callback);
        }
        const name = nameFor(text);
        if (name === undefined) return original(text, values);
        return (original({ name, text, values }) as Promise<unknown>).catch((error: unknown) => {
          if (renameIfStale(text, name, error) && client.getTransactionStatus() === 'I') {
            const renamed = names.get(text);
            return renamed ? original({ name: renamed, text, values }) : original(text, values);
          }
          throw error;
        });
      };
      (client as unknown as { query: QueryFn }).query = query;
    },
  };
}
