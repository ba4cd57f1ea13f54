import type { Database } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { CheckpointAnchor } from './audit-event.ts';

/**
 * Partition maintenance for `audit_events` (partitioned by day on `expires_on`):
 * create the partitions the next inserts need, move any row that landed in the
 * default partition into its own, and drop partitions whose day has passed —
 * a DROP, never a DELETE — after anchoring the dropped range of every chain.
 * The DDL runs in SECURITY DEFINER functions (see the `audit-proof` migration), so the
 * service's role needs neither DDL nor UPDATE or DELETE on the trail.
 */
const DAY_MS = 86_400_000;

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
  const { rows } = await sql<{
    created: boolean;
  }>`select audit_create_partition(${day}::date) as created`.execute(db);
  return rows[0]?.created === true;
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
  const { rows } = await sql<{ moved: string }>`select audit_rescue_default()::text as moved`.execute(db);
  return Number(rows[0]?.moved ?? 0);
}

/** An anchor retention keeps for a tenant's chain run in a dropped partition. */
export interface RetentionAnchor extends CheckpointAnchor {
  readonly tenant_id: string;
}

/** The anchors dropping `partition` will keep (one per contiguous seq run of each chain). */
export async function partitionAnchors(
  db: Kysely<Database>,
  partition: AuditPartition,
): Promise<RetentionAnchor[]> {
  const { rows } = await sql<{
    tenant_id: string;
    from_seq: string;
    to_seq: string;
    row_count: string;
    first_prev_hash: string;
    last_hash: string;
  }>`select * from audit_partition_anchors(${partition.name})`.execute(db);
  return rows.map((r) => ({
    tenant_id: r.tenant_id,
    from_seq: Number(r.from_seq),
    to_seq: Number(r.to_seq),
    row_count: Number(r.row_count),
    first_prev_hash: r.first_prev_hash,
    last_hash: r.last_hash,
    expires_on: partition.day,
  }));
}

/**
 * Called before a partition is dropped with the anchors that will replace its records, so they
 * can be vouched for (signed) while the records still exist.
 */
export type BeforePartitionDrop = (
  partition: AuditPartition,
  anchors: readonly RetentionAnchor[],
) => Promise<void>;

/**
 * Drops every partition whose day is before today (the database's today: the drop function
 * refuses a day that has not passed, whatever `now` says). Each chain's dropped records are
 * recorded first as anchors (one per contiguous seq run), so `audit verify` can tell expiry
 * from deletion.
 */
export async function dropExpiredPartitions(
  db: Kysely<Database>,
  options: { now: Date; beforeDrop?: BeforePartitionDrop },
): Promise<string[]> {
  const today = isoDay(utcDay(options.now));
  const dropped: string[] = [];
  for (const partition of await listPartitions(db)) {
    if (partition.day >= today) continue;
    if (options.beforeDrop) await options.beforeDrop(partition, await partitionAnchors(db, partition));
    const { rows } = await sql<{
      dropped: boolean;
    }>`select audit_drop_partition(${partition.name}) as dropped`.execute(db);
    if (rows[0]?.dropped) dropped.push(partition.name);
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
  options: { now: Date; retentionDays: readonly number[]; beforeDrop?: BeforePartitionDrop },
): Promise<MaintenanceReport> {
  const rescued = await rescueDefaultPartition(db);
  const created = await ensurePartitions(db, options);
  const dropped = await dropExpiredPartitions(db, options);
  return { rescued, created, dropped };
}
