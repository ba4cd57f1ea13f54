import { createHash } from 'node:crypto';
import type pg from 'pg';

/**
 * Names the statements a process runs again and again, so that each PostgreSQL connection
 * parses them once and can reuse their plan, instead of parsing and planning the same SQL on
 * every call (Kysely sends unnamed statements). On the execute path that planning was about
 * half of PostgreSQL's time per call.
 *
 * - Only parameterized data statements (select, insert, update, delete, with) run outside a
 *   transaction qualify, after `minUses` runs, and at most `maxStatements` distinct texts ever
 *   get a name: one-off shapes (an audit batch of 317 records, an admin listing) and
 *   transactions (rare writes) stay unnamed, as do parameterless texts (which may hold
 *   several statements, something only an unnamed simple query can run).
 * - A name is a hash of the text, so it means the same SQL in every process.
 * - A schema change can make a prepared statement unusable ("cached plan must not change
 *   result type" after `select *` meets a new column), and a session can lose one
 *   (`DEALLOCATE ALL`). The text then gets a new name, which every connection prepares anew,
 *   and the query is retried once: it failed before running, outside any transaction.
 * - Named statements need a server session per client connection. Behind a transaction-mode
 *   pooler that does not track them (PgBouncer before 1.21, or later with
 *   `max_prepared_statements = 0`, the default before 1.24) set
 *   `DATABASE_PREPARED_STATEMENTS=false`.
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
/** Texts counted towards `minUses` at most; the count starts over beyond it. */
const MAX_COUNTED_TEXTS = 512;

/** A prepared statement that no longer fits its schema, or that the session lost. */
function isStaleStatement(error: unknown): boolean {
  const { code, routine, message } = (error ?? {}) as {
    code?: unknown;
    routine?: unknown;
    message?: unknown;
  };
  if (code === '26000') return true;
  // The routine name does not depend on the server's message language.
  return (
    code === '0A000' &&
    (routine === 'RevalidateCachedQuery' ||
      (typeof message === 'string' && message.includes('cached plan must not change')))
  );
}

function statementName(text: string, renames: number): string {
  return `warden_${createHash('sha256').update(`${renames}\0${text}`).digest('hex').slice(0, 24)}`;
}

type QueryFn = (text: unknown, values?: unknown, callback?: unknown) => unknown;

export interface StatementNamer {
  /** Wraps a freshly connected client's `query` so repeated statements run by name. */
  install(client: pg.PoolClient): void;
}

export function createStatementNamer(options: PreparedStatementOptions = {}): StatementNamer {
  const minUses = options.minUses ?? 3;
  const maxStatements = options.maxStatements ?? 256;
  const maxTextLength = options.maxTextLength ?? 16_384;
  const uses = new Map<string, number>();
  /** A text's current name; null once it was renamed too often to be worth naming. */
  const names = new Map<string, string | null>();
  const renames = new Map<string, number>();

  function nameFor(text: string): string | undefined {
    const name = names.get(text);
    if (name !== undefined) return name ?? undefined;
    if (names.size >= maxStatements || text.length > maxTextLength || !DATA_STATEMENT.test(text)) {
      return undefined;
    }
    const count = (uses.get(text) ?? 0) + 1;
    if (count < minUses) {
      // Bounded: texts that never reach minUses must not grow this map forever.
      if (uses.size >= MAX_COUNTED_TEXTS) uses.clear();
      uses.set(text, count);
      return undefined;
    }
    uses.delete(text);
    const fresh = statementName(text, 0);
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
      names.set(text, count > MAX_RENAMES ? null : statementName(text, count));
    }
    return true;
  }

  return {
    install(client) {
      const original = client.query.bind(client) as QueryFn;
      const query: QueryFn = (text, values, callback) => {
        // Cursors, config objects and callback-style calls go through untouched.
        if (typeof text !== 'string' || !Array.isArray(values) || callback !== undefined) {
          return original(text, values, callback);
        }
        // 'I': idle, outside a transaction (pg records the status of the last ReadyForQuery).
        const name = values.length > 0 && client.getTransactionStatus() === 'I' ? nameFor(text) : undefined;
        if (name === undefined) return original(text, values);
        return (original({ name, text, values }) as Promise<unknown>).catch((error: unknown) => {
          if (renameIfStale(text, name, error)) {
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
