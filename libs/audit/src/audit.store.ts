import { createHash } from 'node:crypto';
import type { Clock } from '@warden/core';
import { WardenError, newId, systemClock, unavailable } from '@warden/core';
import type { AuditEventRow, Database } from '@warden/db';
import { decodeCursor, encodeCursor } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { AuditEvent, AuditKind, AuditOutcome } from './audit-event.ts';
import { GENESIS_HASH, hashEvent } from './audit-hash.ts';
import { escapeAuditValue } from './audit-text.ts';

/**
 * What callers record; id, seq and the hash chain are assigned on append, and `occurred_at`
 * (when not given) is the store's clock at the moment of the append.
 */
export type AuditRecordInput = Omit<
  AuditEvent,
  'id' | 'tenant_id' | 'seq' | 'prev_hash' | 'hash' | 'occurred_at'
> & { readonly occurred_at?: string; readonly id?: string };

export interface AuditQuery {
  readonly from?: Date;
  readonly to?: Date;
  readonly identifier?: string;
  readonly toolName?: string;
  readonly outcome?: AuditOutcome;
  readonly kind?: AuditKind;
  readonly action?: string;
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
    ...(row.intent_id !== null ? { intent_id: row.intent_id } : {}),
    ...(row.body_sha256 !== null ? { body_sha256: row.body_sha256 } : {}),
    ...(row.details !== null ? { details: row.details } : {}),
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
    intent_id: event.intent_id ?? null,
    body_sha256: event.body_sha256 ?? null,
    details: event.details ?? null,
    prev_hash: event.prev_hash,
    hash: event.hash,
  };
}

export interface AuditAppendOptions {
  readonly retentionDays: number;
}

export interface AuditStore {
  /**
   * Appends records to the tenant's chain atomically, resolving once they are committed.
   * Concurrent appends of a tenant are queued and written together (group commit). Throws
   * `unavailable` when the store cannot be written; callers must then not report success.
   * One append's bad record never fails another append: a batch the database refuses is
   * written append by append, and a record that is still refused is replaced by a minimal
   * record saying so, never dropped.
   */
  append(
    tenantId: string,
    records: readonly AuditRecordInput[],
    options: AuditAppendOptions,
  ): Promise<AuditEvent[]>;
  /**
   * Appends inside the caller's transaction, so a change and its record commit together
   * (lifecycle events). Not queued: the transaction holds the chain head until it ends.
   */
  appendWithin(
    tx: Kysely<Database>,
    tenantId: string,
    records: readonly AuditRecordInput[],
    options: AuditAppendOptions,
  ): Promise<AuditEvent[]>;
  /**
   * Proves that every table an append writes (records, chain head, outbox) takes a write now,
   * leaving nothing behind: read-only databases and missing privileges fail here.
   */
  probe(tenantId: string, options: AuditAppendOptions): Promise<void>;
  query(tenantId: string, query: AuditQuery): Promise<{ events: AuditEvent[]; nextPageToken: string | null }>;
  /** Streams events in time order with keyset pages: constant memory whatever the range. */
  stream(tenantId: string, range: { from: Date; to: Date }, batchSize?: number): AsyncGenerator<AuditEvent>;
}

function storeUnavailable(error: unknown): WardenError {
  return error instanceof WardenError ? error : unavailable('the audit store', error);
}

/**
 * SQLSTATE classes that mean "this data", not "this database": data exceptions (22: bad
 * characters, values out of range), integrity violations (23) and program limits (54: a row
 * too large). Another append's records would have been written.
 */
function isRecordError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(22|23|54)/.test(code);
}

/** Records per append statement; queued appends beyond it wait for the next statement. */
const MAX_BATCH_RECORDS = 500;
/**
 * Optimistic tries of a batch (on the head this replica last saw, then on a fresh read) before
 * it waits its turn on the head row: under contention from several replicas the optimistic
 * statement can keep losing, while the lock always makes progress.
 */
const OPTIMISTIC_TRIES = 3;

interface ChainHead {
  readonly seq: number;
  readonly hash: string;
  /** Time of the head record (ms); records after it are never stamped earlier. */
  readonly at: number;
}

interface PendingAppend {
  records: readonly AuditRecordInput[];
  readonly retentionDays: number;
  readonly resolve: (events: AuditEvent[]) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * What is left of a record the database refused: the fields Warden itself generated (kinds,
 * ids, outcome, status), none of the free text that could have been the cause.
 */
/** An integer PostgreSQL's `integer` takes, or null. */
function int4(value: number | null | undefined): number | null {
  return typeof value === 'number' && Number.isInteger(value) && Math.abs(value) < 2 ** 31 ? value : null;
}

function minimalRecord(record: AuditRecordInput, error: unknown): AuditRecordInput {
  const sqlstate = String((error as { code?: unknown } | null)?.code ?? 'unknown');
  return {
    ...(record.id !== undefined ? { id: record.id } : {}),
    ...(record.occurred_at !== undefined ? { occurred_at: record.occurred_at } : {}),
    kind: record.kind,
    action: record.action,
    outcome: record.outcome,
    execution_id: record.execution_id,
    identifier: null,
    caller: {
      type: record.caller.type,
      id: record.caller.id,
      client_name: null,
      client_version: null,
      ip: null,
    },
    agent_run_id: null,
    tool_name: record.tool_name,
    connected_account_id: record.connected_account_id,
    upstream: record.upstream
      ? {
          method: record.upstream.method,
          path_template: null,
          path: '[not storable]',
          status: record.upstream.status,
          cf_ray: null,
        }
      : null,
    error: {
      code: 'audit_record_rejected',
      message: `the database refused this record (SQLSTATE ${sqlstate}); only its generated fields are kept`,
    },
    duration_ms: int4(record.duration_ms),
    request_bytes: int4(record.request_bytes),
    response_bytes: int4(record.response_bytes),
    code_sha256: record.code_sha256,
    code: null,
    intent_id: record.intent_id ?? null,
    body_sha256: record.body_sha256 ?? null,
  };
}

export interface AuditStoreOptions {
  readonly db: Kysely<Database>;
  /** Stamps records; pass a clock aligned with the database's so replicas agree. */
  readonly clock?: Clock;
  /**
   * Called as each `append` settles: milliseconds from the call to its commit (or failure),
   * waiting behind the tenant's statement in flight included, as its caller waits.
   */
  readonly onAppended?: (appended: { readonly ms: number; readonly committed: boolean }) => void;
}

export function createAuditStore(deps: AuditStoreOptions): AuditStore {
  const { db } = deps;
  const clock = deps.clock ?? systemClock;
  /** The head this replica last wrote or read, per tenant; a guess that the append checks. */
  const heads = new Map<string, ChainHead>();
  /** Appends waiting for the tenant's statement in flight, in arrival order. */
  const queues = new Map<string, PendingAppend[]>();

  async function readHead(executor: Kysely<Database>, tenantId: string): Promise<ChainHead> {
    const row = await executor
      .selectFrom('audit_chain_heads')
      .select(['seq', 'hash', 'occurred_at'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return row
      ? { seq: Number(row.seq), hash: row.hash, at: row.occurred_at?.getTime() ?? 0 }
      : { seq: 0, hash: GENESIS_HASH, at: 0 };
  }

  /** Ids and times fixed once per append, so a rebuilt batch hashes the same records. */
  function prepare(records: readonly AuditRecordInput[]): AuditRecordInput[] {
    const now = clock.now().toISOString();
    return records.map((record) => ({
      ...escapeAuditValue(record),
      id: record.id ?? newId('aud'),
      occurred_at: record.occurred_at ?? now,
    }));
  }

  /**
   * Writes a batch: optimistically, in one autocommit statement on the head this replica last
   * saw (then on a fresh read); when other replicas keep winning, in a transaction holding the
   * head's row lock, which always makes progress.
   */
  async function writeBatch(
    executor: Kysely<Database>,
    tenantId: string,
    batch: ReadonlyArray<{ records: readonly AuditRecordInput[]; retentionDays: number }>,
  ): Promise<AuditEvent[][]> {
    for (let attempt = 0; attempt < OPTIMISTIC_TRIES; attempt++) {
      const head = heads.get(tenantId) ?? (await readHead(executor, tenantId));
      const written = await tryBatch(executor, tenantId, batch, head);
      if (written) return written;
      heads.delete(tenantId);
    }
    // Other replicas keep moving the head: wait for it (its row lock) and write on it.
    return db.transaction().execute((tx) => writeLocked(tx, tenantId, batch));
  }

  /** Locks the tenant's chain head (creating it if it has none yet) and writes the batch on it. */
  async function writeLocked(
    tx: Kysely<Database>,
    tenantId: string,
    batch: ReadonlyArray<{ records: readonly AuditRecordInput[]; retentionDays: number }>,
  ): Promise<AuditEvent[][]> {
    await tx
      .insertInto('audit_chain_heads')
      .values({ tenant_id: tenantId, seq: 0, hash: GENESIS_HASH })
      .onConflict((oc) => oc.column('tenant_id').doNothing())
      .execute();
    const row = await tx
      .selectFrom('audit_chain_heads')
      .select(['seq', 'hash', 'occurred_at'])
      .where('tenant_id', '=', tenantId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    const head = { seq: Number(row.seq), hash: row.hash, at: row.occurred_at?.getTime() ?? 0 };
    const written = await tryBatch(tx, tenantId, batch, head);
    if (!written) throw unavailable('the audit trail (its chain head moved under a lock)');
    return written;
  }

  /**
   * Writes a batch in one statement: it moves the chain head only if the head is still the one
   * the hashes were built on, and inserts the records and the outbox rows only if it moved.
   * Another replica having appended meanwhile makes it write nothing (null). Times never go
   * backwards along the chain: a record stamped before its predecessor (another replica's clock,
   * a slower path) takes its predecessor's time.
   */
  async function tryBatch(
    executor: Kysely<Database>,
    tenantId: string,
    batch: ReadonlyArray<{ records: readonly AuditRecordInput[]; retentionDays: number }>,
    head: ChainHead,
  ): Promise<AuditEvent[][] | null> {
    let seq = head.seq;
    let prev = head.hash;
    let at = head.at;
    const perAppend: AuditEvent[][] = [];
    const rows = [];
    for (const pending of batch) {
      const events: AuditEvent[] = [];
      for (const record of pending.records) {
        seq += 1;
        at = Math.max(at, Date.parse(record.occurred_at as string));
        const unsigned: Omit<AuditEvent, 'hash'> = {
          ...record,
          id: record.id as string,
          occurred_at: new Date(at).toISOString(),
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
    const headAt = new Date(at).toISOString();
    // Each round trip here is paid by every tool call: one statement writes the records,
    // moves the head and fills the transactional outbox for the tenant's SIEM sinks
    // (every committed event, and only those).
    const { rows: moved } = await sql<{ moved: number }>`
      with updated as (
        update audit_chain_heads set seq = ${seq}, hash = ${prev}, occurred_at = ${headAt}::timestamptz
        where tenant_id = ${tenantId} and seq = ${head.seq} and hash = ${head.hash}
        returning 1
      ),
      created as (
        insert into audit_chain_heads (tenant_id, seq, hash, occurred_at)
        select ${tenantId}, ${seq}, ${prev}, ${headAt}::timestamptz where ${head.seq}::bigint = 0
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
      select count(*)::int as moved from head`.execute(executor);
    if (moved[0]?.moved !== 1) return null;
    heads.set(tenantId, { seq, hash: prev, at });
    return perAppend;
  }

  /**
   * A batch the database refused for its data: each append is written on its own, so only
   * the one holding the bad record is affected, and that one's refused records are replaced
   * by minimal ones.
   */
  async function writeApart(tenantId: string, batch: readonly PendingAppend[]): Promise<void> {
    for (const pending of batch) {
      try {
        const [events] = await writeBatch(db, tenantId, [pending]);
        pending.resolve(events ?? []);
        continue;
      } catch (error) {
        heads.delete(tenantId);
        if (!isRecordError(error)) {
          pending.reject(storeUnavailable(error));
          continue;
        }
      }
      const kept: AuditRecordInput[] = [];
      for (const record of pending.records) {
        kept.push(await fitRecord(tenantId, record, pending.retentionDays));
      }
      try {
        const [events] = await writeBatch(db, tenantId, [
          { records: kept, retentionDays: pending.retentionDays },
        ]);
        pending.resolve(events ?? []);
      } catch (error) {
        heads.delete(tenantId);
        pending.reject(storeUnavailable(error));
      }
    }
  }

  /** The record itself if the database takes it (checked in a statement that writes nothing), else its minimal form. */
  async function fitRecord(
    tenantId: string,
    record: AuditRecordInput,
    retentionDays: number,
  ): Promise<AuditRecordInput> {
    const row = eventToRow(
      {
        ...record,
        id: record.id as string,
        occurred_at: record.occurred_at as string,
        tenant_id: tenantId,
        seq: 0,
        prev_hash: '',
        hash: '',
      },
      expiryDay(new Date(record.occurred_at as string), retentionDays),
    );
    try {
      await sql`select count(*) from jsonb_populate_recordset(null::audit_events, ${JSON.stringify([row])}::jsonb)`.execute(
        db,
      );
      return record;
    } catch (error) {
      if (!isRecordError(error)) throw storeUnavailable(error);
      return minimalRecord(record, error);
    }
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
        const written = await writeBatch(db, tenantId, batch);
        batch.forEach((pending, i) => pending.resolve(written[i] ?? []));
      } catch (error) {
        // Committed or not is unknown: the next batch reads the head again.
        heads.delete(tenantId);
        if (isRecordError(error)) {
          await writeApart(tenantId, batch).catch((failure: unknown) => {
            for (const pending of batch) pending.reject(storeUnavailable(failure));
          });
          continue;
        }
        const failure = storeUnavailable(error);
        for (const pending of batch) pending.reject(failure);
      }
    }
    queues.delete(tenantId);
  }

  return {
    append(tenantId, records, options) {
      if (records.length === 0) return Promise.resolve([]);
      return new Promise<AuditEvent[]>((settled, failed) => {
        const observe = deps.onAppended;
        const started = observe ? performance.now() : 0;
        const resolve = observe
          ? (events: AuditEvent[]) => {
              observe({ ms: performance.now() - started, committed: true });
              settled(events);
            }
          : settled;
        const reject = observe
          ? (error: unknown) => {
              observe({ ms: performance.now() - started, committed: false });
              failed(error);
            }
          : failed;
        const pending = { records: prepare(records), retentionDays: options.retentionDays, resolve, reject };
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

    async appendWithin(tx, tenantId, records, options) {
      if (records.length === 0) return [];
      // The transaction may read a head this replica has not seen, and may roll back what it
      // writes: read the head inside it, and forget it afterwards.
      heads.delete(tenantId);
      try {
        // Inside the caller's transaction: wait for the head's lock rather than race for it.
        const [events] = await writeLocked(tx, tenantId, [
          { records: prepare(records), retentionDays: options.retentionDays },
        ]);
        return events ?? [];
      } catch (error) {
        throw storeUnavailable(error);
      } finally {
        heads.delete(tenantId);
      }
    },

    async probe(tenantId, options) {
      try {
        await sql`select audit_write_probe(${tenantId}, ${expiryDay(clock.now(), options.retentionDays)}::date)`.execute(
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
      if (q.action !== undefined) query = query.where('action', '=', q.action);
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
