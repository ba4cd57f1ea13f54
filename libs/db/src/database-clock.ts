import type { Clock } from '@warden/core';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';

export interface DatabaseClock extends Clock {
  /** Measures the offset from the database's clock now (and every `resyncMs` after `start`). */
  sync(): Promise<void>;
  start(): void;
  stop(): void;
  /** Local clock minus the database's, in ms (0 until the first sync). */
  readonly offsetMs: number;
}

/**
 * The database's clock, read locally: the offset to PostgreSQL's `clock_timestamp()` is measured
 * (at the midpoint of the round trip) and refreshed now and then, so every replica stamps audit
 * records and decides expiries on one time, whatever its own clock says, without a round trip
 * per reading.
 */
export function createDatabaseClock(db: Kysely<never>, options: { resyncMs?: number } = {}): DatabaseClock {
  const resyncMs = options.resyncMs ?? 60_000;
  let offsetMs = 0;
  let timer: NodeJS.Timeout | undefined;

  async function sync(): Promise<void> {
    const before = Date.now();
    const { rows } = await sql<{
      ms: string;
    }>`select (extract(epoch from clock_timestamp()) * 1000)::bigint::text as ms`.execute(db);
    const after = Date.now();
    const remote = Number(rows[0]?.ms);
    if (Number.isFinite(remote)) offsetMs = (before + after) / 2 - remote;
  }

  return {
    now: () => new Date(Date.now() - offsetMs),
    sync,
    start() {
      if (timer) return;
      timer = setInterval(() => void sync().catch(() => undefined), resyncMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
    get offsetMs() {
      return offsetMs;
    },
  };
}
