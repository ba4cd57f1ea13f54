/**
 * Issue 21: the audit trail's times come from one clock, the database's. A host clock that steps
 * between two reads of it (an hour back here, as after a bad NTP correction) must not move the
 * times a replica stamps: records stamped an hour early sort before older ones and fall out of
 * the default export window.
 */
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '@warden/testing';
import type { TestDatabase } from '@warden/testing';
import { createDb } from './create-db.ts';
import type { Db } from './create-db.ts';
import { createDatabaseClock } from './database-clock.ts';

const HOUR_MS = 3_600_000;

/** Steps the process's wall clock (`Date.now()`, `new Date()`) by `stepMs`; monotonic time does not move. */
function stepWallClock(stepMs: number): () => void {
  const RealDate = globalThis.Date;
  const realNow = RealDate.now.bind(RealDate);
  class SteppedDate extends RealDate {
    constructor(...args: ConstructorParameters<typeof Date> | []) {
      if (args.length === 0) super(realNow() + stepMs);
      else super(...(args as ConstructorParameters<typeof Date>));
    }
    static override now(): number {
      return realNow() + stepMs;
    }
  }
  globalThis.Date = SteppedDate as DateConstructor;
  return () => {
    globalThis.Date = RealDate;
  };
}

describe('the database clock', () => {
  let test: TestDatabase;
  let db: Db;

  beforeAll(async () => {
    test = await createTestDatabase({ migrate: false });
    db = await createDb({ kind: 'postgres', url: test.url, poolSize: 1 });
  });
  afterAll(async () => {
    await db?.close();
    await test?.drop();
  });

  async function databaseNow(): Promise<number> {
    const { rows } = await sql<{
      ms: string;
    }>`select (extract(epoch from clock_timestamp()) * 1000)::bigint::text as ms`.execute(db.kysely);
    return Number(rows[0]!.ms);
  }

  it('keeps the database time when the host clock steps an hour back between two reads', async () => {
    const clock = createDatabaseClock(db.kysely as unknown as Kysely<never>);
    await clock.sync();
    expect(Math.abs(clock.now().getTime() - (await databaseNow()))).toBeLessThan(1_000);
    const restore = stepWallClock(-HOUR_MS);
    try {
      expect(Math.abs(Date.now() - (await databaseNow()) + HOUR_MS)).toBeLessThan(1_000);
      expect(Math.abs(clock.now().getTime() - (await databaseNow()))).toBeLessThan(1_000);
      // And after the next read, with the host clock still wrong.
      await clock.sync();
      expect(Math.abs(clock.now().getTime() - (await databaseNow()))).toBeLessThan(1_000);
    } finally {
      restore();
    }
  });
});
