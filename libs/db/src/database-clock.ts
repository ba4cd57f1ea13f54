import type { Clock } from '@warden/core';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';

export interface DatabaseClock extends Clock {
  /** Reads the database's clock now (and every `resyncMs` after `start`). */
  sync(): Promise<void>;
  start(): void;
  stop(): void;
}

/**
 * The database's clock, read locally: PostgreSQL's `clock_timestamp()` is read now and then (at
 * the midpoint of the round trip) and carried forward on the monotonic clock, so every replica
 * stamps audit records and decides expiries on one time without a round trip per reading, and a
 * host clock that steps (NTP, a VM resumed, an operator) between two reads changes nothing: only
 * `performance.now()`, which never steps, is read locally. Until the first read it is the host's
 * clock at creation, carried forward the same way.
 */
export function createDatabaseClock(db: Kysely<never>, options: { resyncMs?: number } = {}): DatabaseClock {
  const resyncMs = options.resyncMs ?? 60_000;
  let anchorMs = Date.now();
  let anchorMonotonic = performance.now();
  let timer: NodeJS.Timeout | undefined;

  async function sync(): Promise<void> {
    const before = performance.now();
    const { rows } = await sql<{
      ms: string;
    }>`select (extract(epoch from clock_timestamp()) * 1000)::bigint::text as ms`.execute(db);
    const after = performance.now();
    const remote = Number(rows[0]?.ms);
    if (!Number.isFinite(remote)) return;
    anchorMs = remote;
    anchorMonotonic = (before + after) / 2;
  }

  return {
    now: () => new Date(anchorMs + (performance.now() - anchorMonotonic)),
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
  };
}
