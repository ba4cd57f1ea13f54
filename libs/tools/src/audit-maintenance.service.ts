import { rowToEvent, runAuditMaintenance, unknownOutcomeRecord } from '@warden/audit';
import type { AuditCheckpointer, AuditStore, MaintenanceReport } from '@warden/audit';
import type { Clock, Logger } from '@warden/core';
import { systemClock } from '@warden/core';
import { withConflictRetry } from '@warden/db';
import type { Database, TenantSettings } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { effectiveSettings } from './tenant-settings.service.ts';
import type { OperatorDefaults } from './tenant-settings.service.ts';

export interface AuditMaintenanceDeps {
  readonly db: Kysely<Database>;
  readonly audit: AuditStore;
  readonly defaults: OperatorDefaults;
  /** How long an intent may wait for its outcome before it is closed as `unknown` (ms). */
  readonly outcomeGraceMs: number;
  /** Also purges delivered outbox rows. */
  readonly purgeDelivered?: () => Promise<number>;
  /**
   * Signs checkpoints before a partition is dropped, vouching for the anchors that replace its
   * records. Without one (deployments that cannot sign), partitions are dropped unvouched.
   */
  readonly checkpoints?: AuditCheckpointer;
  readonly logger: Logger;
  readonly clock?: Clock;
}

const SWEEP_BATCH = 500;
const SWEEP = 'unknown-outcomes';
/** Where a first sweep starts looking (intents from before the sweeper existed). */
const FIRST_SWEEP_LOOKBACK_MS = 7 * 86_400_000;

/**
 * The audit trail's housekeeping, run by the scheduler: partitions ahead of time, stragglers
 * out of the default partition, expired days dropped (never deleted row by row); and intents
 * whose outcome never came closed with an `unknown` outcome, so a request sent by a replica that
 * died shows as such in the trail, the exports and the SIEM, never as nothing.
 */
export function createAuditMaintenance(deps: AuditMaintenanceDeps) {
  const { db } = deps;
  const clock = deps.clock ?? systemClock;

  async function retentionOf(tenantId: string): Promise<number> {
    const row = await db
      .selectFrom('tenants')
      .select('settings')
      .where('id', '=', tenantId)
      .executeTakeFirst();
    return effectiveSettings(deps.defaults, (row?.settings ?? {}) as TenantSettings).retentionDays;
  }

  type PartitionsReport = MaintenanceReport & { outboxPurged: number };
  let running: Promise<PartitionsReport> | null = null;
  let next: Promise<PartitionsReport> | null = null;

  /**
   * One pass at a time in this process: passes running together (the scheduler's, and each
   * retention change's) deadlocked each other in PostgreSQL. A call made while one runs waits
   * for it and shares the pass after it, which sees every retention saved before it started.
   * Another replica's pass can still meet this one: PostgreSQL then aborts one of them
   * (deadlock detected), which runs again (`withConflictRetry`).
   */
  function partitions(now?: Date): Promise<PartitionsReport> {
    if (!running) {
      running = withConflictRetry(() => pass(now ?? clock.now())).finally(() => {
        running = null;
      });
      return running;
    }
    next ??= running
      .catch(() => undefined)
      .then(() => {
        next = null;
        return partitions(now);
      });
    return next;
  }

  async function pass(now: Date): Promise<PartitionsReport> {
    const { rows } = await sql<{ days: number | null }>`
        select distinct (settings->'audit'->>'retention_days')::int as days from tenants`.execute(db);
    const retentionDays = [
      deps.defaults.retentionDays,
      ...rows.map((r) => r.days).filter((d): d is number => typeof d === 'number'),
    ];
    const checkpoints = deps.checkpoints;
    const report = await runAuditMaintenance(db, {
      now,
      retentionDays,
      ...(checkpoints
        ? {
            beforeDrop: async (_partition, anchors) => {
              await checkpoints.run('partition_close', anchors);
            },
          }
        : {}),
    });
    const outboxPurged = (await deps.purgeDelivered?.()) ?? 0;
    if (report.created.length || report.dropped.length || report.rescued || outboxPurged) {
      deps.logger.info({ ...report, outbox_purged: outboxPurged }, 'audit maintenance');
    }
    return { ...report, outboxPurged };
  }

  /** Intents (`i`) no outcome record names yet. */
  function intentsWithoutOutcome() {
    return db
      .selectFrom('audit_events as i')
      .where('i.outcome', '=', 'pending')
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('audit_events as o')
              .select(sql`1`.as('one'))
              .whereRef('o.intent_id', '=', 'i.id')
              .whereRef('o.tenant_id', '=', 'i.tenant_id'),
          ),
        ),
      );
  }

  return {
    partitions,

    /**
     * How many requests with `connectedAccountId`'s credential are still in flight: intents since
     * `since` with no outcome yet (on any replica; the write-ahead trail is the one place that
     * knows).
     */
    async inFlight(tenantId: string, connectedAccountId: string, since: Date): Promise<number> {
      const row = await intentsWithoutOutcome()
        .select(sql<number>`count(*)::int`.as('pending'))
        .where('i.occurred_at', '>=', since)
        .where('i.tenant_id', '=', tenantId)
        .where('i.connected_account_id', '=', connectedAccountId)
        .executeTakeFirst();
      return row?.pending ?? 0;
    },

    /**
     * Closes intents older than the grace period that have no outcome; returns how many. Each
     * pass reads only intents written since the last pass looked (`audit_sweeps`).
     */
    async sweepUnknownOutcomes(): Promise<number> {
      const cutoff = new Date(clock.now().getTime() - deps.outcomeGraceMs);
      const state = await db
        .selectFrom('audit_sweeps')
        .select('swept_until')
        .where('name', '=', SWEEP)
        .executeTakeFirst();
      let from = state?.swept_until ?? new Date(cutoff.getTime() - FIRST_SWEEP_LOOKBACK_MS);
      if (from >= cutoff) return 0;
      let closed = 0;
      for (;;) {
        const rows = await intentsWithoutOutcome()
          .selectAll('i')
          .where('i.occurred_at', '>=', from)
          .where('i.occurred_at', '<', cutoff)
          .orderBy('i.occurred_at')
          .limit(SWEEP_BATCH)
          .execute();
        if (rows.length === 0) break;
        const byTenant = new Map<string, ReturnType<typeof rowToEvent>[]>();
        for (const row of rows) {
          const list = byTenant.get(row.tenant_id) ?? [];
          list.push(rowToEvent(row));
          byTenant.set(row.tenant_id, list);
        }
        for (const [tenantId, intents] of byTenant) {
          await deps.audit.append(
            tenantId,
            intents.map((intent) =>
              unknownOutcomeRecord(
                intent,
                `no outcome was recorded within ${Math.round(deps.outcomeGraceMs / 1000)} s of sending: the replica stopped or the audit store failed after the request left; check Cloudflare for its effect`,
              ),
            ),
            { retentionDays: await retentionOf(tenantId) },
          );
        }
        closed += rows.length;
        if (rows.length < SWEEP_BATCH) break;
        // Records of one millisecond can outnumber a batch; re-reading from it is harmless.
        from = (rows[rows.length - 1] as (typeof rows)[number]).occurred_at;
      }
      await db
        .insertInto('audit_sweeps')
        .values({ name: SWEEP, swept_until: cutoff })
        .onConflict((oc) => oc.column('name').doUpdateSet({ swept_until: cutoff }))
        .execute();
      if (closed > 0) deps.logger.warn({ closed }, 'audit: intents without an outcome closed as unknown');
      return closed;
    },
  };
}

export type AuditMaintenance = ReturnType<typeof createAuditMaintenance>;
