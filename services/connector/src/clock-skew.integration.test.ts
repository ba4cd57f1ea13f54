/**
 * Replicas whose host clocks disagree decide on one clock, the database's: an MCP token's expiry
 * is the same answer on a replica 30 s ahead as on one on time, and the audit trail's times follow
 * the chain order whichever replica wrote each record.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { startConnectorProcess } from './test-support/connector-process.ts';
import type { ConnectorProcess } from './test-support/connector-process.ts';
import { SKEWED_CLOCK_PRELOAD, SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

const SKEW_MS = 30_000;
const PUBLIC_URL = 'http://warden.clocks.test';
const PRELOAD = SKEWED_CLOCK_PRELOAD;
const run = promisify(execFile);

describe('replica clocks that disagree', () => {
  let cf: FakeCloudflare;
  let a: TestApp;
  let ahead: ConnectorProcess;
  let tenant: { tenantId: string; apiKey: string };
  let zoneId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    // One public URL for both replicas, as behind a load balancer: MCP tokens are bound to it.
    a = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: PUBLIC_URL });
    const kms = a.container.config.kms;
    if (kms.provider !== 'local') throw new Error('this test shares the local key file');
    ahead = await startConnectorProcess('ahead', {
      DATABASE_URL: a.db.url,
      PUBLIC_URL,
      REDIS_URL: process.env.REDIS_URL ?? '',
      REDIS_KEY_PREFIX: a.container.config.redisKeyPrefix,
      LOCAL_KEY_FILE: kms.keyFile,
      DATA_DIR: a.dataDir,
      WARDEN_ADMIN_TOKEN: a.adminToken,
      CLOUDFLARE_API_BASE: cf.url,
      CLOUDFLARE_SPEC_PATH: SPEC_PATH,
      SANDBOX_POOL_SIZE: '1',
      LOG_LEVEL: 'warn',
      NODE_OPTIONS: PRELOAD,
      WARDEN_TEST_CLOCK_SKEW_MS: String(SKEW_MS),
    });
    tenant = await a.createTenant('Clocks');
    const user = cf.state.createUser({ email: 'clocks@example.com' });
    const account = cf.state.createAccount({ name: 'Clocks Co', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'clocks.example' }).id;
    const token = cf.state.createUserToken({ userId: user.id, permissions: ['#zone:read'] });
    await a.connect(tenant.apiKey, 'clocks', token.value);
  }, 180_000);
  afterAll(async () => {
    await ahead?.stop();
    await a.close();
    await cf.close();
  });

  const auth = () => ({ authorization: `Bearer ${tenant.apiKey}` });
  const mcpList = (url: string, token: string) =>
    fetch(`${url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    }).then(async (res) => {
      await res.arrayBuffer();
      return res.status;
    });

  it('runs a process under the preload 30 s ahead (as the skewed replica is started)', async () => {
    const { stdout } = await run(process.execPath, ['-e', 'console.log(Date.now(), new Date().getTime())'], {
      env: { ...process.env, NODE_OPTIONS: PRELOAD, WARDEN_TEST_CLOCK_SKEW_MS: String(SKEW_MS) },
    });
    for (const value of stdout.trim().split(' '))
      expect(Number(value) - Date.now()).toBeGreaterThan(SKEW_MS - 5_000);
  });

  it('gives the same answer for an MCP token on both replicas, on the database clock', async () => {
    const minted = await a.app.inject({
      method: 'POST',
      url: '/api/v1/mcp/tokens',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      payload: { identifier: 'clocks', expiry: '60s' },
    });
    expect(minted.statusCode, minted.body).toBe(201);
    const { token, token_id } = minted.json() as { token: string; token_id: string };
    a.secrets.add(token);
    await a.app.listen({ host: '127.0.0.1', port: 0 });
    const address = a.app.server.address();
    const urlA = typeof address === 'object' && address ? `http://127.0.0.1:${address.port}` : '';
    // 20 s left by the database's clock: already expired by the skewed replica's own clock.
    await a.db.db.kysely
      .updateTable('mcp_tokens')
      .set({ expires_at: new Date(Date.now() + 20_000) })
      .where('id', '=', token_id)
      .execute();
    expect(await mcpList(urlA, token)).toBe(200);
    expect(await mcpList(ahead.url, token)).toBe(200);
  });

  it('stamps audit records on the database clock, in chain order whichever replica wrote them', async () => {
    const code = `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`;
    for (let i = 0; i < 3; i++) {
      const onA = await a.app.inject({
        method: 'POST',
        url: '/api/v1/execute_tool',
        headers: auth(),
        payload: { tool_name: 'cloudflare_execute', identifier: 'clocks', params: { code } },
      });
      expect(onA.json()).toMatchObject({ data: true });
      const onAhead = await fetch(`${ahead.url}/api/v1/execute_tool`, {
        method: 'POST',
        headers: { ...auth(), 'content-type': 'application/json' },
        body: JSON.stringify({ tool_name: 'cloudflare_execute', identifier: 'clocks', params: { code } }),
      });
      expect(await onAhead.json()).toMatchObject({ data: true });
    }
    const rows = await a.db.db.kysely
      .selectFrom('audit_events')
      .select(['seq', 'occurred_at'])
      .where('tenant_id', '=', tenant.tenantId)
      .orderBy('seq')
      .execute();
    expect(rows.length).toBeGreaterThan(6);
    const late = Date.now() + 5_000;
    for (const [i, row] of rows.entries()) {
      expect(row.occurred_at.getTime(), `seq ${row.seq} is in the future`).toBeLessThan(late);
      const next = rows[i + 1];
      if (next)
        expect(next.occurred_at.getTime(), `seq ${next.seq} before seq ${row.seq}`).toBeGreaterThanOrEqual(
          row.occurred_at.getTime() - 50,
        );
    }
  });
});
