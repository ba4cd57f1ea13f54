import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Kysely } from 'kysely';
import {
  DEFAULT_DATABASE_ROLES,
  applyDatabaseRoles,
  createDatabaseClock,
  createDb,
  databaseRoleScript,
  migrateToLatest,
} from '@warden/db';
import type { Db } from '@warden/db';
import type { AuditCaller } from '@warden/audit';
import { listPartitions, verifyAllChains, verifyChain } from '@warden/audit';
import { addKeyVersion } from '@warden/kms';
import { isWardenError, noopLogger } from '@warden/core';
import { ConfigError, loadConfig } from './config.ts';
import type { Config } from './config.ts';
import { MIGRATIONS_FOLDER, createAuditSigner, createContainer } from './container.ts';
import { retireKey } from './key-retirement.ts';
import { keyStatus } from './key-status.ts';
import { refuseWhileEmbeddedDatabaseIsHeld } from './embedded-lock.ts';
import type { Container } from './container.ts';

/** Changes made from the command line are the operator's. */
const CLI_ACTOR: AuditCaller = {
  type: 'admin',
  id: 'cli',
  client_name: 'warden-cli',
  client_version: null,
  ip: null,
};

const USAGE = `usage: warden <command>

  tenants create NAME             create a tenant; prints its id and first API key (shown once)
  tenants list                    list tenants
  api-keys create TENANT_ID       issue another API key for a tenant (shown once)
  api-keys revoke TENANT_ID KEY_ID
  keys rotate [--all]             local: add a new key version and re-wrap every data key under it;
                                  aws: re-wrap data keys not under AWS_KMS_KEY_ID (--all: every data key)
  keys retire KEY                 retire a key (local: a version number such as 1; aws: a key ARN) once
                                  no data key is wrapped under it
  keys status                     the current key and how many data keys each key wraps
  db migrate                      apply pending database migrations
  db roles [--app-role NAME] [--maintenance-role NAME] [--print]
                                  create (if needed) and grant the service's PostgreSQL roles: NAME
                                  (default warden_app) appends and reads the audit trail but can never
                                  change it; the maintenance role (default warden_maintenance) owns it.
                                  Run as the migrating role after every \`db migrate\`; --print only
                                  shows the SQL
  audit verify [--tenant ID]      check every tenant's (or one tenant's) audit hash chain against its
                                  signed checkpoints; exit 1 on a problem (reads only: it changes nothing)
  audit maintain                  create upcoming audit partitions, drop expired ones, close intents
                                  that never got an outcome and sign checkpoints, now
  audit signing-key               the public key that signs audit checkpoints (PEM), for auditors

Configuration comes from the same environment variables as the service (see README).`;

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Runs a command on the wired services with nothing started (no sandbox, no job, no spec): a
 * command that writes applies pending migrations first (unless MIGRATE_ON_START=false).
 */
async function withContainer<T>(
  config: Config,
  run: (c: Container) => Promise<T>,
  options: { writes: boolean } = { writes: true },
): Promise<T> {
  const container = await createContainer(config, noopLogger);
  try {
    if (options.writes && config.migrateOnStart)
      await migrateToLatest(container.db.kysely, MIGRATIONS_FOLDER);
    return await run(container);
  } finally {
    await container.close();
  }
}

/**
 * The database alone, for commands that need nothing else wired. `mustExist`: an embedded
 * database that is not there yet is an error, not created.
 */
async function openDatabase(config: Config, options: { mustExist: boolean }): Promise<Db> {
  if (config.database.kind === 'postgres') {
    return createDb({ kind: 'postgres', url: config.database.url, preparedStatements: false });
  }
  const { dataDir } = config.database;
  if (options.mustExist && !existsSync(path.join(dataDir, 'PG_VERSION'))) {
    throw new ConfigError(
      `there is no embedded database in ${dataDir} (set DATA_DIR, or DATABASE_URL for PostgreSQL)`,
    );
  }
  return createDb({ kind: 'pglite', dataDir });
}

function isUndefinedTable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '42P01';
}

async function keysStatus(c: Container): Promise<void> {
  print(await keyStatus(c));
}

async function run(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      all: { type: 'boolean', default: false },
      tenant: { type: 'string' },
      'app-role': { type: 'string', default: DEFAULT_DATABASE_ROLES.appRole },
      'maintenance-role': { type: 'string', default: DEFAULT_DATABASE_ROLES.maintenanceRole },
      print: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [group, command, ...rest] = positionals;
  if (values.help || !group) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const config = loadConfig();
  const key = `${group} ${command ?? ''}`.trim();
  refuseWhileEmbeddedDatabaseIsHeld(config, key, rest);
  switch (key) {
    case 'tenants create': {
      const name = rest.join(' ');
      return withContainer(config, async (c) => {
        const { tenant, apiKey } = await c.tenants.create(CLI_ACTOR, name);
        print({
          tenant: { id: tenant.id, name: tenant.name, created_at: tenant.createdAt },
          api_key: apiKey.key,
          api_key_id: apiKey.id,
        });
        process.stderr.write('Store the API key now: it is shown only once.\n');
        return 0;
      });
    }
    case 'tenants list':
      return withContainer(
        config,
        async (c) => {
          print({
            tenants: (await c.tenants.list()).map((t) => ({
              id: t.id,
              name: t.name,
              created_at: t.createdAt,
            })),
          });
          return 0;
        },
        { writes: false },
      );
    case 'api-keys create':
      return withContainer(config, async (c) => {
        const issued = await c.tenants.issueApiKey({ tenantId: rest[0] ?? '', actor: CLI_ACTOR });
        print({ api_key: issued.key, api_key_id: issued.id });
        return 0;
      });
    case 'api-keys revoke':
      return withContainer(config, async (c) => {
        await c.tenants.revokeApiKey({ tenantId: rest[0] ?? '', actor: CLI_ACTOR }, rest[1] ?? '');
        print({ revoked: rest[1] });
        return 0;
      });
    case 'keys rotate':
      if (config.kms.provider === 'local') {
        const ring = addKeyVersion(config.kms.keyFile);
        process.stderr.write(`added local key version ${ring.current}\n`);
      }
      return withContainer(config, async (c) => {
        const report = await c.keyRotation.rewrapAll({ all: values.all });
        await c.recordSystemEvent(
          'key.rotated',
          {
            current_key_id: report.currentKeyId,
            rewrapped: report.rewrapped,
            resealed: report.resealed,
            failed: report.failed.length,
            all: values.all,
          },
          CLI_ACTOR,
        );
        print(report);
        return report.failed.length > 0 ? 1 : 0;
      });
    case 'keys retire':
      return withContainer(config, async (c) => {
        const outcome = await retireKey(c, rest[0] ?? '', CLI_ACTOR);
        if ('refused' in outcome) {
          process.stderr.write(`${outcome.refused}\n`);
          return 1;
        }
        if (!outcome.replicasTold) {
          process.stderr.write(
            'could not tell the running replicas over Redis: restart them so none keeps the retired key in memory\n',
          );
        }
        print({
          retired: outcome.retired,
          ...(config.kms.provider === 'aws'
            ? {
                next_step:
                  'no data key uses this KMS key; you can now disable or schedule deletion of it in AWS KMS',
              }
            : {}),
        });
        return 0;
      });
    case 'keys status':
      return withContainer(
        config,
        async (c) => {
          await keysStatus(c);
          return 0;
        },
        { writes: false },
      );
    case 'audit verify': {
      // Reads only: no container, no migration, no maintenance pass, nothing written (not a key
      // file, not an embedded database in an empty DATA_DIR), on the database's clock.
      const signer = createAuditSigner(config, { create: false });
      const db = await openDatabase(config, { mustExist: true });
      try {
        const clock = createDatabaseClock(db.kysely as unknown as Kysely<never>);
        await clock.sync();
        const options = {
          now: clock.now(),
          ...(signer
            ? {
                signer,
                // Checkpoints are signed every interval: a tail older than two of them lost one.
                maxUnsealedMs: 2 * config.auditCheckpointIntervalMs + 60_000,
              }
            : {}),
        };
        const reports = values.tenant
          ? [await verifyChain(db.kysely, values.tenant, options)]
          : await verifyAllChains(db.kysely, options);
        print({
          ok: reports.every((r) => r.ok),
          ...(signer
            ? {}
            : { checkpoints: 'not checked: set AWS_KMS_SIGNING_KEY_ID to the key that signs them' }),
          tenants: reports,
        });
        return reports.every((r) => r.ok) ? 0 : 1;
      } catch (error) {
        if (isUndefinedTable(error)) {
          process.stderr.write(
            'warden: this database has no audit trail yet (run `warden db migrate` first)\n',
          );
          return 1;
        }
        throw error;
      } finally {
        await db.close();
      }
    }
    case 'audit maintain':
      return withContainer(config, async (c) => {
        const report = await c.auditMaintenance.partitions();
        const closed = await c.auditMaintenance.sweepUnknownOutcomes();
        const signed = (await c.auditCheckpoints?.run('manual'))?.signed ?? 0;
        print({
          ...report,
          unknown_outcomes_closed: closed,
          checkpoints_signed: signed,
          partitions: await listPartitions(c.db.kysely),
        });
        return 0;
      });
    case 'audit signing-key': {
      const signer = createAuditSigner(config, { create: false });
      if (!signer) {
        process.stderr.write('no audit signing key: set AWS_KMS_SIGNING_KEY_ID\n');
        return 1;
      }
      const key = await signer.publicKey();
      print({ key_id: key.keyId, algorithm: key.algorithm, public_key_pem: key.publicKeyPem });
      return 0;
    }
    case 'db roles': {
      if (config.database.kind !== 'postgres') {
        process.stderr.write(
          'the embedded database has a single user; database roles need PostgreSQL (DATABASE_URL)\n',
        );
        return 2;
      }
      const roles = { appRole: values['app-role'], maintenanceRole: values['maintenance-role'] };
      const db = await createDb({ kind: 'postgres', url: config.database.url, preparedStatements: false });
      try {
        if (values.print) {
          process.stdout.write(`${(await databaseRoleScript(db.kysely, roles)).join(';\n\n')};\n`);
          return 0;
        }
        await applyDatabaseRoles(db.kysely, roles);
        print({
          app_role: roles.appRole,
          maintenance_role: roles.maintenanceRole,
          next_step: `set a password (ALTER ROLE ${roles.appRole} PASSWORD …), run the service as ${roles.appRole} with MIGRATE_ON_START=false, and run \`warden db migrate\` then \`warden db roles\` as this role at each upgrade`,
        });
        return 0;
      } finally {
        await db.close();
      }
    }
    case 'db migrate': {
      // The database alone: nothing else is wired or started, so an empty database is fine.
      const db = await openDatabase(config, { mustExist: false });
      try {
        print(await migrateToLatest(db.kysely, MIGRATIONS_FOLDER));
        return 0;
      } finally {
        await db.close();
      }
    }
    default:
      process.stderr.write(`unknown command: ${key}\n\n${USAGE}\n`);
      return 2;
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError || isWardenError(error))
      process.stderr.write(`warden: ${error.message}\n`);
    else process.stderr.write(`warden: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
