import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '@warden/audit';
import { createTestDatabase, startFakeCloudflare, startTcpProxy } from '@warden/testing';
import type { FakeCloudflare, TestDatabase } from '@warden/testing';
import { startConnectorProcess } from './test-support/connector-process.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import { compareUpstreamWithTrail } from './test-support/upstream-trail.ts';
import { wardenCli } from './test-support/warden-cli.ts';

const PERMISSIONS = [
  'com.cloudflare.api.user.read',
  '#organization:read',
  '#zone:read',
  '#dns_records:read',
  '#dns_records:edit',
];

/**
 * Issue 13's fault campaign, automated: PostgreSQL cut under load, and a replica killed in the
 * middle of an execution. Afterwards every request the fake Cloudflare received must be in the
 * trail, request by request: its intent, and its outcome or (after the sweep) `unknown`.
 * Every request in these tests has a path of its own (a DNS record id), so the fake's log and
 * the trail match exactly on method + path; the outcome's `cf-ray` matches the fake's answer.
 */
describe('audit under faults: nothing reaches Cloudflare unrecorded', () => {
  let cf: FakeCloudflare;
  let userId: string;
  let zoneId: string;
  let recordIds: string[];

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, budget: null });
    const user = cf.state.createUser({ email: 'faults@example.com' });
    userId = user.id;
    const account = cf.state.createAccount({ name: 'Faults Co', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'faults.example' }).id;
    recordIds = Array.from(
      { length: 600 },
      (_, i) =>
        cf.state.createDnsRecord({ zoneId, type: 'A', name: `r${i}.faults.example`, content: '192.0.2.1' })
          .id,
    );
  });
  afterAll(async () => {
    await cf?.close();
  });

  const dnsPath = (id: string) => `/zones/${zoneId}/dns_records/${id}`;

  it('PostgreSQL cut mid-load: every request Cloudflare got has its intent, and an outcome or unknown', async () => {
    const pgUrl = new URL(process.env.DATABASE_URL ?? '');
    const proxy = await startTcpProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
    const t = await startTestApp(
      { CLOUDFLARE_API_BASE: cf.url, SANDBOX_TIMEOUT_MS: '20000', AUDIT_OUTCOME_GRACE_SECONDS: '2' },
      { viaProxyPort: proxy.port },
    );
    try {
      const tenant = await t.createTenant('PostgreSQL cut');
      const token = cf.state.createUserToken({ userId, permissions: PERMISSIONS });
      await t.connect(tenant.apiKey, 'cut', token.value);
      cf.clearRequests();
      cf.faults.setLatencyMs(40);
      const ids = recordIds.slice(0, 400);
      let next = 0;
      let stop = false;
      const statuses: number[] = [];
      // 4 workers, executions of 4 GETs each, each GET on a path of its own.
      const worker = async () => {
        while (!stop && next + 4 <= ids.length) {
          const mine = ids.slice(next, next + 4);
          next += 4;
          const code = `async () => { for (const p of ${JSON.stringify(mine.map(dnsPath))}) await cloudflare.request({ method: 'GET', path: p }); return true; }`;
          const res = await t.app.inject({
            method: 'POST',
            url: '/api/v1/execute_tool',
            headers: { authorization: `Bearer ${tenant.apiKey}` },
            payload: { tool_name: 'cloudflare_execute', identifier: 'cut', params: { code } },
          });
          statuses.push(res.statusCode);
        }
      };
      const load = Promise.all(Array.from({ length: 4 }, worker));
      // Under way, then PostgreSQL goes away for a few seconds and comes back.
      await waitFor(() => cf.requests().length >= 40, 'load to reach Cloudflare');
      await proxy.stop();
      await delay(4_000);
      await proxy.start();
      await delay(3_000);
      stop = true;
      await load;
      cf.faults.setLatencyMs(0);

      // Executions failed during the cut (503) and succeeded on both sides of it.
      expect(statuses).toContain(503);
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(4);
      expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);

      const requests = cf.requests().filter((r) => r.path.startsWith(`/zones/${zoneId}/dns_records/`));
      const before = await compareUpstreamWithTrail(t.db.db.kysely, tenant.tenantId, requests);
      expect(before.unrecorded).toEqual([]);
      expect(before.mismatched).toEqual([]);
      // The executions in flight when the store went away sent requests whose answers were lost.
      expect(before.withoutOutcome.length).toBeGreaterThan(0);
      const report = await verifyChain(t.db.db.kysely, tenant.tenantId);
      expect(report.ok).toBe(true);
      expect(report.intents_without_outcome.map((i) => i.id)).toEqual(
        expect.arrayContaining(before.withoutOutcome.map((w) => w.intentId)),
      );

      // Past the grace period the sweeper closes them as unknown: the trail then accounts for all.
      await delay(2_500);
      expect(await t.container.auditMaintenance.sweepUnknownOutcomes()).toBeGreaterThanOrEqual(
        before.withoutOutcome.length,
      );
      const after = await compareUpstreamWithTrail(t.db.db.kysely, tenant.tenantId, requests);
      expect(after).toMatchObject({ unrecorded: [], mismatched: [], withoutOutcome: [] });
      expect(after.recorded + after.unknown).toBe(requests.length);
      expect(after.unknown).toBeGreaterThanOrEqual(before.withoutOutcome.length);
      const swept = await verifyChain(t.db.db.kysely, tenant.tenantId);
      expect(swept).toMatchObject({ ok: true, intents_without_outcome: [] });
    } finally {
      cf.faults.setLatencyMs(0);
      await proxy.start().catch(() => undefined);
      await t.close();
      await proxy.close();
    }
  }, 180_000);

  it("PostgreSQL down: a request whose intent cannot be committed is not sent and takes nothing from the user's budget", async () => {
    const pgUrl = new URL(process.env.DATABASE_URL ?? '');
    const proxy = await startTcpProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
    // A budget of 8 requests: the budget is asked while the intent is committed, so each
    // refused commit must give its place back, or the calls after the outage would be refused.
    const t = await startTestApp(
      { CLOUDFLARE_API_BASE: cf.url, CLOUDFLARE_BUDGET: '8/300' },
      { viaProxyPort: proxy.port },
    );
    try {
      const tenant = await t.createTenant('Budget while PostgreSQL is down');
      const user = cf.state.createUser({ email: `budget-${randomBytes(4).toString('hex')}@example.com` });
      const account = cf.state.createAccount({ name: 'Budget Co', members: [user.id] });
      const zone = cf.state.createZone({ accountId: account.id, name: 'budget-down.example' });
      const token = cf.state.createUserToken({ userId: user.id, permissions: PERMISSIONS });
      cf.clearRequests();
      await t.connect(tenant.apiKey, 'down', token.value);
      const execute = () =>
        t.app.inject({
          method: 'POST',
          url: '/api/v1/execute_tool',
          headers: { authorization: `Bearer ${tenant.apiKey}` },
          payload: {
            tool_name: 'cloudflare_execute',
            identifier: 'down',
            params: {
              code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zone.id}' })).result.id`,
            },
          },
        });
      const zoneGets = () => cf.requests().filter((r) => r.path === `/zones/${zone.id}`).length;
      // One call first, so the call's context is cached and the calls below reach the gateway.
      const succeeded = (body: { data?: unknown; error?: unknown }) => {
        expect(body.error).toBeUndefined();
        expect(body.data).toBe(zone.id);
      };
      succeeded((await execute()).json());
      // Connecting verified the token (3 requests, charged to the user) and the call sent 1.
      expect(cf.requests()).toHaveLength(4);

      await proxy.stop();
      for (let i = 0; i < 8; i++) {
        const res = await execute();
        expect(res.statusCode).toBe(503);
        expect(res.json().error.message).toMatch(/audit/);
      }
      expect(zoneGets()).toBe(1);
      await proxy.start();

      // The four places left are all there: none was kept by a request that was not sent.
      for (let i = 0; i < 4; i++) {
        succeeded((await execute()).json());
      }
      expect(zoneGets()).toBe(5);
      const over = await execute();
      expect(over.json().error).toMatchObject({ code: 'rate_limited' });
      expect(zoneGets()).toBe(5);
    } finally {
      await proxy.start().catch(() => undefined);
      await t.close();
      await proxy.close();
    }
  }, 120_000);

  it('a replica SIGKILLed mid-execution: its DELETEs are in the trail, the last one as unknown after the sweep', async () => {
    const db: TestDatabase = await createTestDatabase();
    const dataDir = mkdtempSync(path.join(tmpdir(), 'warden-kill-'));
    const adminToken = randomBytes(32).toString('hex');
    const env = {
      DATABASE_URL: db.url,
      // One replica: in-process jobs and budget, nothing left behind in the shared Redis.
      REDIS_URL: '',
      WARDEN_ADMIN_TOKEN: adminToken,
      DATA_DIR: dataDir,
      CLOUDFLARE_API_BASE: cf.url,
      CLOUDFLARE_SPEC_PATH: SPEC_PATH,
      SANDBOX_POOL_SIZE: '1',
      SANDBOX_TIMEOUT_MS: '30000',
      LOG_LEVEL: 'warn',
    };
    const replica = await startConnectorProcess('kill-target', env);
    try {
      const tenant = await json(
        await fetch(`${replica.url}/admin/v1/tenants`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'Killed replica' }),
        }),
      );
      const apiKey = tenant.api_key as string;
      const tenantId = (tenant.tenant as { id: string }).id;
      const token = cf.state.createUserToken({ userId, permissions: PERMISSIONS });
      const connected = await fetch(`${replica.url}/api/v1/connected_accounts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          identifier: 'victim',
          authorization: { type: 'api_token', api_token: token.value },
        }),
      });
      expect(connected.status).toBe(201);

      cf.clearRequests();
      cf.faults.setLatencyMs(300);
      const deletes = recordIds.slice(500, 510).map(dnsPath);
      const code = `async () => { for (const p of ${JSON.stringify(deletes)}) await cloudflare.request({ method: 'DELETE', path: p }); return 'done'; }`;
      const call = fetch(`${replica.url}/api/v1/execute_tool`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tool_name: 'cloudflare_execute', identifier: 'victim', params: { code } }),
      }).then(
        (res) => ({ status: res.status }),
        (error: unknown) => ({ error: error instanceof Error ? error.message : String(error) }),
      );
      // Three DELETEs answered and the fourth in Cloudflare's hands (it counts a request as it
      // arrives, and logs it once answered): the replica dies.
      await waitFor(() => cf.requestCount() >= 4, 'the fourth DELETE at Cloudflare');
      expect(await replica.kill('SIGKILL')).toMatchObject({ signal: 'SIGKILL' });
      // The caller sees the connection drop: a retriable failure, never a success.
      expect(await call).toMatchObject({ error: expect.any(String) });
      await delay(500);
      cf.faults.setLatencyMs(0);

      const requests = cf.requests().filter((r) => r.method === 'DELETE');
      expect(requests.length).toBeGreaterThanOrEqual(4);
      expect(requests.length).toBeLessThan(10);
      const before = await compareUpstreamWithTrail(db.db.kysely, tenantId, requests);
      expect(before).toMatchObject({ unrecorded: [], mismatched: [] });
      expect(before.withoutOutcome.length).toBeGreaterThanOrEqual(1);

      const cli = wardenCli({ ...env, AUDIT_OUTCOME_GRACE_SECONDS: '1' });
      // `audit verify` reads only, and lists the intents still waiting for an outcome.
      const verified = await cli.verify(tenantId);
      expect(verified).toMatchObject({ code: 0, ok: true });
      expect(verified.report.intents_without_outcome.map((i) => i.id)).toEqual(
        expect.arrayContaining(before.withoutOutcome.map((w) => w.intentId)),
      );
      // `audit maintain` with a short grace closes them as unknown.
      await delay(1_200);
      const maintained = await cli.maintain();
      expect(maintained.unknown_outcomes_closed).toBeGreaterThanOrEqual(before.withoutOutcome.length);
      const after = await compareUpstreamWithTrail(db.db.kysely, tenantId, requests);
      expect(after).toMatchObject({ unrecorded: [], mismatched: [], withoutOutcome: [] });
      expect(after.recorded + after.unknown).toBe(requests.length);
      expect(after.unknown).toBeGreaterThanOrEqual(1);
    } finally {
      cf.faults.setLatencyMs(0);
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 240_000);
});

async function json(res: Response): Promise<Record<string, unknown>> {
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}
