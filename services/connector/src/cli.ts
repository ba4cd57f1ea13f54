import { parseArgs } from 'node:util';
import { migrateToLatest } from '@warden/db';
import { listPartitions, verifyAllChains, verifyChain } from '@warden/audit';
import { addKeyVersion, removeKeyVersion } from '@warden/kms';
import { isWardenError, noopLogger } from '@warden/core';
import { ConfigError, loadConfig } from './config.ts';
import type { Config } from './config.ts';
import { MIGRATIONS_FOLDER, createContainer } from './container.ts';
import { refuseWhileEmbeddedDatabaseIsHeld } from './embedded-lock.ts';
import type { Container } from './container.ts';

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
  audit verify [--tenant ID]      check every tenant's (or one tenant's) audit hash chain; exit 1 on a problem
  audit maintain                  create upcoming audit partitions and drop expired ones now

Configuration comes from the same environment variables as the service (see README).`;

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

async function withContainer<T>(config: Config, run: (c: Container) => Promise<T>): Promise<T> {
  const container = await createContainer(config, noopLogger);
  try {
    return await run(container);
  } finally {
    await container.close();
  }
}

async function keysStatus(c: Container): Promise<void> {
  const rows = await c.db.kysely
    .selectFrom('sealed_credentials')
    .select(['key_id', (eb) => eb.fn.countAll<string>().as('n')])
    .groupBy('key_id')
    .execute();
  print({
    provider: c.keys.provider,
    current_key_id: await c.keys.currentKeyId(),
    data_keys_by_key: Object.fromEntries(rows.map((r) => [r.key_id, Number(r.n)])),
  });
}

async function run(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      all: { type: 'boolean', default: false },
      tenant: { type: 'string' },
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
        const { tenant, apiKey } = await c.tenants.create(name);
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
      return withContainer(config, async (c) => {
        print({
          tenants: (await c.tenants.list()).map((t) => ({ id: t.id, name: t.name, created_at: t.createdAt })),
        });
        return 0;
      });
    case 'api-keys create':
      return withContainer(config, async (c) => {
        const issued = await c.tenants.issueApiKey(rest[0] ?? '');
        print({ api_key: issued.key, api_key_id: issued.id });
        return 0;
      });
    case 'api-keys revoke':
      return withContainer(config, async (c) => {
        await c.tenants.revokeApiKey(rest[0] ?? '', rest[1] ?? '');
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
        print(report);
        return report.failed.length > 0 ? 1 : 0;
      });
    case 'keys retire': {
      const target = rest[0] ?? '';
      return withContainer(config, async (c) => {
        const keyId = config.kms.provider === 'local' ? `local:v${target.replace(/^local:v/, '')}` : target;
        const remaining = await c.keyRotation.countWrappedUnder(keyId);
        if (remaining > 0) {
          process.stderr.write(
            `${remaining} data key(s) are still wrapped under ${keyId}; run \`warden keys rotate\` first\n`,
          );
          return 1;
        }
        if (config.kms.provider === 'local') {
          removeKeyVersion(config.kms.keyFile, Number(keyId.slice('local:v'.length)));
          print({ retired: keyId });
        } else {
          print({
            retired: keyId,
            next_step:
              'no data key uses this KMS key; you can now disable or schedule deletion of it in AWS KMS',
          });
        }
        return 0;
      });
    }
    case 'keys status':
      return withContainer(config, async (c) => {
        await keysStatus(c);
        return 0;
      });
    case 'audit verify':
      return withContainer({ ...config, migrateOnStart: false }, async (c) => {
        const reports = values.tenant
          ? [await verifyChain(c.db.kysely, values.tenant)]
          : await verifyAllChains(c.db.kysely);
        print({ ok: reports.every((r) => r.ok), tenants: reports });
        return reports.every((r) => r.ok) ? 0 : 1;
      });
    case 'audit maintain':
      return withContainer(config, async (c) => {
        await c.maintainAudit();
        print({ partitions: await listPartitions(c.db.kysely) });
        return 0;
      });
    case 'db migrate':
      return withContainer({ ...config, migrateOnStart: false }, async (c) => {
        print(await migrateToLatest(c.db.kysely, MIGRATIONS_FOLDER));
        return 0;
      });
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
