import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildApp } from './app.ts';
import { loadConfig } from './config.ts';
import { createContainer } from './container.ts';
import { asLibLogger, createLogger } from './logger.ts';

/**
 * Warden's own OpenAPI document, exactly what `GET /openapi.json` serves, built from the
 * real wiring (config → container → app) so the SDK's types can never describe routes
 * the service does not register. No start-up task runs, so nothing is connected: the
 * database URL points nowhere and is never used, the budget is in-process, and the
 * environment is deliberately not read, so a developer's DATABASE_URL or REDIS_URL is
 * never touched.
 */
export async function wardenOpenApiDocument(): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'warden-openapi-'));
  try {
    const config = loadConfig({
      DATA_DIR: dataDir,
      DATABASE_URL: 'postgres://127.0.0.1:9/unused',
      // A source that refuses at once (the discard port): the document must not depend on the
      // Cloudflare spec, and Code Mode is not started anyway.
      CLOUDFLARE_SPEC_URL: 'http://127.0.0.1:9/no-cloudflare-spec.json',
      CLOUDFLARE_API_BASE: 'http://127.0.0.1:9/client/v4',
      // Configured like a deployment with the admin API on; a random value, never printed.
      WARDEN_ADMIN_TOKEN: randomBytes(32).toString('hex'),
      LOG_LEVEL: 'silent',
      SANDBOX_POOL_SIZE: '1',
    });
    const logger = createLogger({ level: config.logLevel });
    const container = await createContainer(config, asLibLogger(logger));
    try {
      const app = await buildApp(container, { loggerInstance: logger });
      try {
        await app.ready();
        // A JSON round trip drops `undefined` members so the result equals the served bytes.
        return JSON.parse(JSON.stringify(app.swagger())) as Record<string, unknown>;
      } finally {
        await app.close();
      }
    } finally {
      await container.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const document = await wardenOpenApiDocument();
  process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
}
