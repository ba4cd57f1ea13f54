import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase } from '@warden/testing';
import { createDb } from './create-db.ts';
import type { Db, DbOptions } from './create-db.ts';
import type { Database } from './database.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A database of its own, reached through a one-connection pool so every query shares a session. */
async function database(
  preparedStatements: Extract<DbOptions, { kind: 'postgres' }>['preparedStatements'],
  poolSize = 1,
): Promise<{ db: Db; url: string }> {
  const test = await createTestDatabase({ migrate: false });
  cleanups.push(test.drop);
  // Set up over a connection of its own, so none of it counts towards the pool's statements.
  const setup = new pg.Client({ connectionString: test.url });
  await setup.connect();
  await setup.query(`create table items (id int primary key, label text not null);
    insert into items values (1, 'one'), (2, 'two')`);
  await setup.end();
  const db = await createDb({ kind: 'postgres', url: test.url, poolSize, preparedStatements });
  cleanups.push(() => db.close());
  return { db, url: test.url };
}

/** What this session has prepared: statement texts, or their names. */
async function prepared(kysely: Kysely<Database>): Promise<Array<{ name: string; statement: string }>> {
  const { rows } = await sql<{
    name: string;
    statement: string;
  }>`select name, statement from pg_prepared_statements`.execute(kysely);
  return rows;
}

async function preparedTexts(kysely: Kysely<Database>): Promise<string[]> {
  return (await prepared(kysely)).map((row) => row.statement);
}

const byId = (kysely: Kysely<Database>, id: number) =>
  sql<{ label: string }>`select label from items where id = ${id}`.execute(kysely);

describe('prepared statements', () => {
  it('names a data statement once it has run minUses times, and reuses it with new parameters', async () => {
    const { db } = await database({ minUses: 3 });
    await byId(db.kysely, 1);
    await byId(db.kysely, 2);
    expect(await preparedTexts(db.kysely)).toEqual([]);
    const third = await byId(db.kysely, 1);
    const fourth = await byId(db.kysely, 2);
    expect(third.rows).toEqual([{ label: 'one' }]);
    expect(fourth.rows).toEqual([{ label: 'two' }]);
    expect(await preparedTexts(db.kysely)).toEqual(['select label from items where id = $1']);
  });

  it('leaves one-off shapes, parameterless and utility statements, and texts past the cap unnamed', async () => {
    const { db } = await database({ minUses: 1, maxStatements: 2, maxTextLength: 200 });
    for (let i = 0; i < 4; i++) {
      await sql`set statement_timeout = 10000`.execute(db.kysely);
      // Several statements in one parameterless text: only an unnamed simple query can run it.
      await sql`select 1 as one; select count(*) from items`.execute(db.kysely);
      await sql`select ${i}::int as a`.execute(db.kysely);
      await sql`select ${i}::int as b`.execute(db.kysely);
      await sql`select ${i}::int as c`.execute(db.kysely);
      await sql`select ${'x'.repeat(10)} as long_${sql.raw('y'.repeat(300))}`.execute(db.kysely);
    }
    expect((await preparedTexts(db.kysely)).sort()).toEqual(['select $1::int as a', 'select $1::int as b']);
  });

  it('names a text the same way in every process, so a name always means the same SQL', async () => {
    const { db: first, url } = await database({ minUses: 1 });
    // A second pool on the same database: another replica.
    const second = await createDb({
      kind: 'postgres',
      url,
      poolSize: 1,
      preparedStatements: { minUses: 1 },
    });
    cleanups.push(() => second.close());
    // Different orders of first use: sequential names would differ, hashes do not.
    await sql`select ${1}::int as other`.execute(first.kysely);
    await byId(first.kysely, 1);
    await byId(second.kysely, 1);
    const names = async (kysely: Kysely<Database>) =>
      (await prepared(kysely)).find((row) => row.statement.startsWith('select label'))?.name;
    expect(await names(first.kysely)).toMatch(/^warden_[0-9a-f]{24}$/);
    expect(await names(second.kysely)).toBe(await names(first.kysely));
  });

  it('survives a schema change under a prepared `select *`: the statement is prepared anew and the query retried', async () => {
    const { db } = await database({ minUses: 1 });
    const all = () => sql<Record<string, unknown>>`select * from items where id = ${1}`.execute(db.kysely);
    expect((await all()).rows).toEqual([{ id: 1, label: 'one' }]);
    expect(await preparedTexts(db.kysely)).toContain('select * from items where id = $1');
    await sql`alter table items add column weight int not null default 7`.execute(db.kysely);
    // PostgreSQL refuses the old plan ("cached plan must not change result type").
    expect((await all()).rows).toEqual([{ id: 1, label: 'one', weight: 7 }]);
    expect((await all()).rows).toEqual([{ id: 1, label: 'one', weight: 7 }]);
    expect((await prepared(db.kysely)).filter((row) => row.statement.startsWith('select *'))).toHaveLength(2);
  });

  it('leaves statements inside transactions unnamed, so a schema change cannot fail a transaction', async () => {
    const { db } = await database({ minUses: 1 });
    const all = (kysely: Kysely<Database>) =>
      sql<Record<string, unknown>>`select * from items where id = ${2}`.execute(kysely);
    for (let i = 0; i < 3; i++) await db.kysely.transaction().execute((tx) => all(tx));
    expect(await preparedTexts(db.kysely)).toEqual([]);
    await all(db.kysely);
    expect(await preparedTexts(db.kysely)).toEqual(['select * from items where id = $1']);
    await sql`alter table items add column weight int not null default 7`.execute(db.kysely);
    const inside = await db.kysely.transaction().execute((tx) => all(tx));
    expect(inside.rows).toEqual([{ id: 2, label: 'two', weight: 7 }]);
    expect((await all(db.kysely)).rows).toEqual([{ id: 2, label: 'two', weight: 7 }]);
  });

  it('gives a statement lost by the session (DEALLOCATE ALL) a new name and retries it', async () => {
    const { db } = await database({ minUses: 1 });
    await byId(db.kysely, 1);
    await sql`deallocate all`.execute(db.kysely);
    expect((await byId(db.kysely, 2)).rows).toEqual([{ label: 'two' }]);
    expect(await preparedTexts(db.kysely)).toEqual(['select label from items where id = $1']);
  });

  it('runs concurrent queries on several connections by name', async () => {
    const { db } = await database({ minUses: 1 }, 4);
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => byId(db.kysely, (i % 2) + 1)));
    expect(results.map((r) => r.rows[0]?.label)).toEqual(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 'one' : 'two')),
    );
    // Every connection that ran it holds it: whichever one answers this has it prepared.
    expect(await preparedTexts(db.kysely)).toContain('select label from items where id = $1');
  });

  it('can be turned off', async () => {
    const { db } = await database(false);
    for (let i = 0; i < 5; i++) await byId(db.kysely, 1);
    expect(await preparedTexts(db.kysely)).toEqual([]);
  });
});
