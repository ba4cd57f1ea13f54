import type { Logger } from '@warden/core';
import { isWardenError } from '@warden/core';
import { createCloudflareClient, verifyCredential } from '@warden/cloudflare';
import type { CloudflareClient, CloudflareCredential } from '@warden/cloudflare';
import { createDb, migrateToLatest } from '@warden/db';
import type { Db, TenantSettings } from '@warden/db';
import { createAwsKmsKeyProvider, createLocalKeyProvider } from '@warden/kms';
import type { KeyProvider } from '@warden/kms';
import {
  createConnectedAccountService,
  createEnvelope,
  createKeyRotationService,
  createTenantService,
} from '@warden/vault';
import type { ConnectedAccountService, Envelope, KeyRotationService, TenantService } from '@warden/vault';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildUpstreamBudget, createBudgetRedisClient } from '@warden/ratelimit';
import type { UpstreamBudget } from '@warden/ratelimit';
import type { Redis } from 'ioredis';
import { createAuditStore, createOutboxDispatcher, runAuditMaintenance } from '@warden/audit';
import type { AuditStore, OutboxDispatcher } from '@warden/audit';
import {
  createDeliveryService,
  createExecuteToolService,
  createOffboardingService,
  createPolicyStore,
  createScopedToolsService,
} from '@warden/tools';
import type {
  DeliveryService,
  ExecuteToolService,
  OffboardingService,
  PolicyStore,
  ScopedToolsService,
  TenantToolSettings,
} from '@warden/tools';
import { sql } from 'kysely';
import { createMcpTokenService } from '@warden/vault';
import type { McpTokenService } from '@warden/vault';
import { parseBudget } from '@warden/ratelimit';
import { createCodeMode } from './code-mode.ts';
import type { CodeMode } from './code-mode.ts';
import type { Config } from './config.ts';
import type { ReadinessCheck } from './readiness.ts';
import { createLocalEventBus, createRedisEventBus } from './event-bus.ts';
import type { EventBus } from './event-bus.ts';
import { McpConnections, MCP_REVOKE_CHANNEL } from './mcp/mcp-connections.ts';
import { createBullScheduler, createLocalScheduler } from './workers/scheduler.ts';
import type { Scheduler } from './workers/scheduler.ts';

export type { ReadinessCheck } from './readiness.ts';

export const MIGRATIONS_FOLDER = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../migrations',
);

export interface Container {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: Db;
  readonly keys: KeyProvider;
  readonly envelope: Envelope;
  readonly cloudflare: CloudflareClient;
  readonly tenants: TenantService;
  readonly connectedAccounts: ConnectedAccountService;
  readonly keyRotation: KeyRotationService;
  /** The upstream budget: `admit` before and `observe` after every request sent with a credential. */
  readonly rateBudget: UpstreamBudget;
  readonly codeMode: CodeMode;
  readonly policies: PolicyStore;
  readonly audit: AuditStore;
  readonly mcpTokens: McpTokenService;
  readonly executeTool: ExecuteToolService;
  readonly scopedTools: ScopedToolsService;
  readonly tenantSettings: (tenantId: string) => Promise<TenantToolSettings>;
  /** Cross-replica fan-out (Redis pub/sub, or in-process). */
  readonly bus: EventBus;
  readonly mcpConnections: McpConnections;
  readonly delivery: DeliveryService;
  readonly offboarding: OffboardingService;
  readonly outbox: OutboxDispatcher;
  readonly scheduler: Scheduler;
  /** One audit maintenance pass (partitions ahead, stragglers, expired days), also run by the scheduler. */
  maintainAudit(now?: Date): Promise<void>;
  readonly readiness: readonly ReadinessCheck[];
  close(): Promise<void>;
}

/** Revoked tenant API keys, for every replica to drop from its authentication cache. */
export const API_KEY_REVOKE_CHANNEL = 'warden:api-key:revoke';

async function connectRedis(client: Redis, logger: Logger): Promise<void> {
  try {
    await client.connect();
  } catch (error) {
    // Keep starting: requests needing Redis answer 503 (or use the local fallback)
    // until the client's background reconnect succeeds; /readyz reports it meanwhile.
    logger.warn({ err: error }, 'Redis is unreachable at start-up; retrying in the background');
  }
}

function createRateBudget(
  config: Config,
  logger: Logger,
  redis: Redis | null,
): { budget: UpstreamBudget; check: ReadinessCheck } {
  const budget = buildUpstreamBudget({
    redis,
    logger,
    onRedisFailure: config.rateLimit.onRedisFailure,
    replicas: config.rateLimit.replicas,
    graphql: config.rateLimit.graphqlBudget,
    egressLimit: config.rateLimit.egressLimit,
    egressPool: config.rateLimit.egressPool,
    maxWaitMs: config.rateLimit.maxWaitMs,
    maxQueue: config.rateLimit.egressQueueSize,
    // An unanswered request counts from its admission until its timeout has surely passed.
    inFlightMs: config.cloudflare.timeoutMs + 1000,
  });
  if (!redis) return { budget, check: { name: 'rate_budget', check: () => budget.health() } };
  return {
    budget,
    check: {
      name: 'redis',
      async check() {
        try {
          await redis.ping();
          return undefined;
        } catch (error) {
          if (config.rateLimit.onRedisFailure === 'local') return 'degraded';
          throw error;
        }
      },
    },
  };
}

export function createKeyProvider(config: Config): KeyProvider {
  return config.kms.provider === 'aws'
    ? createAwsKmsKeyProvider({
        keyId: config.kms.keyId,
        ...(config.kms.region ? { region: config.kms.region } : {}),
        ...(config.kms.endpoint ? { endpoint: config.kms.endpoint } : {}),
        ...(config.kms.credentials ? { credentials: config.kms.credentials } : {}),
      })
    : createLocalKeyProvider({ keyFile: config.kms.keyFile });
}

/** Re-verifies a credential Cloudflare answered 401 to (at most once a minute per account). */
function reverifier(accounts: ConnectedAccountService, cloudflare: CloudflareClient, logger: Logger) {
  const recent = new Map<string, number>();
  return (tenantId: string, account: { id: string }, credential: CloudflareCredential) => {
    const now = Date.now();
    if ((recent.get(account.id) ?? 0) > now - 60_000) return;
    recent.set(account.id, now);
    verifyCredential(cloudflare, credential)
      .then(() => undefined)
      .catch(async (error: unknown) => {
        if (isWardenError(error) && error.code === 'invalid_credential') {
          await accounts.setStatus(tenantId, account.id, 'INVALID');
          logger.warn(
            { connected_account_id: account.id, reason: error.message },
            'credential no longer valid; account marked INVALID',
          );
        }
      })
      .catch((err: unknown) => logger.warn({ err }, 'credential re-verification failed'));
  };
}

/** Tenant settings with the service defaults filled in. */
function effectiveSettings(config: Config, settings: TenantSettings): TenantToolSettings {
  const audit = (settings.audit ?? {}) as { retention_days?: number; capture_code?: boolean };
  return {
    budget:
      typeof settings.budget === 'string' ? parseBudget(settings.budget, 'budget') : config.cloudflare.budget,
    retentionDays: audit.retention_days ?? config.auditRetentionDays,
    captureCode: audit.capture_code ?? true,
  };
}

function tenantSettingsReader(config: Config, tenants: TenantService) {
  return async (tenantId: string): Promise<TenantToolSettings> =>
    effectiveSettings(config, (await tenants.get(tenantId)).settings);
}

/** The composition root: explicit wiring of every dependency, nothing hidden on the Fastify instance. */
export async function createContainer(config: Config, logger: Logger): Promise<Container> {
  const db = await createDb(
    config.database.kind === 'postgres'
      ? {
          kind: 'postgres',
          url: config.database.url,
          poolSize: config.database.poolSize,
          preparedStatements: config.database.preparedStatements,
        }
      : { kind: 'pglite', dataDir: config.database.dataDir },
  );
  const closers: Array<() => Promise<void>> = [];
  try {
    if (config.migrateOnStart) {
      const { applied } = await migrateToLatest(db.kysely, MIGRATIONS_FOLDER);
      if (applied.length > 0) logger.info({ applied }, 'database migrations applied');
    }
    const keys = createKeyProvider(config);
    const envelope = createEnvelope(keys, config.dataKeyCache);
    const cloudflare = createCloudflareClient({
      baseUrl: config.cloudflare.apiBase,
      timeoutMs: config.cloudflare.timeoutMs,
      userAgent: 'warden/0.1',
    });
    closers.push(async () => cloudflare.close?.());
    // The event bus comes first: API key revocations travel on it.
    const bus = config.redisUrl ? await createRedisEventBus(config.redisUrl, logger) : createLocalEventBus();
    closers.push(() => bus.close());
    const tenants = createTenantService({
      db: db.kysely,
      apiKeyCache: {
        ttlMs: config.apiKeyCacheTtlMs,
        trustedSince: () => bus.deliveringSince(),
        onRevoked: (keyId) => {
          bus
            .publish(API_KEY_REVOKE_CHANNEL, { keyId })
            .catch((err: unknown) =>
              logger.warn({ err, keyId }, 'could not tell other replicas of an API key revocation'),
            );
        },
      },
    });
    await bus.subscribe(API_KEY_REVOKE_CHANNEL, (message) => {
      const keyId = (message as { keyId?: unknown } | null)?.keyId;
      if (typeof keyId === 'string') tenants.forgetApiKey(keyId);
    });
    const delivery = createDeliveryService({
      db: db.kysely,
      envelope,
      options: { allowInsecureDestinations: config.deliveryAllowInsecure },
    });
    const connectedAccounts = createConnectedAccountService({
      db: db.kysely,
      envelope,
      verify: (credential) => verifyCredential(cloudflare, credential),
      events: delivery.accountEvents,
    });
    const keyRotation = createKeyRotationService({ db: db.kysely, envelope });
    const redis = config.redisUrl ? createBudgetRedisClient(config.redisUrl, { lazyConnect: true }) : null;
    if (redis) {
      redis.on('error', () => {});
      await connectRedis(redis, logger);
    }
    closers.push(async () => {
      await redis?.quit().catch(() => redis.disconnect());
    });
    const rate = createRateBudget(config, logger, redis);
    closers.push(() => rate.budget.close());
    const codeMode = await createCodeMode(config, logger);
    closers.push(() => codeMode.close());
    const policies = createPolicyStore({ db: db.kysely });
    const audit = createAuditStore({ db: db.kysely });
    const mcpTokens = createMcpTokenService({ db: db.kysely });
    const tenantSettings = tenantSettingsReader(config, tenants);
    const executeTool = createExecuteToolService({
      accounts: connectedAccounts,
      context: async (tenantId, identifier) => {
        const { tenant, identity, settings } = await policies.effectiveWithSettings(tenantId, identifier);
        return { policy: { tenant, identity }, settings: effectiveSettings(config, settings) };
      },
      runner: codeMode.runner,
      spec: codeMode.spec,
      cloudflare,
      budget: rate.budget,
      audit,
      onUnauthorized: reverifier(connectedAccounts, cloudflare, logger),
      isAccountActive: async (tenantId, id) => {
        const row = await db.kysely
          .selectFrom('connected_accounts')
          .select('status')
          .where('tenant_id', '=', tenantId)
          .where('id', '=', id)
          .executeTakeFirst();
        return row?.status === 'ACTIVE';
      },
      logger,
    });
    const scopedTools = createScopedToolsService({
      accounts: connectedAccounts,
      policies,
      definitions: codeMode.definitions,
    });
    const offboarding = createOffboardingService({
      accounts: connectedAccounts,
      mcpTokens,
      cloudflare,
      audit,
      tenantSettings,
      closeSessions: (tenantId, identifier) => bus.publish(MCP_REVOKE_CHANNEL, { tenantId, identifier }),
      logger,
    });
    const outbox = createOutboxDispatcher({ db: db.kysely, resolve: delivery.resolve, logger });
    const maintainAudit = async (now = new Date()) => {
      const { rows } = await sql<{ days: number | null }>`
        select distinct (settings->'audit'->>'retention_days')::int as days from tenants`.execute(db.kysely);
      const retentionDays = [
        config.auditRetentionDays,
        ...rows.map((r) => r.days).filter((d): d is number => typeof d === 'number'),
      ];
      const report = await runAuditMaintenance(db.kysely, { now, retentionDays });
      const purged = await outbox.purgeDelivered();
      if (report.created.length || report.dropped.length || report.rescued || purged) {
        logger.info({ ...report, outbox_purged: purged }, 'audit maintenance');
      }
    };
    await maintainAudit();
    const scheduler = config.redisUrl
      ? createBullScheduler(config.redisUrl, logger)
      : createLocalScheduler(logger);
    scheduler.every('outbox-dispatch', config.outboxIntervalMs, async () => {
      await outbox.dispatchOnce();
    });
    scheduler.every('audit-maintenance', 3600_000, () => maintainAudit());
    await scheduler.start();
    closers.push(() => scheduler.close());
    return {
      config,
      logger,
      db,
      keys,
      envelope,
      cloudflare,
      tenants,
      connectedAccounts,
      keyRotation,
      rateBudget: rate.budget,
      codeMode,
      policies,
      audit,
      mcpTokens,
      executeTool,
      scopedTools,
      tenantSettings,
      bus,
      mcpConnections: new McpConnections(),
      delivery,
      offboarding,
      outbox,
      scheduler,
      maintainAudit,
      readiness: [
        { name: 'database', check: () => db.ping() },
        { name: 'kms', check: () => keys.ping() },
        rate.check,
        codeMode.readiness,
      ],
      async close() {
        envelope.cache.clear();
        for (const close of closers.reverse()) await close();
        await db.close();
      },
    };
  } catch (error) {
    for (const close of closers.reverse()) await close().catch(() => {});
    await db.close().catch(() => {});
    throw error;
  }
}
