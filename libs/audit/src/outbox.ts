import type { Clock, Logger } from '@warden/core';
import { noopLogger, systemClock } from '@warden/core';
import type { Database } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely, Transaction } from 'kysely';
import { isSinkDeliveryError } from './sink-errors.ts';
import { nextAttemptDelayMs } from './sink-delivery.ts';
import type { BackoffOptions } from './sink-delivery.ts';

/**
 * The transactional outbox behind every delivery to the outside (SIEM sinks, tenant
 * webhooks): rows are written in the same transaction as the change they report, then
 * a dispatcher sends them in batches, at least once, retrying with backoff. Nothing is
 * lost if a receiver, Redis or this process is down: the rows wait in PostgreSQL.
 */
export type DestinationType = 'audit_sink' | 'tenant_webhook';

export interface OutboxMessage {
  readonly tenantId: string;
  readonly destinationType: DestinationType;
  readonly destinationId: string;
  /** Stable id the receiver de-duplicates on. */
  readonly eventId: string;
  readonly payload: Record<string, unknown>;
}

export async function enqueueOutbox(
  executor: Kysely<Database> | Transaction<Database>,
  messages: readonly OutboxMessage[],
): Promise<void> {
  if (messages.length === 0) return;
  await executor
    .insertInto('outbox')
    .values(
      messages.map((m) => ({
        tenant_id: m.tenantId,
        destination_type: m.destinationType,
        destination_id: m.destinationId,
        event_id: m.eventId,
        payload: JSON.stringify(m.payload),
      })),
    )
    .execute();
}

/** Where a batch goes. Throw a SinkDeliveryError to say whether a retry may help. */
export interface DeliveryTarget {
  send(payloads: readonly Record<string, unknown>[], context: { deliveryId: string }): Promise<void>;
  close(): Promise<void>;
}

export type TargetResolver = (destination: {
  tenantId: string;
  type: DestinationType;
  id: string;
}) => Promise<DeliveryTarget | null>;

export interface OutboxDispatcherOptions {
  readonly db: Kysely<Database>;
  readonly resolve: TargetResolver;
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Events per delivery; sinks do not split batches. */
  readonly batchSize?: number;
  /** Rows claimed per pass. */
  readonly claimLimit?: number;
  /** Tries before a row is marked failed (it stays visible through the API). */
  readonly maxAttempts?: number;
  /** How long a claimed row is reserved; a crashed sender's rows become due again after it. */
  readonly leaseMs?: number;
  readonly backoff?: BackoffOptions;
}

export interface DispatchReport {
  readonly delivered: number;
  readonly retrying: number;
  readonly failed: number;
}

interface ClaimedRow {
  id: string;
  tenant_id: string;
  destination_type: DestinationType;
  destination_id: string;
  event_id: string;
  payload: Record<string, unknown>;
  attempts: number;
}

function deliveryIdFor(rows: readonly ClaimedRow[]): string {
  return `dlv_${rows[0]?.id ?? '0'}_${rows.length}`;
}

export function createOutboxDispatcher(options: OutboxDispatcherOptions) {
  const { db } = options;
  const logger = (options.logger ?? noopLogger).child({ component: 'outbox' });
  const clock = options.clock ?? systemClock;
  const batchSize = options.batchSize ?? 100;
  const claimLimit = options.claimLimit ?? 1000;
  const maxAttempts = options.maxAttempts ?? 12;
  const leaseMs = options.leaseMs ?? 5 * 60_000;

  async function claim(): Promise<ClaimedRow[]> {
    const now = clock.now();
    const { rows } = await sql<ClaimedRow>`
      with due as (
        select id from outbox
        where status in ('pending', 'sending') and next_attempt_at <= ${now}
        order by id
        limit ${claimLimit}
        for update skip locked
      )
      update outbox o
      set status = 'sending', attempts = o.attempts + 1, next_attempt_at = ${new Date(now.getTime() + leaseMs)}
      from due where o.id = due.id
      returning o.id::text as id, o.tenant_id, o.destination_type, o.destination_id, o.event_id, o.payload, o.attempts`.execute(
      db,
    );
    return rows.sort((a, b) => Number(a.id) - Number(b.id));
  }

  async function settle(
    rows: readonly ClaimedRow[],
    outcome:
      | { delivered: true }
      | { delivered: false; retryable: boolean; message: string; retryAfterMs: number | null },
  ) {
    const ids = rows.map((r) => r.id);
    const now = clock.now();
    if (outcome.delivered) {
      await db
        .updateTable('outbox')
        .set({ status: 'delivered', delivered_at: now, last_error: null })
        .where('id', 'in', ids as never[])
        .execute();
      return 'delivered' as const;
    }
    const attempts = Math.max(...rows.map((r) => r.attempts));
    const final = !outcome.retryable || attempts >= maxAttempts;
    const delay = Math.max(outcome.retryAfterMs ?? 0, nextAttemptDelayMs(attempts, options.backoff));
    await db
      .updateTable('outbox')
      .set({
        status: final ? 'failed' : 'pending',
        next_attempt_at: new Date(now.getTime() + (final ? 0 : delay)),
        last_error: outcome.message.slice(0, 1000),
      })
      .where('id', 'in', ids as never[])
      .execute();
    return final ? ('failed' as const) : ('retrying' as const);
  }

  async function deliverGroup(rows: readonly ClaimedRow[]): Promise<DispatchReport> {
    const first = rows[0] as ClaimedRow;
    const report = { delivered: 0, retrying: 0, failed: 0 };
    let target: DeliveryTarget | null;
    try {
      target = await options.resolve({
        tenantId: first.tenant_id,
        type: first.destination_type,
        id: first.destination_id,
      });
    } catch (error) {
      logger.warn({ err: error, destination: first.destination_id }, 'delivery target unavailable');
      await settle(rows, {
        delivered: false,
        retryable: true,
        message: 'destination could not be prepared (key service or database unavailable)',
        retryAfterMs: null,
      });
      report.retrying += rows.length;
      return report;
    }
    if (!target) {
      await settle(rows, {
        delivered: false,
        retryable: false,
        message: 'destination was deleted or disabled',
        retryAfterMs: null,
      });
      report.failed += rows.length;
      return report;
    }
    try {
      for (let i = 0; i < rows.length; i += batchSize) {
        const batch = rows.slice(i, i + batchSize);
        let result: 'delivered' | 'retrying' | 'failed';
        try {
          await target.send(
            batch.map((r) => r.payload),
            { deliveryId: deliveryIdFor(batch) },
          );
          result = await settle(batch, { delivered: true });
        } catch (error) {
          const known = isSinkDeliveryError(error);
          result = await settle(batch, {
            delivered: false,
            retryable: known ? error.retryable : true,
            message: known ? error.message : 'delivery failed: internal error',
            retryAfterMs: known ? error.retryAfterMs : null,
          });
          if (!known) logger.error({ err: error }, 'unexpected delivery error');
        }
        report[result] += batch.length;
        // Keep order per destination: later batches wait for this one to go through.
        if (result !== 'delivered') {
          const rest = rows.slice(i + batchSize);
          if (rest.length > 0) {
            await db
              .updateTable('outbox')
              .set({ status: 'pending', next_attempt_at: clock.now(), attempts: sql`attempts - 1` })
              .where('id', 'in', rest.map((r) => r.id) as never[])
              .execute();
          }
          break;
        }
      }
    } finally {
      await target.close().catch(() => {});
    }
    return report;
  }

  return {
    /** One pass: claim due rows, deliver them per destination (destinations in parallel). */
    async dispatchOnce(): Promise<DispatchReport> {
      const rows = await claim();
      const groups = new Map<string, ClaimedRow[]>();
      for (const row of rows) {
        const key = `${row.destination_type}:${row.destination_id}`;
        const list = groups.get(key) ?? [];
        list.push(row);
        groups.set(key, list);
      }
      const reports = await Promise.all([...groups.values()].map((group) => deliverGroup(group)));
      return reports.reduce(
        (sum, r) => ({
          delivered: sum.delivered + r.delivered,
          retrying: sum.retrying + r.retrying,
          failed: sum.failed + r.failed,
        }),
        { delivered: 0, retrying: 0, failed: 0 },
      );
    },

    /** Deletes delivered rows older than `olderThanMs` (the outbox is a queue, not the audit trail). */
    async purgeDelivered(olderThanMs = 24 * 3600_000): Promise<number> {
      const result = await db
        .deleteFrom('outbox')
        .where('status', '=', 'delivered')
        .where('delivered_at', '<', new Date(clock.now().getTime() - olderThanMs))
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}

export type OutboxDispatcher = ReturnType<typeof createOutboxDispatcher>;
