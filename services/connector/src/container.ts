import type { Logger } from '@warden/core';
import { collectTail, createCloudflareClient, createR2Client } from '@warden/cloudflare';
import type { CloudflareClient } from '@warden/cloudflare';
import { createDatabaseClock, createDb, isDatabaseWriteRefused } from '@warden/db';
import type { Database, DatabaseClock, Db } from '@warden/db';
import {
  createAwsKmsKeyProvider,
  createAwsKmsSigner,
  createLocalKeyProvider,
  createLocalSigner,
} from '@warden/kms';
import type { KeyProvider, Signer } from '@warden/kms';
import {
  createConnectedAccountService,
  createEnvelope,
  createKeyRotationService,
  createMcpTokenService,
  createSsoDomainRecheck,
  createTenantService,
  removeSsoConsoleAdmin,
} from '@warden/vault';
import type {
  ConnectedAccountService,
  DomainProof,
  Envelope,
  KeyRotationService,
  LifecycleAudit,
  McpTokenService,
  SsoDomainRecheck,
  TenantService,
} from '@warden/vault';
import { Resolver } from 'node:dns/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildUpstreamBudget, createBudgetRedisClient } from '@warden/ratelimit';
import type { UpstreamBudget } from '@warden/ratelimit';
import type { Redis } from 'ioredis';
import {
  SYSTEM_CALLER,
  SYSTEM_TENANT_ID,
  createAuditCheckpointer,
  createAuditStore,
  createOutboxDispatcher,
  lifecycleRecord,
} from '@warden/audit';
import type { AuditCaller, AuditCheckpointer, AuditStore, OutboxDispatcher } from '@warden/audit';
import {
  createAuditMaintenance,
  createCallContextSource,
  createCredentialVerifier,
  createDeliveryService,
  createApprovalService,
  createExecuteToolService,
  createStepRunner,
  createLiveCalls,
  createMintedCredentialStore,
  createOffboardingService,
  createPolicyStore,
  createReverifier,
  createScopedToolsService,
  createTenantSettingsService,
  createR2ByteBudget,
  createR2Gateway,
  createTailGateway,
  createUpstreamGateway,
  DEFAULT_TAIL_EVENT_BYTES,
  effectiveSettings,
} from '@warden/tools';
import type {
  AuditMaintenance,
  CallContextSource,
  DeliveryService,
  ApprovalService,
  ExecuteToolService,
  Invalidation,
  LiveCalls,
  OffboardingService,
  OperatorDefaults,
  PolicyStore,
  ScopedToolsService,
  TenantSettingsService,
  UpstreamGateway,
} from '@warden/tools';
import type { Kysely } from 'kysely';
import { createCodeMode } from './code-mode.ts';
import type { CodeMode } from './code-mode.ts';
import type { Config } from './config.ts';
import { ReadinessProblem } from './readiness.ts';
import type { ReadinessCheck } from './readiness.ts';
import { createLocalEventBus, createRedisEventBus } from './event-bus.ts';
import { createStepTimings } from './step-timings.ts';
import type { StepTimings } from './step-timings.ts';
import type { EventBus } from './event-bus.ts';
import { McpConnections } from './mcp/mcp-connections.ts';
import { createBullScheduler, createLocalScheduler } from './workers/scheduler.ts';
import { isOAuthGrantActive, revokeOAuthGrantsOf } from './oauth/oauth-artifacts.ts';
import { endSsoConsoleSessions } from './console/console-sessions.ts';
import { grantIdOf } from './oauth/oauth-audit.ts';
import type { Scheduler } from './workers/scheduler.ts';

export type { ReadinessCheck } from './readiness.ts';

export const MIGRATIONS_FOLDER = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../migrations',
);

/** Revoked tenant API keys, for every replica to drop from its authentication cache. */
export const API_KEY_REVOKE_CHANNEL = 'api-key:revoke';
/** Revocations and changes that running calls, cached contexts and MCP sessions must hear of. */
export const INVALIDATION_CHANNEL = 'calls:invalidate';
/** A key-encryption key retired by `warden keys retire`: every replica forgets it at once. */
export const KEYS_RETIRED_CHANNEL = 'keys:retired';

/**
 * Everything the service is made of, wired and ready to be started. Building it opens no
 * connection, starts no process and no timer: `startup.ts` runs the start-up tasks a command
 * needs (migrations, Redis, sandboxes, jobs), so the CLI starts only what it uses.
 */
export interface Container {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: Db;
  /** The database's clock: audit times and expiries are decided on it, by every replica alike. */
  readonly clock: DatabaseClock;
  readonly keys: KeyProvider;
  readonly envelope: Envelope;
  readonly cloudflare: CloudflareClient;
  readonly redis: Redis | null;
  readonly tenants: TenantService;
  readonly settings: TenantSettingsService;
  readonly connectedAccounts: ConnectedAccountService;
  readonly keyRotation: KeyRotationService;
  /** The upstream budget: `admit` before and `observe` after every request sent with a credential. */
  readonly rateBudget: UpstreamBudget;
  /** How long Cloudflare's answers and the audit trail's commits took, for /metrics. */
  readonly stepTimings: Pick<StepTimings, 'onEvent'>;
  readonly codeMode: CodeMode;
  readonly policies: PolicyStore;
  readonly audit: AuditStore;
  /** Appends lifecycle records inside the transaction of the change they describe. */
  readonly lifecycleAudit: LifecycleAudit;
  /** Signs audit checkpoints with a key the database never holds; null when none is configured (AWS without a signing key). */
  readonly auditSigner: Signer | null;
  readonly auditCheckpoints: AuditCheckpointer | null;
  readonly auditMaintenance: AuditMaintenance;
  readonly gateway: UpstreamGateway;
  readonly contexts: CallContextSource;
  readonly liveCalls: LiveCalls;
  readonly mcpTokens: McpTokenService;
  readonly executeTool: ExecuteToolService;
  readonly approvals: ApprovalService;
  /** How tenants prove SSO email domains (the deployment's mode, its resolver, its re-check). */
  readonly domainProof: DomainProof;
  /** Looks DNS-proven SSO domains up again; a claim whose record stays missing lapses. */
  readonly ssoDomainRecheck: SsoDomainRecheck;
  readonly scopedTools: ScopedToolsService;
  /** Cross-replica fan-out (Redis pub/sub, or in-process). */
  readonly bus: EventBus;
  readonly mcpConnections: McpConnections;
  readonly delivery: DeliveryService;
  readonly offboarding: OffboardingService;
  readonly outbox: OutboxDispatcher;
  readonly scheduler: Scheduler;
  /** Tells every replica (this one included) of a revocation or change; resolves once published. */
  invalidate(change: Invalidation): Promise<void>;
  /** What a revocation or change does on this replica (the bus delivers them here). */
  applyInvalidation(change: Invalidation): void;
  /** Records a deployment-wide event (spec reload, key rotation) in the system chain. */
  /** Appends to the deployment's own trail; `caller` is who did it (the service by default). */
  recordSystemEvent(action: string, details: Record<string, unknown>, caller?: AuditCaller): Promise<void>;
  readonly readiness: readonly ReadinessCheck[];
  close(): Promise<void>;
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

/**
 * The audit signer: Ed25519 in the local key file, or an asymmetric AWS KMS key. `create: false`
 * (a verifier) never writes the key file.
 */
export function createAuditSigner(config: Config, options: { create?: boolean } = {}): Signer | null {
  if (config.kms.provider === 'local') {
    return createLocalSigner({
      keyFile: config.kms.keyFile,
      ...(options.create === false ? { create: false } : {}),
    });
  }
  if (!config.kms.signingKeyId) return null;
  return createAwsKmsSigner({
    keyId: config.kms.signingKeyId,
    previousKeyIds: config.kms.previousSigningKeyIds,
    ...(config.kms.region ? { region: config.kms.region } : {}),
    ...(config.kms.endpoint ? { endpoint: config.kms.endpoint } : {}),
    ...(config.kms.credentials ? { credentials: config.kms.credentials } : {}),
  });
}

/**
 * Redis's `maxmemory-policy` from `INFO memory` (which managed Redis services answer even where
 * `CONFIG GET` is disabled), or null when the server does not say.
 */
export async function evictionPolicy(redis: Redis): Promise<string | null> {
  const info = await redis.info('memory');
  return /^maxmemory_policy:(\S+)/m.exec(info)?.[1] ?? null;
}

export function evictionProblem(policy: string): string {
  return `Redis evicts keys under memory pressure (maxmemory-policy ${policy}): set maxmemory-policy to noeviction. An evicted budget window lets requests past Cloudflare's rate limit, and an evicted job schedule stops audit delivery.`;
}

/**
 * What /readyz says when the audit write probe is refused: appends refused (nothing goes to
 * Cloudflare until they are taken again), or only the probe itself not allowed to run, which
 * says nothing about the appends and must not claim to.
 */
export function auditRefusal(error: unknown): string {
  // PostgreSQL's own words, from the error the audit store wrapped.
  let said = 'no detail';
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (typeof (e as { code?: unknown }).code === 'string') said = e.message;
  }
  if (/permission denied for function audit_write_probe/.test(said)) {
    return 'cannot check that PostgreSQL takes audit writes: the service role may not execute audit_write_probe(text, date); grant it EXECUTE (PUBLIC has it by default)';
  }
  return `PostgreSQL refuses audit writes (a read-only transaction, or a privilege missing on audit_events, audit_chain_heads, outbox or audit_sinks; it says: ${said}): nothing is sent to Cloudflare until it takes them again`;
}

function createRateBudget(
  config: Config,
  logger: Logger,
  redis: Redis | null,
): { budget: UpstreamBudget; check: ReadinessCheck } {
  const budget = buildUpstreamBudget({
    redis,
    keyPrefix: `${config.redisKeyPrefix}:rl`,
    logger,
    onRedisFailure: config.rateLimit.onRedisFailure,
    replicas: config.rateLimit.replicas,
    graphql: config.rateLimit.graphqlBudget,
    r2: config.rateLimit.r2Budget,
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
        let policy: string | null;
        try {
          policy = await evictionPolicy(redis);
        } catch (error) {
          if (config.rateLimit.onRedisFailure === 'local') return 'degraded';
          throw error;
        }
        if (policy !== null && policy !== 'noeviction') throw new ReadinessProblem(evictionProblem(policy));
        return undefined;
      },
    },
  };
}

/** TXT look-ups for SSO domain proofs: a few seconds at most, then the proof answers 503. */
function dnsResolver(servers: readonly string[] | null): (name: string) => Promise<string[][]> {
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  if (servers) resolver.setServers([...servers]);
  return (name) => resolver.resolveTxt(name);
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
  const clock = createDatabaseClock(db.kysely as unknown as Kysely<never>);
  const defaults: OperatorDefaults = {
    budget: config.cloudflare.budget,
    retentionDays: config.auditRetentionDays,
  };
  const keys = createKeyProvider(config);
  const stepTimings = createStepTimings();
  const cloudflare = createCloudflareClient({
    baseUrl: config.cloudflare.apiBase,
    timeoutMs: config.cloudflare.timeoutMs,
    userAgent: 'warden/0.1',
    onAnswered: (answer) => stepTimings.record({ step: 'upstream', ...answer }),
  });
  const bus = config.redisUrl
    ? createRedisEventBus(config.redisUrl, logger, { prefix: config.redisKeyPrefix })
    : createLocalEventBus();
  const redis = config.redisUrl
    ? createBudgetRedisClient(config.redisUrl, {
        lazyConnect: true,
        commandTimeout: config.redisCommandTimeoutMs,
      })
    : null;
  redis?.on('error', () => {});
  const rate = createRateBudget(config, logger, redis);
  const audit = createAuditStore({
    db: db.kysely,
    clock,
    onAppended: (appended) => stepTimings.record({ step: 'audit_append', ...appended }),
  });

  /** Lifecycle records join the change's transaction, with the tenant's retention read inside it. */
  const lifecycleAudit: LifecycleAudit = async (tx, tenantId, records) => {
    const row = await tx
      .selectFrom('tenants')
      .select('settings')
      .where('id', '=', tenantId)
      .executeTakeFirst();
    const { retentionDays } = effectiveSettings(defaults, row?.settings ?? {});
    await audit.appendWithin(tx as Kysely<Database>, tenantId, records, { retentionDays });
  };
  // A secret that no longer opens (moved, tampered with, or under a retired key) is on the record.
  const envelope = createEnvelope(keys, config.dataKeyCache, {
    onIntegrityFailure({ identity, keyId, reason }) {
      const record = lifecycleRecord(
        { caller: SYSTEM_CALLER },
        {
          action: 'sealed_secret.integrity_failure',
          outcome: 'error',
          error: { code: 'integrity_failure', message: reason },
          details: { sealed_kind: identity.kind, sealed_id: identity.id, key_id: keyId },
        },
      );
      db.kysely
        .transaction()
        .execute((tx) => lifecycleAudit(tx, identity.tenantId, [record]))
        .catch((err: unknown) =>
          logger.error({ err, tenantId: identity.tenantId }, 'could not record an integrity failure'),
        );
    },
  });

  const mcpConnections = new McpConnections();
  /**
   * Redis delivers a published message to every subscriber before it answers the publish, so
   * once this resolves every replica's subscriber has it.
   */
  const invalidate = async (change: Invalidation): Promise<void> => {
    try {
      await bus.publish(INVALIDATION_CHANNEL, change);
    } catch (err) {
      // This replica still hears of it; the others stop trusting their caches while their
      // subscriber is disconnected, and re-read everything after it reconnects.
      logger.warn({ err, tenant_id: change.tenantId }, 'could not tell other replicas of a change');
      applyInvalidation(change);
    }
  };

  const tenants = createTenantService({
    db: db.kysely,
    clock,
    audit: lifecycleAudit,
    onSettingsChanged: (tenantId) => invalidate({ tenantId, reason: 'changed' }),
    apiKeyCache: {
      ttlMs: config.apiKeyCacheTtlMs,
      trustedSince: () => bus.deliveringSince(),
      onRevoked: (keyId, tenantId) => {
        bus
          .publish(API_KEY_REVOKE_CHANNEL, { keyId })
          .catch((err: unknown) =>
            logger.warn({ err, keyId }, 'could not tell other replicas of an API key revocation'),
          );
        // Executions the key started stop before their next upstream request, on every replica.
        void invalidate({ tenantId, tokenId: keyId, reason: 'revoked' });
      },
    },
  });
  const settings = createTenantSettingsService({ tenants, defaults });
  const codeMode = createCodeMode(config, logger, (version, operations) => {
    void recordSystemEvent('spec.loaded', { version, operations }).catch((err: unknown) =>
      logger.warn({ err }, 'could not record the spec load in the audit trail'),
    );
  });
  const mintedCredentials = createMintedCredentialStore({ db: db.kysely });
  const gateway = createUpstreamGateway({
    cloudflare,
    budget: rate.budget,
    spec: codeMode.spec,
    mintedCredentials,
    logger,
    clock,
  });
  const verification = {
    gateway,
    audit,
    budget: rate.budget,
    settings: (tenantId: string) => settings.effective(tenantId),
  };
  const delivery = createDeliveryService({
    db: db.kysely,
    envelope,
    options: { allowInsecureDestinations: config.deliveryAllowInsecure },
    audit: lifecycleAudit,
  });
  const connectedAccounts = createConnectedAccountService({
    db: db.kysely,
    envelope,
    clock,
    verify: createCredentialVerifier(verification),
    events: delivery.accountEvents,
    audit: lifecycleAudit,
    onChange: (change) => invalidate(change),
  });
  const keyRotation = createKeyRotationService({ db: db.kysely, envelope });
  const policies = createPolicyStore({
    db: db.kysely,
    settings,
    audit: lifecycleAudit,
    onIdentityPolicyChanged: (tenantId, identifier) =>
      invalidate({ tenantId, identifier, reason: 'changed' }),
  });
  const mcpTokens = createMcpTokenService({
    db: db.kysely,
    clock,
    audit: lifecycleAudit,
    onRevoked: ({ tenantId, tokenId }) => invalidate({ tenantId, tokenId, reason: 'revoked' }),
    cache: { ttlMs: config.apiKeyCacheTtlMs, trustedSince: () => bus.deliveringSince() },
  });
  const contexts = createCallContextSource({
    accounts: connectedAccounts,
    policyAndSettings: async (tenantId, identifier) => {
      const {
        tenant,
        identity,
        settings: stored,
      } = await policies.effectiveWithSettings(tenantId, identifier);
      return { policy: { tenant, identity }, settings: effectiveSettings(defaults, stored) };
    },
    // Read times are compared with the bus's own (local) clock: no database clock here.
    trustedSince: () => bus.deliveringSince(),
    ttlMs: config.contextCacheTtlMs,
  });
  const liveCalls = createLiveCalls({ trustedSince: () => bus.deliveringSince() });

  /** What a revocation or change does on this replica. */
  function applyInvalidation(change: Invalidation): void {
    contexts.invalidate(change);
    liveCalls.invalidate(change);
    if (
      change.reason === 'revoked' &&
      change.accountId === undefined &&
      (change.tokenId || change.identifier)
    ) {
      mcpTokens.forget({
        tenantId: change.tenantId,
        ...(change.tokenId !== undefined ? { tokenId: change.tokenId } : {}),
        ...(change.identifier !== undefined ? { identifier: change.identifier } : {}),
      });
    }
    // A revoked identity or token ends its MCP connections; an account alone does not.
    if (
      change.reason === 'revoked' &&
      change.accountId === undefined &&
      (change.tokenId || change.identifier)
    ) {
      mcpConnections.closeWhere(
        (key) =>
          key.tenantId === change.tenantId &&
          (change.identifier === undefined || key.identifier === change.identifier) &&
          (change.tokenId === undefined || key.tokenId === change.tokenId),
      );
    }
  }

  const approvals = createApprovalService({
    db: db.kysely,
    audit,
    lifecycleAudit,
    events: delivery.approvalEvents,
    gateway,
    contexts,
    expiryMs: config.approvalExpiryMs,
    planLimits: config.approvalPlanLimits,
    applyLeaseMs: config.approvalApplyLeaseMs,
    // A dependent plan's code runs again after each approved step (apply in steps).
    steps: createStepRunner({ contexts, liveCalls, gateway, runner: codeMode.runner, audit, clock }),
    approvers: async (tenantId) => (await settings.effective(tenantId)).approverApiKeyIds,
    clock,
    logger,
  });
  const r2 = createR2Gateway({
    client: createR2Client({
      ...(config.cloudflare.r2Endpoint ? { endpoint: config.cloudflare.r2Endpoint } : {}),
      timeoutMs: config.cloudflare.timeoutMs,
      maxResponseBytes: config.cloudflare.r2MaxObjectBytes,
      userAgent: 'warden/0.1',
    }),
    budget: rate.budget,
    maxObjectBytes: config.cloudflare.r2MaxObjectBytes,
    bytes: createR2ByteBudget({
      processBytes: config.cloudflare.r2BytesInFlight.process,
      tenantBytes: config.cloudflare.r2BytesInFlight.tenant,
      waitMs: config.cloudflare.r2BytesInFlight.waitMs,
    }),
    clock,
  });
  const tails = createTailGateway({
    gateway,
    budget: rate.budget,
    collect: collectTail,
    maxEventBytes: DEFAULT_TAIL_EVENT_BYTES,
    socketOrigins: config.cloudflare.tailSocketOrigins,
    clock,
  });
  const executeTool = createExecuteToolService({
    approvals,
    contexts,
    liveCalls,
    gateway,
    r2,
    tails,
    runner: codeMode.runner,
    spec: codeMode.spec,
    audit,
    onUnauthorized: createReverifier({ ...verification, accounts: connectedAccounts, logger }),
    // A session signed in with OAuth runs under its grant (`oag_…`), a minted one under its token.
    isTokenActive: (tenantId, tokenId) => {
      const grantId = grantIdOf(tokenId);
      return grantId
        ? isOAuthGrantActive(db.kysely, tenantId, grantId)
        : mcpTokens.isActive(tenantId, tokenId);
    },
    logger,
    clock,
  });
  const scopedTools = createScopedToolsService({
    accounts: connectedAccounts,
    policies,
    definitions: codeMode.definitions,
  });
  const offboarding = createOffboardingService({
    accounts: connectedAccounts,
    mcpTokens,
    gateway,
    audit,
    tenantSettings: (tenantId) => settings.effective(tenantId),
    closeSessions: async (tenantId, identifier) => {
      await endSsoConsoleSessions(db.kysely, tenantId, identifier);
      await invalidate({ tenantId, identifier, reason: 'revoked' });
    },
    revokeOAuthGrants: (tenantId, identifier) => revokeOAuthGrantsOf(db.kysely, tenantId, identifier),
    revokeConsoleAdmin: (tenantId, identifier) => removeSsoConsoleAdmin(db.kysely, tenantId, identifier),
    mintedCredentials,
    inFlight: {
      count: (tenantId, connectedAccountId, since) =>
        auditMaintenance.inFlight(tenantId, connectedAccountId, since),
      waitMs: config.cloudflare.timeoutMs + 5_000,
    },
    logger,
    clock,
  });
  const outbox = createOutboxDispatcher({ db: db.kysely, resolve: delivery.resolve, logger });
  const auditSigner = createAuditSigner(config);
  const auditCheckpoints = auditSigner
    ? createAuditCheckpointer({ db: db.kysely, signer: auditSigner, clock, logger })
    : null;
  const auditMaintenance = createAuditMaintenance({
    db: db.kysely,
    audit,
    defaults,
    // Past this, a request's outcome can no longer arrive: the call's deadline, the upstream
    // timeout and a margin for a slow commit.
    outcomeGraceMs:
      config.auditOutcomeGraceMs ?? config.sandboxLimits.wallMs + config.cloudflare.timeoutMs + 60_000,
    purgeDelivered: () => outbox.purgeDelivered(),
    ...(auditCheckpoints ? { checkpoints: auditCheckpoints } : {}),
    logger,
    clock,
  });
  const domainProof: DomainProof = {
    mode: config.oauth.domainProof,
    resolveTxt: dnsResolver(config.oauth.dnsServers),
    recheck: config.oauth.domainRecheck,
  };
  const ssoDomainRecheck = createSsoDomainRecheck({
    db: db.kysely,
    audit: lifecycleAudit,
    domainProof,
    logger,
  });
  const scheduler = config.redisUrl
    ? createBullScheduler(config.redisUrl, logger, {
        prefix: config.redisKeyPrefix,
        checkMs: config.schedulerCheckMs,
      })
    : createLocalScheduler(logger);

  async function recordSystemEvent(
    action: string,
    details: Record<string, unknown>,
    caller: AuditCaller = SYSTEM_CALLER,
  ): Promise<void> {
    await audit.append(SYSTEM_TENANT_ID, [lifecycleRecord({ caller }, { action, details })], {
      retentionDays: config.auditRetentionDays,
    });
  }

  return {
    config,
    logger,
    db,
    clock,
    keys,
    envelope,
    cloudflare,
    redis,
    tenants,
    settings,
    connectedAccounts,
    keyRotation,
    rateBudget: rate.budget,
    stepTimings,
    codeMode,
    policies,
    audit,
    lifecycleAudit,
    auditSigner,
    auditCheckpoints,
    auditMaintenance,
    gateway,
    contexts,
    liveCalls,
    mcpTokens,
    executeTool,
    approvals,
    domainProof,
    ssoDomainRecheck,
    scopedTools,
    bus,
    mcpConnections,
    delivery,
    offboarding,
    outbox,
    scheduler,
    invalidate,
    applyInvalidation,
    recordSystemEvent,
    readiness: [
      { name: 'database', check: () => db.ping() },
      {
        name: 'audit',
        check: () =>
          audit
            .probe(SYSTEM_TENANT_ID, { retentionDays: config.auditRetentionDays })
            .catch((error: unknown) => {
              if (!isDatabaseWriteRefused(error)) throw error;
              throw new ReadinessProblem(auditRefusal(error));
            }),
      },
      { name: 'kms', check: () => keys.ping() },
      rate.check,
      {
        name: 'scheduler',
        async check() {
          const problems = await scheduler.health();
          if (problems.length > 0) throw new ReadinessProblem(problems.join('; '));
        },
      },
      codeMode.readiness,
    ],
    async close() {
      envelope.cache.clear();
      clock.stop();
      await scheduler.close().catch(() => undefined);
      await codeMode.close().catch(() => undefined);
      await bus.close().catch(() => undefined);
      await rate.budget.close().catch(() => undefined);
      await redis?.quit().catch(() => redis.disconnect());
      cloudflare.close?.();
      await db.close();
    },
  };
}
