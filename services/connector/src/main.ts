import { setTimeout as delay } from 'node:timers/promises';
import { asLibLogger, createLogger } from './logger.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createContainer } from './container.ts';
import { startContainer } from './startup.ts';
import { buildApp } from './app.ts';

const SHUTDOWN_GRACE_MS = 25_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`warden: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel });
  const container = await createContainer(config, asLibLogger(logger));
  await startContainer(container);
  // While draining, `/readyz` answers 503 so a load balancer stops routing here, and requests
  // are still served until the listener closes.
  let draining = false;
  const drain = {
    name: 'shutdown',
    check: async () => {
      if (draining) throw new Error('shutting down');
    },
  };
  const app = await buildApp(
    { ...container, readiness: [...container.readiness, drain] },
    { loggerInstance: logger },
  );

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down: draining in-flight requests');
    const force = setTimeout(() => {
      logger.error({}, 'graceful shutdown timed out; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    try {
      if (config.shutdownDrainMs > 0) {
        draining = true;
        await delay(config.shutdownDrainMs);
      }
      await app.close();
      // What this replica wrote last is signed now rather than at the next interval.
      await container.auditCheckpoints
        ?.run('shutdown')
        .catch((err: unknown) => logger.warn({ err }, 'could not sign the audit checkpoints at shutdown'));
      await container.close();
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  await app.listen({ host: config.host, port: config.port });
  logger.info(
    {
      url: config.publicUrl,
      database: config.database.kind,
      kms: config.kms.provider,
      redis: config.redisUrl ? 'redis' : 'in-process',
      admin_api: config.adminToken ? 'enabled' : 'disabled (set WARDEN_ADMIN_TOKEN)',
    },
    'warden is listening',
  );
}

main().catch((error: unknown) => {
  process.stderr.write(
    `warden: failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  if (error instanceof Error && error.cause instanceof Error)
    process.stderr.write(`  cause: ${error.cause.message}\n`);
  process.exit(1);
});
