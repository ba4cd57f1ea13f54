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
   * Appends records to the tenant's chain in one transaction. Throws `unavailable` when
   * the store cannot be written; callers must then not report success.
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

export function createAuditStore(deps: { db: Kysely<Database> }): AuditStore {
  const { db } = deps;

  return {
    async append(tenantId, records, options) {
      if (records.length === 0) return [];
      try {
        return await db.transaction().execute(async (tx) => {
          // One round trip creates the chain head if needed and locks it (the no-op update
          // takes the row lock), so appends of a tenant are serialized.
          const head = await tx
            .insertInto('audit_chain_heads')
            .values({ tenant_id: tenantId, seq: 0, hash: GENESIS_HASH })
            .onConflict((oc) =>
              oc.column('tenant_id').doUpdateSet((eb) => ({ tenant_id: eb.ref('excluded.tenant_id') })),
            )
            .returning(['seq', 'hash'])
            .executeTakeFirstOrThrow();
          let seq = Number(head.seq);
          let prev = head.hash;
          const events: AuditEvent[] = [];
          const rows = [];
          for (const record of records) {
            seq += 1;
            const unsigned: Omit<AuditEvent, 'hash'> = {
              ...record,
              id: newId('aud'),
              tenant_id: tenantId,
              seq,
              prev_hash: prev,
            };
            const event: AuditEvent = { ...unsigned, hash: hashEvent(unsigned) };
            events.push(event);
            rows.push(eventToRow(event, expiryDay(new Date(event.occurred_at), options.retentionDays)));
            prev = event.hash;
          }
          // One statement writes the records, moves the chain head and fills the
          // transactional outbox for the tenant's SIEM sinks (every committed event, and
          // only those): each round trip here is paid by every tool call.
          await sql`
            with inserted as (
              insert into audit_events
              select * from jsonb_populate_recordset(null::audit_events, ${JSON.stringify(rows)}::jsonb)
            ),
            head as (
              update audit_chain_heads set seq = ${seq}, hash = ${prev} where tenant_id = ${tenantId}
            )
            insert into outbox (tenant_id, destination_type, destination_id, event_id, payload)
            select ${tenantId}, 'audit_sink', s.id, e.id, e.payload
            from audit_sinks s
            cross join jsonb_to_recordset(${JSON.stringify(events.map((event) => ({ id: event.id, payload: event })))}::jsonb)
              as e(id text, payload jsonb)
            where s.tenant_id = ${tenantId} and s.enabled`.execute(tx);
          return events;
        });
      } catch (error) {
        throw storeUnavailable(error);
      }
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
