import type { Database } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely, SelectQueryBuilder } from 'kysely';

/** One line of the audit explorer: what the table shows, not the whole record (no code, no hashes). */
export interface ExplorerRow {
  readonly id: string;
  readonly seq: number;
  readonly occurred_at: string;
  readonly kind: string;
  readonly action: string;
  readonly outcome: string;
  readonly identifier: string | null;
  readonly tool_name: string | null;
  readonly execution_id: string | null;
  readonly agent_run_id: string | null;
  readonly method: string | null;
  readonly path: string | null;
  readonly status: number | null;
  readonly duration_ms: number | null;
  readonly error_code: string | null;
}

export interface ExplorerFilters {
  readonly from?: Date;
  readonly to?: Date;
  readonly identifier?: string;
  readonly toolName?: string;
  readonly outcome?: string;
  readonly kind?: string;
  readonly agentRunId?: string;
  readonly executionId?: string;
}

type AuditSelect = SelectQueryBuilder<Database, 'audit_events', object>;

function filtered(
  query: AuditSelect,
  tenantId: string,
  f: ExplorerFilters,
  snapshotSeq: number,
): AuditSelect {
  let q = query.where('tenant_id', '=', tenantId).where('seq', '<=', String(snapshotSeq));
  if (f.from) q = q.where('occurred_at', '>=', f.from);
  if (f.to) q = q.where('occurred_at', '<', f.to);
  if (f.identifier !== undefined) q = q.where('identifier', '=', f.identifier);
  if (f.toolName !== undefined) q = q.where('tool_name', '=', f.toolName);
  if (f.outcome !== undefined) q = q.where('outcome', '=', f.outcome);
  if (f.kind !== undefined) q = q.where('kind', '=', f.kind);
  if (f.agentRunId !== undefined) q = q.where('agent_run_id', '=', f.agentRunId);
  if (f.executionId !== undefined) q = q.where('execution_id', '=', f.executionId);
  return q;
}

/**
 * Read models of the admin console over the audit trail and the outbox. Reads only; every
 * query is scoped by tenant.
 */
export function createConsoleQueries(db: Kysely<Database>) {
  return {
    /**
     * A window of the tenant's trail, newest first, by position: the explorer's virtualized
     * table fetches the windows that scroll into view. Positions are stable against a snapshot
     * (the chain's last seq when the explorer opened), so new events do not shift them.
     */
    async explorerWindow(
      tenantId: string,
      filters: ExplorerFilters,
      window: { snapshotSeq?: number; offset: number; limit: number; withTotal: boolean },
    ): Promise<{ snapshotSeq: number; total: number | null; rows: ExplorerRow[] }> {
      const snapshotSeq =
        window.snapshotSeq ??
        Number(
          (
            await db
              .selectFrom('audit_events')
              .select((eb) => eb.fn.max('seq').as('seq'))
              .where('tenant_id', '=', tenantId)
              .executeTakeFirst()
          )?.seq ?? 0,
        );
      const base = db.selectFrom('audit_events');
      const [rows, total] = await Promise.all([
        filtered(base, tenantId, filters, snapshotSeq)
          .select([
            'id',
            'seq',
            'occurred_at',
            'kind',
            'action',
            'outcome',
            'identifier',
            'tool_name',
            'execution_id',
            'agent_run_id',
            'upstream_method',
            'upstream_path',
            'upstream_status',
            'duration_ms',
            'error_code',
          ])
          .orderBy('seq', 'desc')
          .offset(window.offset)
          .limit(window.limit)
          .execute(),
        window.withTotal
          ? filtered(base, tenantId, filters, snapshotSeq)
              .select((eb) => eb.fn.countAll<string>().as('n'))
              .executeTakeFirstOrThrow()
              .then((r) => Number(r.n))
          : Promise.resolve(null),
      ]);
      return {
        snapshotSeq,
        total,
        rows: rows.map((r) => ({
          id: r.id,
          seq: Number(r.seq),
          occurred_at: r.occurred_at.toISOString(),
          kind: r.kind,
          action: r.action,
          outcome: r.outcome,
          identifier: r.identifier,
          tool_name: r.tool_name,
          execution_id: r.execution_id,
          agent_run_id: r.agent_run_id,
          method: r.upstream_method,
          path: r.upstream_path,
          status: r.upstream_status,
          duration_ms: r.duration_ms,
          error_code: r.error_code,
        })),
      };
    },

    /** Tool calls and failed tool calls per hour since `since`, hours without calls left out. */
    async callsPerHour(
      tenantId: string,
      since: Date,
    ): Promise<Array<{ hour: string; calls: number; errors: number }>> {
      const rows = await db
        .selectFrom('audit_events')
        .select([
          sql<Date>`date_trunc('hour', occurred_at)`.as('hour'),
          (eb) => eb.fn.countAll<string>().as('calls'),
          sql<string>`count(*) filter (where outcome <> 'success')`.as('errors'),
        ])
        .where('tenant_id', '=', tenantId)
        .where('kind', '=', 'tool_call')
        .where('occurred_at', '>=', since)
        .groupBy(sql`1`)
        .orderBy(sql`1`)
        .execute();
      return rows.map((r) => ({
        hour: new Date(r.hour).toISOString(),
        calls: Number(r.calls),
        errors: Number(r.errors),
      }));
    },

    /** The identities with the most tool calls since `since`. */
    async topIdentities(
      tenantId: string,
      since: Date,
      limit: number,
    ): Promise<Array<{ identifier: string; calls: number; errors: number; last_call_at: string }>> {
      const rows = await db
        .selectFrom('audit_events')
        .select([
          'identifier',
          (eb) => eb.fn.countAll<string>().as('calls'),
          sql<string>`count(*) filter (where outcome <> 'success')`.as('errors'),
          (eb) => eb.fn.max('occurred_at').as('last_call_at'),
        ])
        .where('tenant_id', '=', tenantId)
        .where('kind', '=', 'tool_call')
        .where('identifier', 'is not', null)
        .where('occurred_at', '>=', since)
        .groupBy('identifier')
        .orderBy('calls', 'desc')
        .limit(limit)
        .execute();
      return rows.map((r) => ({
        identifier: r.identifier ?? '',
        calls: Number(r.calls),
        errors: Number(r.errors),
        last_call_at: new Date(r.last_call_at).toISOString(),
      }));
    },

    /** Delivery health of each SIEM sink: the outbox by status, and the last error and delivery. */
    async sinkHealth(tenantId: string): Promise<
      Array<{
        sink_id: string;
        pending: number;
        failed: number;
        delivered: number;
        last_error: string | null;
        last_delivered_at: string | null;
      }>
    > {
      const rows = await db
        .selectFrom('outbox')
        .select([
          'destination_id',
          sql<string>`count(*) filter (where status in ('pending', 'sending'))`.as('pending'),
          sql<string>`count(*) filter (where status = 'failed')`.as('failed'),
          sql<string>`count(*) filter (where status = 'delivered')`.as('delivered'),
          sql<Date | null>`max(delivered_at)`.as('last_delivered_at'),
          sql<
            string | null
          >`(array_agg(last_error order by id desc) filter (where last_error is not null))[1]`.as(
            'last_error',
          ),
        ])
        .where('tenant_id', '=', tenantId)
        .where('destination_type', '=', 'audit_sink')
        .groupBy('destination_id')
        .execute();
      return rows.map((r) => ({
        sink_id: r.destination_id,
        pending: Number(r.pending),
        failed: Number(r.failed),
        delivered: Number(r.delivered),
        last_error: r.last_error,
        last_delivered_at: r.last_delivered_at ? new Date(r.last_delivered_at).toISOString() : null,
      }));
    },
  };
}

export type ConsoleQueries = ReturnType<typeof createConsoleQueries>;
