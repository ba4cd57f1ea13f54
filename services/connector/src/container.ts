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
import type { Config } from './config.ts';

export const MIGRATIONS_FOLDER = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../migrations',
);

/** A dependency `/readyz` checks; each throws when its dependency cannot serve. */
export interface ReadinessCheck {
  readonly name: string;
  check(): Promise<void>;
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
  readonly readiness: readonly ReadinessCheck[];
  close(): Promise<void>;
}

export function createKeyProvider(config: Config): KeyProvider {
  return config.kms.provider === 'aws'
    ? createAwsKmsKeyProvider({
        keyId: config.kms.keyId,
        ...(config.kms.region ? { region: config.kms.region } : {}),
        ...(config.kms.endpoint ? { endpoint: config.kms.endpoint } : {}),
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
      readiness: [
        { name: 'database', check: () => db.ping() },
        { name: 'kms', check: () => keys.ping() },
      ],
      async close() {
        envelope.cache.clear();
        await db.close();
      },
    };
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
}
