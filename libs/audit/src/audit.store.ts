import { createHash } from 'node:crypto';
import { WardenError, newId, unavailable } from '@warden/core';
import type { AuditEventRow, Database } from '@warden/db';
import { decodeCursor, encodeCursor } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { AuditEvent, AuditKind, AuditOutcome } from './audit-event.ts';
import { GENESIS_HASH, hashEvent } from './audit-hash.ts';

/** What callers record; id, seq and the hash chain are assigned on append. */
export type AuditRecordInput = Omit<AuditEvent, 'id' | 'tenant_id' | 'seq' | 'prev_hash' | 'hash'>;

export interface AuditQuery {
  readonly from?: Date;
  readonly to?: Date;
  readonly identifier?: string;
  readonly toolName?: string;
  readonly outcome?: AuditOutcome;
  readonly kind?: AuditKind;
  readonly executionId?: string;
  readonly pageSize?: number;
  readonly pageToken?: string;
}

export const DEFAULT_RETENTION_DAYS = 90;
export const MIN_RETENTION_DAYS = 1;
export const MAX_RETENTION_DAYS = 400;

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** `expires_on` = the UTC day of the event plus the retention, as an ISO date. */
export function expiryDay(occurredAt: Date, retentionDays: number): string {
  const day = Date.UTC(occurredAt.getUTCFullYear(), occurredAt.getUTCMonth(), occurredAt.getUTCDate());
  return new Date(day + retentionDays * 86_400_000).toISOString().slice(0, 10);
}

export function rowToEvent(row: AuditEventRow): AuditEvent {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    seq: Number(row.seq),
    occurred_at: row.occurred_at.toISOString(),
    kind: row.kind as AuditKind,
    action: row.action,
    outcome: row.outcome as AuditOutcome,
    execution_id: row.execution_id,
    identifier: row.identifier,
    caller: {
      type: row.caller_type as AuditEvent['caller']['type'],
      id: row.caller_id,
      client_name: row.client_name,
      client_version: row.client_version,
      ip: row.caller_ip,
    },
    agent_run_id: row.agent_run_id,
    tool_name: row.tool_name,
    connected_account_id: row.connected_account_id,
    upstream:
      row.upstream_method !== null && row.upstream_path !== null
        ? {
            method: row.upstream_method,
            path_template: row.upstream_path_template,
            path: row.upstream_path,
            status: row.upstream_status,
            cf_ray: row.cf_ray,
          }
        : null,
    error: row.error_code !== null ? { code: row.error_code, message: row.error_message ?? '' } : null,
    duration_ms: row.duration_ms,
    request_bytes: row.request_bytes,
    response_bytes: row.response_bytes,
    code_sha256: row.code_sha256,
    code: row.code,
    prev_hash: row.prev_hash,
    hash: row.hash,
  };
}

function eventToRow(event: AuditEvent, expiresOn: string) {
  return {
    id: event.id,
    tenant_id: event.tenant_id,
    seq: event.seq,
    occurred_at: event.occurred_at,
    expires_on: expiresOn,
    kind: event.kind,
    action: event.action,
    outcome: event.outcome,
    execution_id: event.execution_id,
    identifier: event.identifier,
    caller_type: event.caller.type,
    caller_id: event.caller.id,
    client_name: event.caller.client_name,
    client_version: event.caller.client_version,
    caller_ip: event.caller.ip,
    agent_run_id: event.agent_run_id,
    tool_name: event.tool_name,
    connected_account_id: event.connected_account_id,
    upstream_method: event.upstream?.method ?? null,
    upstream_path_template: event.upstream?.path_template ?? null,
    upstream_path: event.upstream?.path ?? null,
    upstream_status: event.upstream?.status ?? null,
    cf_ray: event.upstream?.cf_ray ?? null,
    error_code: event.error?.code ?? null,
    error_message: event.error?.message ?? null,
    duration_ms: event.duration_ms,
    request_bytes: event.request_bytes,
    response_bytes: event.response_bytes,
    code_sha256: event.code_sha256,
    code: event.code,
    prev_hash: event.prev_hash,
    hash: event.hash,
  };
}

export interface AuditStore {
  /**
   * Appends records to the tenant's chain atomically, resolving once they are committed.
   * Concurrent appends of a tenant are queued and written together. Throws `unavailable`
   * when the store cannot be written; callers must then not report success.
   */
  append(
    tenantId: string,
    records: readonly AuditRecordInput[],
    options: { retentionDays: number },
  ): Promise<AuditEvent[]>;
  /** Proves the write path of a record written now works, leaving nothing behind. */
  probe(tenantId: string, options: { retentionDays: number }): Promise<void>;
  query(tenantId: string, query: AuditQuery): Promise<{ events: AuditEvent[]; nextPageToken: string | null }>;
  /** Streams events in time order with keyset pages: constant memory whatever the range. */
  stream(tenantId: string, range: { from: Date; to: Date }, batchSize?: number): AsyncGenerator<AuditEvent>;
}

function storeUnavailable(error: unknown): WardenError {
  return error instanceof WardenError ? error : unavailable('the audit store', error);
}

/** Records per append statement; queued appends beyond it wait for the next statement. */
const MAX_BATCH_RECORDS = 500;
/** Rebuilds of a batch after another writer moved the chain head, before giving up. */
const MAX_HEAD_RACES = 20;

interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

interface PendingAppend {
  readonly records: readonly AuditRecordInput[];
  readonly retentionDays: number;
  readonly resolve: (events: AuditEvent[]) => void;
  readonly reject: (error: unknown) => void;
}

export function createAuditStore(deps: { db: Kysely<Database> }): AuditStore {
  const { db } = deps;
  /** The head this replica last wrote or read, per tenant; a guess that the append checks. */
  const heads = new Map<string, ChainHead>();
  /** Appends waiting for the tenant's statement in flight, in arrival order. */
  const queues = new Map<string, PendingAppend[]>();

  async function readHead(tenantId: string): Promise<ChainHead> {
    const row = await db
      .selectFrom('audit_chain_heads')
      .select(['seq', 'hash'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return row ? { seq: Number(row.seq), hash: row.hash } : { seq: 0, hash: GENESIS_HASH };
  }

  /**
   * Writes a batch in one autocommit statement: it moves the chain head only if the head is
   * still the one the hashes were built on, and inserts the records and the outbox rows only
   * if it moved. Another replica having appended meanwhile makes it write nothing; the
   * batch is then rebuilt on the new head.
   */
  async function writeBatch(tenantId: string, batch: readonly PendingAppend[]): Promise<AuditEvent[][]> {
    const ids = batch.map((p) => p.records.map(() => newId('aud')));
    for (let attempt = 0; attempt < MAX_HEAD_RACES; attempt++) {
      const head = heads.get(tenantId) ?? (await readHead(tenantId));
      let seq = head.seq;
      let prev = head.hash;
      const perAppend: AuditEvent[][] = [];
      const rows = [];
      for (const [i, pending] of batch.entries()) {
        const events: AuditEvent[] = [];
        for (const [j, record] of pending.records.entries()) {
          seq += 1;
          const unsigned: Omit<AuditEvent, 'hash'> = {
            ...record,
            id: ids[i]?.[j] as string,
            tenant_id: tenantId,
            seq,
            prev_hash: prev,
          };
          const event: AuditEvent = { ...unsigned, hash: hashEvent(unsigned) };
          events.push(event);
          rows.push(eventToRow(event, expiryDay(new Date(event.occurred_at), pending.retentionDays)));
          prev = event.hash;
        }
        perAppend.push(events);
      }
      const outboxed = perAppend.flat().map((event) => ({ id: event.id, payload: event }));
      // Each round trip here is paid by every tool call: one statement writes the records,
      // moves the head and fills the transactional outbox for the tenant's SIEM sinks
      // (every committed event, and only those).
      const { rows: moved } = await sql<{ moved: number }>`
        with updated as (
          update audit_chain_heads set seq = ${seq}, hash = ${prev}
          where tenant_id = ${tenantId} and seq = ${head.seq} and hash = ${head.hash}
          returning 1
        ),
        created as (
          insert into audit_chain_heads (tenant_id, seq, hash)
          select ${tenantId}, ${seq}, ${prev} where ${head.seq}::bigint = 0
          on conflict (tenant_id) do nothing
          returning 1
        ),
        head as (select 1 from updated union all select 1 from created),
        inserted as (
          insert into audit_events
          select * from jsonb_populate_recordset(null::audit_events, ${JSON.stringify(rows)}::jsonb)
          where exists (select from head)
        ),
        outboxed as (
          insert into outbox (tenant_id, destination_type, destination_id, event_id, payload)
          select ${tenantId}, 'audit_sink', s.id, e.id, e.payload
          from audit_sinks s
          cross join jsonb_to_recordset(${JSON.stringify(outboxed)}::jsonb) as e(id text, payload jsonb)
          where s.tenant_id = ${tenantId} and s.enabled and exists (select from head)
        )
        select count(*)::int as moved from head`.execute(db);
      if (moved[0]?.moved === 1) {
        heads.set(tenantId, { seq, hash: prev });
        return perAppend;
      }
      heads.delete(tenantId);
    }
    throw unavailable('the audit trail (its chain head kept moving)');
  }

  /** Writes the tenant's queued appends, a batch per statement, until none is left. */
  async function drain(tenantId: string, queue: PendingAppend[]): Promise<void> {
    while (queue.length > 0) {
      let records = 0;
      let n = 0;
      while (
        n < queue.length &&
        (n === 0 || records + (queue[n]?.records.length ?? 0) <= MAX_BATCH_RECORDS)
      ) {
        records += queue[n]?.records.length ?? 0;
        n++;
      }
      const batch = queue.splice(0, n);
      try {
        const written = await writeBatch(tenantId, batch);
        batch.forEach((pending, i) => pending.resolve(written[i] ?? []));
      } catch (error) {
        // Committed or not is unknown: the next batch reads the head again.
        heads.delete(tenantId);
        const failure = storeUnavailable(error);
        for (const pending of batch) pending.reject(failure);
      }
    }
    queues.delete(tenantId);
  }

  return {
    append(tenantId, records, options) {
      if (records.length === 0) return Promise.resolve([]);
      return new Promise<AuditEvent[]>((resolve, reject) => {
        const pending = { records, retentionDays: options.retentionDays, resolve, reject };
        const queue = queues.get(tenantId);
        if (queue) {
          queue.push(pending);
          return;
        }
        const fresh = [pending];
        queues.set(tenantId, fresh);
        void drain(tenantId, fresh);
      });
    },

    async probe(tenantId, options) {
      try {
        await sql`select audit_write_probe(${tenantId}, ${expiryDay(new Date(), options.retentionDays)}::date)`.execute(
          db,
        );
      } catch (error) {
        throw storeUnavailable(error);
      }
    },

    async query(tenantId, q) {
      const pageSize = q.pageSize ?? 50;
      let query = db.selectFrom('audit_events').selectAll().where('tenant_id', '=', tenantId);
      if (q.from) query = query.where('occurred_at', '>=', q.from);
      if (q.to) query = query.where('occurred_at', '<', q.to);
      if (q.identifier !== undefined) query = query.where('identifier', '=', q.identifier);
      if (q.toolName !== undefined) query = query.where('tool_name', '=', q.toolName);
      if (q.outcome !== undefined) query = query.where('outcome', '=', q.outcome);
      if (q.kind !== undefined) query = query.where('kind', '=', q.kind);
      if (q.executionId !== undefined) query = query.where('execution_id', '=', q.executionId);
      if (q.pageToken) {
        const after = decodeCursor(q.pageToken);
        const afterSeq = Number(after.id);
        // A row comparison, so PostgreSQL starts the index scan at the cursor instead of
        // filtering out every row before it (which made deep pages and exports quadratic).
        query = query.where(({ eb, refTuple, tuple }) =>
          eb(refTuple('occurred_at', 'seq'), '>', tuple(after.createdAt, String(afterSeq))),
        );
      }
      const rows = await query
        .orderBy('occurred_at')
        .orderBy('seq')
        .limit(pageSize + 1)
        .execute();
      const events = rows.slice(0, pageSize).map(rowToEvent);
      const last = events[events.length - 1];
      return {
        events,
        nextPageToken:
          rows.length > pageSize && last
            ? encodeCursor({ createdAt: new Date(last.occurred_at), id: String(last.seq) })
            : null,
      };
    },

    async *stream(tenantId, range, batchSize = 1000) {
      let after: { at: Date; seq: string } | null = null;
      for (;;) {
        let query = db
          .selectFrom('audit_events')
          .selectAll()
          .where('tenant_id', '=', tenantId)
          .where('occurred_at', '>=', range.from)
          .where('occurred_at', '<', range.to);
        if (after) {
          const a = after;
          query = query.where(({ eb, refTuple, tuple }) =>
            eb(refTuple('occurred_at', 'seq'), '>', tuple(a.at, a.seq)),
          );
        }
        const rows = await query.orderBy('occurred_at').orderBy('seq').limit(batchSize).execute();
        for (const row of rows) yield rowToEvent(row);
        const last = rows[rows.length - 1];
        if (!last || rows.length < batchSize) return;
        after = { at: last.occurred_at, seq: last.seq };
      }
    },
  };
}
