import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createTestDatabase } from '@warden/testing';
import type { TestDatabase } from '@warden/testing';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import { buildApp } from '../app.ts';
import { loadConfig } from '../config.ts';
import { createContainer } from '../container.ts';
import { startContainer } from '../startup.ts';
import type { Container } from '../container.ts';
import { asLibLogger, createLogger } from '../logger.ts';
import { freePort } from './free-port.ts';
import { SPEC_PATH } from './paths.ts';

export interface TestApp {
  readonly app: FastifyInstance;
  readonly container: Container;
  readonly db: TestDatabase;
  readonly adminToken: string;
  /** The service's DATA_DIR (its local KMS and audit signing keys), for CLI runs beside it. */
  readonly dataDir: string;
  /** Every log line the service wrote, at trace level. */
  readonly logs: string[];
  /** Secrets this test handed to the service; none may ever show up in a log line. */
  readonly secrets: Set<string>;
  createTenant(name?: string): Promise<{ tenantId: string; apiKey: string }>;
  /** Vaults a Cloudflare API token for `identifier` through the API (expects 201); returns the account id. */
  connect(apiKey: string, identifier: string, apiToken: string): Promise<string>;
  /** `POST /api/v1/execute_tool` with `cloudflare_execute` as `identifier`, in process. */
  execute(apiKey: string, identifier: string, code: string): Promise<LightMyRequestResponse>;
  /** The tenant's audit export in `format` for the hour around now (expects 200); returns the body. */
  auditExport(apiKey: string, format: string): Promise<string>;
  /**
   * Every text that can be read after the call answered `res` for the tenant of `apiKey`: the
   * tool result, the audit events API, its NDJSON, OCSF and CEF exports, and the log lines.
   */
  outputsOf(apiKey: string, res: LightMyRequestResponse): Promise<Record<string, string>>;
  close(): Promise<void>;
}

/** The local KMS key file of a test app, for another replica or a CLI run beside it ('' under AWS KMS). */
export function localKeyFileOf(app: TestApp): string {
  const kms = app.container.config.kms;
  return kms.provider === 'local' ? kms.keyFile : '';
}

/**
 * The real service wiring (config → container → app) on a fresh PostgreSQL database,
 * with the logger writing into memory so tests can prove credentials never reach it.
 */
export async function startTestApp(
  env: Record<string, string> = {},
  options: { viaProxyPort?: number; sharedDatabase?: TestDatabase; replicaOf?: TestApp } = {},
): Promise<TestApp> {
  // A second replica shares the first one's database (and drops nothing on close) and, as
  // `replicaOf`, its local KMS key file too (unless `env` names another; under AWS KMS the
  // replicas share the KMS key and there is no file). `sharedDatabase` is for a database that
  // no test app made.
  const shared = options.replicaOf?.db ?? options.sharedDatabase;
  const db = shared ?? (await createTestDatabase({ migrate: false }));
  const keyFile = options.replicaOf ? localKeyFileOf(options.replicaOf) : '';
  if (keyFile) env = { LOCAL_KEY_FILE: keyFile, ...env };
  const databaseUrl = new URL(db.url);
  if (options.viaProxyPort) {
    databaseUrl.hostname = '127.0.0.1';
    databaseUrl.port = String(options.viaProxyPort);
  }
  const dataDir = mkdtempSync(path.join(tmpdir(), 'warden-app-'));
  const adminToken = randomBytes(32).toString('hex');
  const config = loadConfig({
    DATABASE_URL: databaseUrl.toString(),
    DATA_DIR: dataDir,
    WARDEN_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'trace',
    CLOUDFLARE_API_BASE: 'http://127.0.0.1:9/client/v4',
    CLOUDFLARE_SPEC_PATH: SPEC_PATH,
    SANDBOX_POOL_SIZE: '1',
    REDIS_URL: process.env.REDIS_URL ?? '',
    ...env,
  });
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  const logger = createLogger({ level: config.logLevel, destination });
  const container = await createContainer(config, asLibLogger(logger));
  await startContainer(container);
  const app = await buildApp(container, { loggerInstance: logger });
  await app.ready();
  const secrets = new Set<string>([adminToken]);

  const testApp: TestApp = {
    app,
    container,
    db,
    adminToken,
    dataDir,
    logs,
    secrets,
    async createTenant(name = 'Test tenant') {
      const res = await app.inject({
        method: 'POST',
        url: '/admin/v1/tenants',
        headers: { authorization: `Bearer ${adminToken}` },
        payload: { name },
      });
      expect(res.statusCode).toBe(201);
      const body = res.json() as { tenant: { id: string }; api_key: string };
      secrets.add(body.api_key);
      return { tenantId: body.tenant.id, apiKey: body.api_key };
    },
    async connect(apiKey, identifier, apiToken) {
      secrets.add(apiToken);
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/connected_accounts',
        headers: { authorization: `Bearer ${apiKey}` },
        payload: { identifier, authorization: { type: 'api_token', api_token: apiToken } },
      });
      expect(res.statusCode).toBe(201);
      return (res.json() as { connected_account: { id: string } }).connected_account.id;
    },
    execute(apiKey, identifier, code) {
      return app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: { authorization: `Bearer ${apiKey}` },
        payload: { tool_name: 'cloudflare_execute', identifier, params: { code } },
      });
    },
    async auditExport(apiKey, format) {
      const from = new Date(Date.now() - 3600_000).toISOString();
      const to = new Date(Date.now() + 3600_000).toISOString();
      const res = await app.inject({
        method: 'GET',
        url: `/api/v1/audit/export?format=${format}&from=${from}&to=${to}`,
        headers: { authorization: `Bearer ${apiKey}` },
      });
      expect(res.statusCode, res.body).toBe(200);
      return res.body;
    },
    async outputsOf(apiKey, res) {
      const events = await app.inject({
        method: 'GET',
        url: '/api/v1/audit/events',
        headers: { authorization: `Bearer ${apiKey}` },
      });
      const [ndjson, ocsf, cef] = await Promise.all(
        ['ndjson', 'ocsf', 'cef'].map((format) => testApp.auditExport(apiKey, format)),
      );
      return {
        result: JSON.stringify(res.json()),
        audit: JSON.stringify(events.json()),
        ndjson: ndjson as string,
        ocsf: ocsf as string,
        cef: cef as string,
        logs: logs.join('\n'),
      };
    },
    async close() {
      await app.close();
      await container.close();
      if (!shared) await db.drop();
      expect(logs.length).toBeGreaterThan(0);
      // Access logs keep what operators need (and the scrubber must not strip it).
      expect(logs.some((line) => /"req":\{"method":"[A-Z]+","path":"\//.test(line))).toBe(true);
      expect(logs.some((line) => /"res":\{"statusCode":\d{3}\}/.test(line))).toBe(true);
      const leaked = [...secrets].filter((secret) => logs.some((line) => line.includes(secret)));
      expect(leaked, 'a credential reached the service logs').toEqual([]);
    },
  };
  return testApp;
}

/**
 * `startTestApp` listening on a free loopback port, with `PUBLIC_URL` set to it: for tests that
 * speak real HTTP to the service (MCP clients, fetch, the SDKs). `base` is its origin.
 */
export async function startListeningTestApp(
  env: Record<string, string> = {},
): Promise<{ t: TestApp; base: string }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const t = await startTestApp({ ...env, PUBLIC_URL: base });
  await t.app.listen({ host: '127.0.0.1', port });
  return { t, base };
}

/**
 * Two replicas of one deployment (B shares A's database and Redis), each listening on a free
 * loopback port of its own, with `PUBLIC_URL` set to A's origin: for tests of what crosses
 * replicas (the bus, SSE streams pinned to one replica).
 */
export async function startListeningReplicas(
  env: Record<string, string> = {},
): Promise<{ a: TestApp; b: TestApp; baseA: string; baseB: string }> {
  const [portA, portB] = [await freePort(), await freePort()];
  const baseA = `http://127.0.0.1:${portA}`;
  const baseB = `http://127.0.0.1:${portB}`;
  const a = await startTestApp({ ...env, PUBLIC_URL: baseA });
  await a.app.listen({ host: '127.0.0.1', port: portA });
  const b = await startTestApp({ ...env, PUBLIC_URL: baseA }, { replicaOf: a });
  await b.app.listen({ host: '127.0.0.1', port: portB });
  return { a, b, baseA, baseB };
}

/** A new tenant's admin signs in to the console with its API key (expects 201); the answer, with its cookie. */
export async function consoleKeySignIn(
  t: Pick<TestApp, 'app' | 'createTenant'>,
): Promise<LightMyRequestResponse> {
  const tenant = await t.createTenant('Acme');
  const res = await t.app.inject({
    method: 'POST',
    url: '/console/api/session',
    payload: { api_key: tenant.apiKey },
  });
  expect(res.statusCode).toBe(201);
  return res;
}
