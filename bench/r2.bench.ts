/**
 * `npm run bench -- r2 [--json] [--iterations 100] [--warmup 10]`:
 * the latency Warden adds to `r2.get` of a 1 KB and a 1 MB object. Each sample is one
 * `POST /api/v1/execute_tool` running `r2.get({bucket, key, as: 'base64'})` end to end over
 * real HTTP (sandbox, policy, budget, audit, signing), against the same object fetched with a
 * direct signed GET to the fake R2 (the same aws4fetch signer, in this process) in the same run.
 * Sequential (concurrency 1), alternating the two so machine noise hits both alike.
 *
 * Set-up as `execute`: the connector as a child process with PostgreSQL and Redis servers of the
 * run's own, the fake Cloudflare and fake R2 in this process.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Redis } from 'ioredis';
import { createR2Client, r2CredentialsFromApiToken } from '@warden/cloudflare';
import type { CloudflareCredential } from '@warden/cloudflare';
import {
  FAKE_CF_ALL_PERMISSIONS,
  freePort,
  specFixturePath,
  startFakeCloudflare,
  startFakeR2,
} from '@warden/testing';
import type { FakeCloudflare, FakeR2 } from '@warden/testing';
import { createHttpClient, machineInfo, numberArg, percentile, round } from './bench-utils.ts';
import type { HttpClient } from './bench-utils.ts';
import { benchTenant, startConnector, stopConnector } from './execute.bench.ts';
import type { Connector } from './execute.bench.ts';
import { startPostgres, startRedis, waitForRedis } from './private-servers.ts';
import type { PrivatePostgres, PrivateRedis } from './private-servers.ts';

const DATABASE = 'warden';
const SIZES = [
  ['1kb', 1024],
  ['1mb', 1024 * 1024],
] as const;

function stats(prefix: string, samples: readonly number[]): Record<string, number> {
  return {
    [`${prefix}_p50_ms`]: round(percentile(samples, 50)),
    [`${prefix}_p95_ms`]: round(percentile(samples, 95)),
    [`${prefix}_mean_ms`]: round(samples.reduce((a, b) => a + b, 0) / samples.length),
  };
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const iterations = numberArg(args, 'iterations', 100);
  const warmup = numberArg(args, 'warmup', 10);
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-r2-'));
  const adminToken = randomBytes(32).toString('hex');
  let cf: FakeCloudflare | null = null;
  let r2: FakeR2 | null = null;
  let postgres: PrivatePostgres | null = null;
  let redisServer: PrivateRedis | null = null;
  let admin: pg.Client | null = null;
  let redis: Redis | null = null;
  let connector: Connector | null = null;
  const clients: HttpClient[] = [];
  const started = machineInfo('start');
  try {
    cf = await startFakeCloudflare({ specPath: specFixturePath(), budget: null });
    r2 = await startFakeR2({ state: cf.state });
    const user = cf.state.createUser({ email: `bench-${randomBytes(6).toString('hex')}@example.com` });
    const account = cf.state.createAccount({ name: 'Bench', members: [user.id] });
    const token = cf.state.createUserToken({ userId: user.id, permissions: FAKE_CF_ALL_PERMISSIONS });
    r2.createBucket(account.id, 'bench');
    const objects = new Map<string, Buffer>();
    for (const [name, size] of SIZES) {
      const body = randomBytes(size);
      objects.set(name, body);
      r2.putObject(account.id, 'bench', `${name}.bin`, body);
    }

    postgres = startPostgres(await freePort(), DATABASE);
    redisServer = startRedis(await freePort());
    admin = new pg.Client({ connectionString: postgres.adminUrl });
    await admin.connect();
    await admin.query(`create database ${DATABASE}`);
    redis = await waitForRedis(redisServer.url);
    connector = await startConnector(
      dir,
      {
        DATABASE_URL: postgres.url,
        REDIS_URL: redisServer.url,
        DATA_DIR: path.join(dir, 'data'),
        WARDEN_ADMIN_TOKEN: adminToken,
        CLOUDFLARE_API_BASE: cf.url,
        CLOUDFLARE_SPEC_PATH: specFixturePath(),
        CLOUDFLARE_R2_ENDPOINT: r2.urlTemplate,
        CLOUDFLARE_R2_BUDGET: '100000/1',
        LOG_LEVEL: 'info',
      },
      ['--no-node-snapshot'],
    );
    const client = createHttpClient(connector.origin, { maxSockets: 1 });
    clients.push(client);
    const tenantAuth = await benchTenant(client, adminToken, token.value);

    const direct = createR2Client({ endpoint: r2.urlTemplate, maxResponseBytes: 16 * 1024 * 1024 });
    const credential: CloudflareCredential = { type: 'api_token', apiToken: token.value };
    const keys = r2CredentialsFromApiToken(token.id, token.value);
    const figures: Record<string, unknown> = { iterations };
    for (const [name] of SIZES) {
      // The whole body crosses into the isolate; the result is cut down to fit the result budget.
      const b64 = objects.get(name)!.toString('base64');
      const expected = JSON.stringify([b64.length, b64.slice(0, 64), b64.slice(-64)]);
      const body = {
        tool_name: 'cloudflare_execute',
        identifier: 'bench-agent',
        params: {
          code: `async () => { const b = (await r2.get({ bucket: 'bench', key: '${name}.bin', as: 'base64' })).body; return [b.length, b.slice(0, 64), b.slice(-64)]; }`,
        },
      };
      const viaWarden = async (): Promise<number> => {
        const start = performance.now();
        const res = await client.request({
          method: 'POST',
          path: '/api/v1/execute_tool',
          headers: { ...tenantAuth, 'content-type': 'application/json' },
          body,
        });
        const ms = performance.now() - start;
        const parsed = JSON.parse(res.body.toString('utf8')) as { data?: unknown; error?: unknown };
        if (res.status !== 200 || JSON.stringify(parsed.data) !== expected) {
          throw new Error(`execute_tool: ${res.status} ${res.body.toString('utf8').slice(0, 300)}`);
        }
        return ms;
      };
      const directGet = async (): Promise<number> => {
        const start = performance.now();
        const res = await direct.send(keys, credential, {
          method: 'GET',
          accountId: account.id,
          jurisdiction: 'default',
          bucket: 'bench',
          key: `${name}.bin`,
        });
        const ms = performance.now() - start;
        if (res.status !== 200 || res.body.length !== objects.get(name)!.length) {
          throw new Error(`direct GET: ${res.status}`);
        }
        return ms;
      };
      for (let i = 0; i < warmup; i++) {
        await viaWarden();
        await directGet();
      }
      const warden: number[] = [];
      const straight: number[] = [];
      for (let i = 0; i < iterations; i++) {
        warden.push(await viaWarden());
        straight.push(await directGet());
      }
      Object.assign(
        figures,
        stats(`r2_get_${name}_warden`, warden),
        stats(`r2_get_${name}_direct`, straight),
        {
          [`r2_get_${name}_added_p50_ms`]: round(percentile(warden, 50) - percentile(straight, 50)),
          [`r2_get_${name}_added_p95_ms`]: round(percentile(warden, 95) - percentile(straight, 95)),
        },
      );
    }
    const verified = r2.requests().filter((r) => r.error === null).length;
    return { ...figures, fake_r2_requests_verified: verified, ...started, ...machineInfo('end') };
  } finally {
    for (const c of clients) c.close();
    if (connector) await stopConnector(connector).catch(() => {});
    await r2?.close().catch(() => {});
    await cf?.close().catch(() => {});
    redis?.disconnect();
    await admin?.end().catch(() => {});
    postgres?.stop();
    redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
