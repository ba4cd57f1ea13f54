import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listCheckpoints, verifyChain } from '@warden/audit';
import { createLocalSigner, loadOrCreateKeyRing } from '@warden/kms';
import { createTestDatabase, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare, TestDatabase } from '@warden/testing';
import { startConnectorProcess } from './test-support/connector-process.ts';
import type { ConnectorProcess } from './test-support/connector-process.ts';
import { startHaproxy } from './test-support/haproxy.ts';
import type { Haproxy } from './test-support/haproxy.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { compareUpstreamWithTrail } from './test-support/upstream-trail.ts';
import { wardenCli } from './test-support/warden-cli.ts';

const PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read', '#zone:read', '#dns_records:edit'];
const WORKERS = 6;

interface Call {
  readonly start: number;
  readonly end: number;
  /** HTTP status through HAProxy, or null when the connection itself failed. */
  readonly status: number | null;
  readonly error: string | null;
  readonly servedBy: string | null;
}

/**
 * Issue 12's failure test: three connector processes behind HAProxy on loopback, sharing
 * PostgreSQL and Redis, under steady execute load. A replica SIGKILLed: calls in flight on it
 * fail with a retriable error, the others carry on, the health check takes the dead one out,
 * and every upstream request that happened is in the trail. Then a replica SIGTERMed: it drains
 * (its `/readyz` fails first, so HAProxy stops sending to it) and nothing in flight is lost.
 */
describe('three replicas behind HAProxy: a crash and a graceful stop under load', () => {
  let db: TestDatabase;
  let cf: FakeCloudflare;
  let haproxy: Haproxy;
  let keyFile: string;
  const replicas: ConnectorProcess[] = [];
  const tempDirs: string[] = [];
  const adminToken = randomBytes(32).toString('hex');
  const redisPrefix = `warden-multi-${randomBytes(4).toString('hex')}`;
  let env: Record<string, string>;

  beforeAll(async () => {
    db = await createTestDatabase();
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, budget: null });
    const keyDir = mkdtempSync(path.join(tmpdir(), 'warden-multi-keys-'));
    tempDirs.push(keyDir);
    // Replicas share the key file: the wrapping key, and the key that signs audit checkpoints.
    keyFile = path.join(keyDir, 'warden-keys.json');
    loadOrCreateKeyRing(keyFile);
    env = {
      DATABASE_URL: db.url,
      REDIS_URL: process.env.REDIS_URL ?? '',
      REDIS_KEY_PREFIX: redisPrefix,
      WARDEN_ADMIN_TOKEN: adminToken,
      LOCAL_KEY_FILE: keyFile,
      CLOUDFLARE_API_BASE: cf.url,
      CLOUDFLARE_SPEC_PATH: SPEC_PATH,
      SANDBOX_POOL_SIZE: '1',
      SANDBOX_TIMEOUT_MS: '30000',
      WARDEN_REPLICAS: '3',
      SHUTDOWN_DRAIN_SECONDS: '3',
      LOG_LEVEL: 'warn',
    };
    const start = (i: number) => {
      const dataDir = mkdtempSync(path.join(tmpdir(), `warden-multi-${i}-`));
      tempDirs.push(dataDir);
      return startConnectorProcess(`r${i}`, { ...env, DATA_DIR: dataDir });
    };
    // The first prepares the database alone, as a deployment's first instance would.
    replicas.push(await start(0));
    replicas.push(...(await Promise.all([start(1), start(2)])));
    haproxy = await startHaproxy(
      replicas.map((r, i) => ({ name: `r${i}`, port: Number(new URL(r.url).port) })),
    );
    await waitFor(
      async () => Object.values(await haproxy.serverStates()).every((s) => s === 'UP'),
      'HAProxy to see every replica UP',
    );
  }, 300_000);

  afterAll(async () => {
    await haproxy?.close();
    for (const replica of replicas) {
      await replica.kill('SIGTERM').catch(() => undefined);
    }
    await cf?.close();
    await db?.drop();
    // The job schedules of this deployment, under its own prefix, would stay in the shared Redis.
    if (process.env.REDIS_URL) {
      const redis = new Redis(process.env.REDIS_URL);
      try {
        for await (const keys of redis.scanStream({ match: `${redisPrefix}*`, count: 500 })) {
          if ((keys as string[]).length > 0) await redis.del(...(keys as string[]));
        }
      } finally {
        redis.disconnect();
      }
    }
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('SIGKILL: in-flight calls fail retriably, the others continue, HAProxy takes it out, the trail holds every request; SIGTERM: nothing in flight is lost', async () => {
    const tenant = await post(`${haproxy.url}/admin/v1/tenants`, adminToken, { name: 'Multi-replica' });
    const apiKey = tenant.api_key as string;
    const tenantId = (tenant.tenant as { id: string }).id;
    const user = cf.state.createUser({ email: 'multi@example.com' });
    const account = cf.state.createAccount({ name: 'Multi Co', members: [user.id] });
    const zoneId = cf.state.createZone({ accountId: account.id, name: 'multi.example' }).id;
    const token = cf.state.createUserToken({ userId: user.id, permissions: PERMISSIONS });
    await post(`${haproxy.url}/api/v1/connected_accounts`, apiKey, {
      identifier: 'load',
      authorization: { type: 'api_token', api_token: token.value },
    });
    const records = Array.from(
      { length: 1200 },
      (_, i) =>
        cf.state.createDnsRecord({ zoneId, type: 'A', name: `m${i}.multi.example`, content: '192.0.2.1' }).id,
    );
    cf.clearRequests();
    cf.faults.setLatencyMs(150);

    // Steady load: each call DELETEs two records of its own, so every request has its own path.
    const calls: Call[] = [];
    let next = 0;
    let stop = false;
    const worker = async () => {
      while (!stop && next + 2 <= records.length) {
        const mine = records.slice(next, next + 2).map((id) => `/zones/${zoneId}/dns_records/${id}`);
        next += 2;
        const code = `async () => { for (const p of ${JSON.stringify(mine)}) await cloudflare.request({ method: 'DELETE', path: p }); return 'ok'; }`;
        const start = Date.now();
        try {
          const res = await fetch(`${haproxy.url}/api/v1/execute_tool`, {
            method: 'POST',
            headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ tool_name: 'cloudflare_execute', identifier: 'load', params: { code } }),
            signal: AbortSignal.timeout(60_000),
          });
          const body = await res.text();
          calls.push({
            start,
            end: Date.now(),
            status: res.status,
            error: res.status === 200 && JSON.parse(body).data === 'ok' ? null : body.slice(0, 300),
            servedBy: res.headers.get('x-served-by'),
          });
        } catch (error) {
          calls.push({
            start,
            end: Date.now(),
            status: null,
            error: error instanceof Error ? `${error.message} ${String(error.cause ?? '')}` : String(error),
            servedBy: null,
          });
        }
      }
    };
    const load = Promise.all(Array.from({ length: WORKERS }, worker));
    const served = (name: string, after = 0) =>
      calls.filter((c) => c.servedBy === name && c.status === 200 && c.error === null && c.start >= after)
        .length;
    await waitFor(
      () => ['r0', 'r1', 'r2'].every((name) => served(name) >= 2),
      'every replica to serve calls',
    );

    // A crash.
    const killedAt = Date.now();
    expect(await replicas[0]?.kill('SIGKILL')).toMatchObject({ signal: 'SIGKILL' });
    await waitFor(
      async () => (await haproxy.serverStates()).r0?.startsWith('DOWN') === true,
      'HAProxy to take r0 out',
    );
    const downAt = Date.now();
    await waitFor(() => served('r1', downAt) >= 3 && served('r2', downAt) >= 3, 'the others to carry on');

    // A graceful stop.
    const termAt = Date.now();
    const stopped = replicas[1]?.stop();
    await waitFor(
      async () => (await haproxy.serverStates()).r1?.startsWith('DOWN') === true,
      'HAProxy to take r1 out',
    );
    await stopped;
    const stoppedAt = Date.now();
    await waitFor(() => served('r2', stoppedAt) >= 3, 'r2 to carry the load alone');
    stop = true;
    await load;
    cf.faults.setLatencyMs(0);

    const failed = calls.filter((c) => c.error !== null);
    // r0 was carrying calls when it died (each replica has about two in flight at any time).
    expect(failed.length).toBeGreaterThan(0);
    // Only the crash failed calls: those in flight on r0, or sent to it before HAProxy saw it die.
    for (const call of failed) {
      expect(call.start, JSON.stringify(call)).toBeLessThan(downAt);
      expect(call.end, JSON.stringify(call)).toBeGreaterThanOrEqual(killedAt);
      // Retriable: HAProxy's 502/503/504, or the connection dropped.
      expect(call.status === null || [502, 503, 504].includes(call.status), JSON.stringify(call)).toBe(true);
    }
    // Calls in flight on r1 when it was told to stop completed; after its stop nothing failed.
    expect(
      calls.filter(
        (c) => c.servedBy === 'r1' && c.start < termAt + 3_000 && c.end > termAt && c.error === null,
      ).length,
    ).toBeGreaterThan(0);
    expect(calls.filter((c) => c.end > termAt && c.error !== null)).toEqual([]);
    expect(calls.filter((c) => c.start > downAt && c.servedBy === 'r0')).toEqual([]);

    // The trail, against what Cloudflare received: every DELETE has its intent and an outcome,
    // but those r0 was carrying when it died, whose answers were never recorded.
    const requests = cf.requests().filter((r) => r.method === 'DELETE');
    expect(requests.length).toBeGreaterThan(20);
    const before = await compareUpstreamWithTrail(db.db.kysely, tenantId, requests);
    expect(before).toMatchObject({ unrecorded: [], mismatched: [] });
    const cli = wardenCli({ ...env, DATA_DIR: tempDirs[0] ?? '', AUDIT_OUTCOME_GRACE_SECONDS: '1' });
    const verified = await cli.verify(tenantId);
    expect(verified).toMatchObject({ code: 0, ok: true });
    expect(verified.report.intents_without_outcome.map((i) => i.id)).toEqual(
      expect.arrayContaining(before.withoutOutcome.map((w) => w.intentId)),
    );
    await delay(1_200);
    await cli.maintain();
    const after = await compareUpstreamWithTrail(db.db.kysely, tenantId, requests);
    expect(after).toMatchObject({ unrecorded: [], mismatched: [], withoutOutcome: [] });
    expect(after.recorded + after.unknown).toBe(requests.length);
    expect(after.unknown).toBeLessThanOrEqual(before.withoutOutcome.length);
    // Nothing sent from the graceful stop on is `unknown`: every answer was recorded.
    const sinceTerm = await compareUpstreamWithTrail(
      db.db.kysely,
      tenantId,
      requests.filter((r) => r.at.getTime() >= termAt),
    );
    expect(sinceTerm).toMatchObject({ unknown: 0, unrecorded: [], mismatched: [], withoutOutcome: [] });

    // r1 signed the chain heads on its way out, and the chain verifies against its signatures.
    const checkpoints = await listCheckpoints(db.db.kysely, tenantId);
    expect(checkpoints.some((c) => c.reason === 'shutdown')).toBe(true);
    const signer = createLocalSigner({ keyFile, create: false });
    expect(await verifyChain(db.db.kysely, tenantId, { signer })).toMatchObject({ ok: true });
  }, 600_000);
});

async function post(url: string, bearer: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status !== 201) throw new Error(`${url}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 120_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}
