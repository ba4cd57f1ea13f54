import type { Logger } from '@warden/core';
import { createCloudflareClient, verifyCredential } from '@warden/cloudflare';
import type { CloudflareClient } from '@warden/cloudflare';
import { createDb, migrateToLatest } from '@warden/db';
import type { Db } from '@warden/db';
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
import {
  createBudgetRedisClient,
  createFallbackRateBudget,
  createMemoryRateBudget,
  createRedisRateBudget,
} from '@warden/ratelimit';
import type { FallbackRateBudget, RateBudget } from '@warden/ratelimit';
import type { Redis } from 'ioredis';
import type { Config } from './config.ts';

export const MIGRATIONS_FOLDER = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../migrations',
);

/**
 * A dependency `/readyz` checks: throws when it cannot serve; resolves 'degraded' when
 * the service still works without it (e.g. the local rate-budget fallback).
 */
export interface ReadinessCheck {
  readonly name: string;
  check(): Promise<void | 'degraded'>;
}

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
  readonly rateBudget: RateBudget;
  readonly readiness: readonly ReadinessCheck[];
  close(): Promise<void>;
}

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
): { budget: RateBudget; check: ReadinessCheck } {
  if (!redis) {
    const budget = createMemoryRateBudget();
    return { budget, check: { name: 'rate_budget', check: () => budget.health() } };
  }
  const budget: FallbackRateBudget = createFallbackRateBudget(createRedisRateBudget({ redis }), {
    logger,
    ...(config.rateLimit.onRedisFailure === 'local'
      ? { fallback: { replicas: config.rateLimit.replicas } }
      : {}),
  });
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

/** The composition root: explicit wiring of every dependency, nothing hidden on the Fastify instance. */
export async function createContainer(config: Config, logger: Logger): Promise<Container> {
  const db = await createDb(
    config.database.kind === 'postgres'
      ? { kind: 'postgres', url: config.database.url, poolSize: config.database.poolSize }
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
    const tenants = createTenantService({ db: db.kysely });
    const connectedAccounts = createConnectedAccountService({
      db: db.kysely,
      envelope,
      verify: (credential) => verifyCredential(cloudflare, credential),
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
      readiness: [
        { name: 'database', check: () => db.ping() },
        { name: 'kms', check: () => keys.ping() },
        rate.check,
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
