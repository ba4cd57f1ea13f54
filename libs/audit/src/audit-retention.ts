import type { Database } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * Partition maintenance for `audit_events` (partitioned by day on `expires_on`):
 * create the partitions the next inserts need, move any row that landed in the
 * default partition into its own, and drop partitions whose day has passed —
 * a DROP, never a DELETE — after anchoring the dropped range of every chain.
 */
const DAY_MS = 86_400_000;
/** Advisory lock key for partition DDL (arbitrary constant, unique to this use). */
const MAINTENANCE_LOCK = 744_201_117;

function utcDay(date: Date): number {
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
}

function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function partitionName(day: string): string {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) throw new Error(`not a day: ${day}`);
  return `audit_events_p${day.replaceAll('-', '')}`;
}

export interface AuditPartition {
  readonly name: string;
  readonly day: string;
}

export async function listPartitions(db: Kysely<Database>): Promise<AuditPartition[]> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name
    from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    join pg_class p on p.oid = i.inhparent
    where p.relname = 'audit_events' and c.relname ~ '^audit_events_p[0-9]{8}$'
    order by c.relname`.execute(db);
  return rows.map((r) => {
    const d = r.name.slice('audit_events_p'.length);
    return { name: r.name, day: `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` };
  });
}

async function createPartition(db: Kysely<Database>, day: string): Promise<boolean> {
  const name = partitionName(day);
  const next = isoDay(Date.parse(`${day}T00:00:00Z`) + DAY_MS);
  const moved = await db.transaction().execute(async (tx) => {
    // Replicas starting together run maintenance together: serialize DDL on the table.
    await sql`select pg_advisory_xact_lock(${MAINTENANCE_LOCK})`.execute(tx);
    const exists = await sql<{ n: number }>`select 1 as n from pg_class where relname = ${name}`.execute(tx);
    if (exists.rows.length > 0) return false;
    // Rows for this day may already sit in the default partition: attaching would fail,
    // so build the table, move them in, then attach.
    await sql`create table ${sql.id(name)} (like audit_events including defaults including constraints)`.execute(
      tx,
    );
    await sql`insert into ${sql.id(name)} select * from audit_events_default where expires_on = ${day}::date`.execute(
      tx,
    );
    await sql`delete from audit_events_default where expires_on = ${day}::date`.execute(tx);
    await sql`alter table audit_events attach partition ${sql.id(name)} for values from (${sql.lit(day)}) to (${sql.lit(next)})`.execute(
      tx,
    );
    return true;
  });
  return moved;
}

/**
 * Creates the partitions that inserts in the next `daysAhead` days will need, for every
 * retention in use (a row lands in day-of-event + retention).
 */
export async function ensurePartitions(
  db: Kysely<Database>,
  options: { now: Date; retentionDays: readonly number[]; daysAhead?: number },
): Promise<string[]> {
  const today = utcDay(options.now);
  const days = new Set<string>();
  for (const retention of new Set(options.retentionDays)) {
    for (let offset = -1; offset <= (options.daysAhead ?? 3); offset++) {
      days.add(isoDay(today + (offset + retention) * DAY_MS));
    }
  }
  const created: string[] = [];
  for (const day of [...days].sort()) {
    if (Date.parse(`${day}T00:00:00Z`) < today) continue;
    if (await createPartition(db, day)) created.push(partitionName(day));
  }
  return created;
}

/** Moves rows out of the default partition into partitions of their own day. */
export async function rescueDefaultPartition(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ day: string; n: string }>`
    select to_char(expires_on, 'YYYY-MM-DD') as day, count(*)::text as n
    from audit_events_default group by 1 order by 1`.execute(db);
  let moved = 0;
  for (const row of rows) {
    await createPartition(db, row.day);
    moved += Number(row.n);
  }
  return moved;
}

/**
 * Drops every partition whose day is before today. Each chain's dropped records are
 * recorded first as anchors (one per contiguous seq run), so `audit verify` can tell
 * expiry from deletion.
 */
export async function dropExpiredPartitions(db: Kysely<Database>, options: { now: Date }): Promise<string[]> {
  const today = isoDay(utcDay(options.now));
  const dropped: string[] = [];
  for (const partition of await listPartitions(db)) {
    if (partition.day >= today) continue;
    await db.transaction().execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(${MAINTENANCE_LOCK})`.execute(tx);
      const still = await sql`select 1 from pg_class where relname = ${partition.name}`.execute(tx);
      if (still.rows.length === 0) return;
      await sql`
        insert into audit_chain_anchors (tenant_id, from_seq, to_seq, row_count, first_prev_hash, last_hash, expires_on)
        select tenant_id, min(seq), max(seq), count(*),
               (array_agg(prev_hash order by seq))[1], (array_agg(hash order by seq desc))[1], ${partition.day}::date
        from (
          select tenant_id, seq, prev_hash, hash, seq - row_number() over (partition by tenant_id order by seq) as run
          from ${sql.id(partition.name)}
        ) runs
        group by tenant_id, run
        on conflict (tenant_id, from_seq) do nothing`.execute(tx);
      await sql`drop table ${sql.id(partition.name)}`.execute(tx);
    });
    dropped.push(partition.name);
  }
  return dropped;
}

export interface MaintenanceReport {
  readonly rescued: number;
  readonly created: string[];
  readonly dropped: string[];
}

/**
 * One maintenance pass, run daily by the scheduler (and at start): stragglers in the
 * default partition get a partition of their own first, so expired ones are dropped
 * with it rather than deleted.
 */
export async function runAuditMaintenance(
  db: Kysely<Database>,
  options: { now: Date; retentionDays: readonly number[] },
): Promise<MaintenanceReport> {
  const rescued = await rescueDefaultPartition(db);
  const created = await ensurePartitions(db, options);
  const dropped = await dropExpiredPartitions(db, options);
  return { rescued, created, dropped };
}
