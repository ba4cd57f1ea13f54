import { randomBytes } from 'node:crypto';
import type { DeliveryTarget, SinkConfig, TargetResolver } from '@warden/audit';
import { createAuditSink, enqueueOutbox, lifecycleRecord, parseSinkConfig } from '@warden/audit';
import type { AuditEvent } from '@warden/audit';
import { WardenError, newId, notFound } from '@warden/core';
import type { Database } from '@warden/db';
import type { ActorContext, ConnectedAccountEvents, Envelope, LifecycleAudit } from '@warden/vault';
import { connectedAccountJson, sealIdentity, sealedColumns, sealedFromColumns } from '@warden/vault';
import type { Kysely, Transaction } from 'kysely';
import { approvalEventJson } from './approvals.service.ts';
import type { ApprovalEvents } from './approvals.service.ts';

/**
 * SIEM sinks and the tenant's own webhook: configuration (secrets sealed like
 * credentials), the outbox events for connected-account changes, and the delivery
 * targets the outbox dispatcher sends through.
 */
export interface DeliveryOptions {
  /** Accept http:// and private-network destinations: tests and single-host demos only. */
  readonly allowInsecureDestinations: boolean;
}

export interface SinkView {
  readonly id: string;
  readonly type: string;
  readonly name: string;
  /** Without its secret. */
  readonly config: Record<string, unknown>;
  readonly enabled: boolean;
  readonly createdAt: Date;
}

export interface DeliveryView {
  readonly id: string;
  readonly eventId: string;
  readonly status: string;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly nextAttemptAt: Date;
  readonly createdAt: Date;
  readonly deliveredAt: Date | null;
}

type SealedRow = {
  key_provider: string | null;
  key_id: string | null;
  wrapped_key: Uint8Array | null;
  iv: Uint8Array | null;
  ciphertext: Uint8Array | null;
  seal_format: number;
};

/**
 * Where a destination sends, for its lifecycle record: scheme, host and port only (a URL's
 * path or query may carry a token), or syslog's host and port.
 */
function destinationOf(config: SinkConfig): string {
  if (config.type === 'syslog') return `${config.transport}://${config.host}:${config.port}`;
  try {
    return new URL(config.url).origin;
  } catch {
    return '(unparsable URL)';
  }
}

function secretField(config: SinkConfig): 'secret' | 'token' | null {
  if (config.type === 'webhook') return 'secret';
  if (config.type === 'splunk_hec') return 'token';
  return null;
}

export function createDeliveryService(deps: {
  db: Kysely<Database>;
  envelope: Envelope;
  options: DeliveryOptions;
  /**
   * Writes lifecycle records inside the change's transaction: who sent the tenant's audit trail
   * where (a sink or webhook added, replaced or removed) is itself on the trail.
   */
  audit?: LifecycleAudit;
}) {
  const { db, envelope } = deps;
  const audit = deps.audit ?? (async () => {});
  const validation = {
    allowInsecureHttp: deps.options.allowInsecureDestinations,
    allowPrivateNetwork: deps.options.allowInsecureDestinations,
  };

  /** A sink's or webhook's secret, sealed to its kind and row: a copy elsewhere does not open. */
  async function seal(kind: 'siem_sink' | 'webhook', tenantId: string, rowId: string, secret: string) {
    return sealedColumns(
      await envelope.seal(sealIdentity(kind, tenantId, rowId), Buffer.from(secret, 'utf8')),
    );
  }

  async function open(
    kind: 'siem_sink' | 'webhook',
    tenantId: string,
    rowId: string,
    row: SealedRow,
  ): Promise<string | null> {
    const sealed = sealedFromColumns(row);
    if (!sealed) return null;
    const plaintext = await envelope.open(sealIdentity(kind, tenantId, rowId), sealed);
    try {
      return plaintext.toString('utf8');
    } finally {
      plaintext.fill(0);
    }
  }

  function sinkTarget(config: SinkConfig): DeliveryTarget {
    const sink = createAuditSink(config, validation);
    return {
      send: (payloads, context) => sink.send(payloads as unknown as readonly AuditEvent[], context),
      close: () => sink.close(),
    };
  }

  const resolve: TargetResolver = async ({ tenantId, type, id }) => {
    if (type === 'audit_sink') {
      const row = await db
        .selectFrom('audit_sinks')
        .selectAll()
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row || !row.enabled) return null;
      const config = { ...row.config } as Record<string, unknown>;
      const field = secretField(config as unknown as SinkConfig);
      if (field) config[field] = await open('siem_sink', tenantId, id, row);
      return sinkTarget(config as unknown as SinkConfig);
    }
    const row = await db
      .selectFrom('tenant_webhooks')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row || !row.enabled) return null;
    const secret = await open('webhook', tenantId, id, row);
    if (!secret) return null;
    return sinkTarget({ type: 'webhook', url: row.url, secret });
  };

  /** One event to the tenant's webhook (if it has one), in the transaction of the change it reports. */
  async function webhookEvent(
    tx: Transaction<Database>,
    tenantId: string,
    type: string,
    data: Record<string, unknown>,
  ): Promise<void> {
    const hook = await tx
      .selectFrom('tenant_webhooks')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .where('enabled', '=', true)
      .executeTakeFirst();
    if (!hook) return;
    const id = newId('whk');
    await enqueueOutbox(tx, [
      {
        tenantId,
        destinationType: 'tenant_webhook',
        destinationId: hook.id,
        eventId: id,
        payload: { id, type, created_at: new Date().toISOString(), data },
      },
    ]);
  }

  /** Tenant webhook events, recorded in the transaction of the account change. */
  const accountEvents: ConnectedAccountEvents = (tx, event) =>
    webhookEvent(tx, event.account.tenantId, event.type, {
      connected_account: connectedAccountJson(event.account),
    });

  function sinkView(row: {
    id: string;
    type: string;
    name: string;
    config: Record<string, unknown>;
    enabled: boolean;
    created_at: Date;
  }): SinkView {
    return {
      id: row.id,
      type: row.type,
      name: row.name,
      config: row.config,
      enabled: row.enabled,
      createdAt: row.created_at,
    };
  }

  /** A sink or webhook of this tenant; another tenant's id is as unknown as a made-up one. */
  async function assertDestination(tenantId: string, destinationId: string): Promise<void> {
    const owner =
      (await db
        .selectFrom('audit_sinks')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where('id', '=', destinationId)
        .executeTakeFirst()) ??
      (await db
        .selectFrom('tenant_webhooks')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where('id', '=', destinationId)
        .executeTakeFirst());
    if (!owner) throw notFound('delivery destination');
  }

  /** Approval events (`approval.requested`, …) to the tenant's webhook, in the change's transaction. */
  const approvalEvents: ApprovalEvents = (tx, tenantId, event) =>
    webhookEvent(tx, tenantId, event.type, { approval: approvalEventJson(event.approval) });

  return {
    resolve,
    accountEvents,
    approvalEvents,

    async createSink(ctx: ActorContext, input: { name?: unknown; config: unknown }): Promise<SinkView> {
      const { tenantId } = ctx;
      const config = parseSinkConfig(input.config, { ...validation, fieldPrefix: 'config' });
      const name =
        typeof input.name === 'string' && input.name.trim() ? input.name.trim().slice(0, 100) : config.type;
      const id = newId('snk');
      const field = secretField(config);
      const { [field ?? '_']: secret, ...publicConfig } = config as unknown as Record<string, unknown>;
      const sealed = field && typeof secret === 'string' ? await seal('siem_sink', tenantId, id, secret) : {};
      const row = await db.transaction().execute(async (tx) => {
        const inserted = await tx
          .insertInto('audit_sinks')
          .values({
            id,
            tenant_id: tenantId,
            type: config.type,
            name,
            config: JSON.stringify(publicConfig),
            ...sealed,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await audit(tx, tenantId, [
          lifecycleRecord(
            { caller: ctx.actor },
            {
              action: 'audit_sink.created',
              details: { sink_id: id, type: config.type, name, destination: destinationOf(config) },
            },
          ),
        ]);
        return inserted;
      });
      return sinkView(row);
    },

    async listSinks(tenantId: string): Promise<SinkView[]> {
      const rows = await db
        .selectFrom('audit_sinks')
        .selectAll()
        .where('tenant_id', '=', tenantId)
        .orderBy('created_at')
        .execute();
      return rows.map(sinkView);
    },

    async deleteSink(ctx: ActorContext, id: string): Promise<void> {
      await db.transaction().execute(async (tx) => {
        const row = await tx
          .deleteFrom('audit_sinks')
          .where('tenant_id', '=', ctx.tenantId)
          .where('id', '=', id)
          .returning(['id', 'type', 'name'])
          .executeTakeFirst();
        if (!row) throw notFound('audit sink');
        await audit(tx, ctx.tenantId, [
          lifecycleRecord(
            { caller: ctx.actor },
            { action: 'audit_sink.deleted', details: { sink_id: row.id, type: row.type, name: row.name } },
          ),
        ]);
      });
    },

    async deliveries(
      tenantId: string,
      destinationId: string,
      query: { status?: 'pending' | 'sending' | 'delivered' | 'failed'; limit?: number },
    ): Promise<DeliveryView[]> {
      await assertDestination(tenantId, destinationId);
      let q = db
        .selectFrom('outbox')
        .select([
          'id',
          'event_id',
          'status',
          'attempts',
          'last_error',
          'next_attempt_at',
          'created_at',
          'delivered_at',
        ])
        .where('tenant_id', '=', tenantId)
        .where('destination_id', '=', destinationId);
      if (query.status) q = q.where('status', '=', query.status);
      const rows = await q
        .orderBy('id', 'desc')
        .limit(Math.min(query.limit ?? 100, 500))
        .execute();
      return rows.map((r) => ({
        id: String(r.id),
        eventId: r.event_id,
        status: r.status,
        attempts: r.attempts,
        lastError: r.last_error,
        nextAttemptAt: r.next_attempt_at,
        createdAt: r.created_at,
        deliveredAt: r.delivered_at,
      }));
    },

    /**
     * Puts failed deliveries of a destination (all, or the ones named) back in the queue with
     * fresh attempts; the dispatcher sends them on its next tick. Returns how many were requeued.
     */
    async retryFailed(tenantId: string, destinationId: string, ids?: readonly string[]): Promise<number> {
      await assertDestination(tenantId, destinationId);
      let q = db
        .updateTable('outbox')
        .set({ status: 'pending', attempts: 0, next_attempt_at: new Date() })
        .where('tenant_id', '=', tenantId)
        .where('destination_id', '=', destinationId)
        .where('status', '=', 'failed');
      if (ids) {
        const numeric = ids.filter((id) => /^[0-9]{1,18}$/.test(id));
        if (numeric.length === 0) return 0;
        q = q.where('id', 'in', numeric);
      }
      const result = await q.executeTakeFirst();
      return Number(result.numUpdatedRows);
    },

    /** Sets the tenant's webhook; returns the signing secret once (generated unless given). */
    async setWebhook(ctx: ActorContext, input: { url: unknown; secret?: unknown }) {
      const { tenantId } = ctx;
      const secret =
        input.secret === undefined
          ? `whsec_${randomBytes(24).toString('base64url')}`
          : typeof input.secret === 'string'
            ? input.secret
            : '';
      if (secret.length < 16) {
        throw new WardenError(
          'invalid_request',
          'secret: must be at least 16 characters (or leave it out to get one)',
          { field: 'secret' },
        );
      }
      const config = parseSinkConfig({ type: 'webhook', url: input.url, secret }, validation) as {
        url: string;
      };
      const existing = await db
        .selectFrom('tenant_webhooks')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
      const id = existing?.id ?? newId('whk');
      const sealed = await seal('webhook', tenantId, id, secret);
      await db.transaction().execute(async (tx) => {
        await tx
          .insertInto('tenant_webhooks')
          .values({ tenant_id: tenantId, id, url: config.url, enabled: true, ...sealed })
          .onConflict((oc) =>
            oc
              .column('tenant_id')
              .doUpdateSet({ url: config.url, enabled: true, updated_at: new Date(), ...sealed }),
          )
          .execute();
        await audit(tx, tenantId, [
          lifecycleRecord(
            { caller: ctx.actor },
            {
              action: existing ? 'webhook.replaced' : 'webhook.created',
              details: {
                webhook_id: id,
                destination: destinationOf(config as SinkConfig),
                secret_generated: input.secret === undefined,
              },
            },
          ),
        ]);
      });
      return { id, url: config.url, secret };
    },

    async getWebhook(tenantId: string) {
      const row = await db
        .selectFrom('tenant_webhooks')
        .select(['id', 'url', 'enabled', 'created_at'])
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
      if (!row) throw notFound('webhook');
      return row;
    },

    async deleteWebhook(ctx: ActorContext): Promise<void> {
      await db.transaction().execute(async (tx) => {
        const row = await tx
          .deleteFrom('tenant_webhooks')
          .where('tenant_id', '=', ctx.tenantId)
          .returning('id')
          .executeTakeFirst();
        if (!row) throw notFound('webhook');
        await audit(tx, ctx.tenantId, [
          lifecycleRecord(
            { caller: ctx.actor },
            { action: 'webhook.deleted', details: { webhook_id: row.id } },
          ),
        ]);
      });
    },
  };
}

export type DeliveryService = ReturnType<typeof createDeliveryService>;
