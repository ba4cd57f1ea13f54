/**
 * Issue 21 #8 (found by an outsider attack): `keys retire` over the bus while the running
 * replica's Redis connection is cut (its connection goes through a TCP proxy to a private
 * redis-server). The CLI reaches Redis directly and reports success; the replica reconnects a
 * moment later and, having possibly missed the announcement, reads its keys again: a
 * pre-rotation backup of a sealed row opens nowhere.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare, startRedisServer, startTcpProxy } from '@warden/testing';
import type { FakeCloudflare, RedisServer } from '@warden/testing';
import { eventually } from './test-support/http-receiver.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { appCli, executeBody } from './test-support/warden-cli.ts';
import { backUpSealedRow, restoreSealedRow } from './test-support/sealed-backup.ts';

describe('key retirement during a Redis blip', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let redis: RedisServer;
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let tenant: { tenantId: string; apiKey: string };
  let zoneId: string;

  beforeAll(async () => {
    redis = await startRedisServer();
    proxy = await startTcpProxy({ host: '127.0.0.1', port: redis.port });
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, REDIS_URL: `redis://127.0.0.1:${proxy.port}` });
    tenant = await t.createTenant('Retire blip');
    const user = cf.state.createUser({ email: 'blip@example.com' });
    const account = cf.state.createAccount({ name: 'Blip', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'blip.example' }).id;
    await t.connect(
      tenant.apiKey,
      'keys',
      cf.state.createUserToken({ userId: user.id, permissions: ['#zone:read'] }).value,
    );
  });
  afterAll(async () => {
    await t?.close();
    await proxy?.close();
    await cf?.close();
    await redis?.stop();
  });

  const cli = (...args: string[]) => appCli(t, redis.url)(...args);
  const call = () =>
    executeBody(
      t,
      tenant.apiKey,
      'keys',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
    );

  it('a pre-rotation backup does not open on the replica that missed the retirement', async () => {
    expect(await call()).toMatchObject({ data: true });
    const backup = await backUpSealedRow(t);
    await cli('keys', 'rotate');
    expect(await call()).toMatchObject({ data: true });

    await proxy.stop();
    await delay(500);
    const { stdout } = await cli('keys', 'retire', backup.key_id);
    expect(JSON.parse(stdout)).toMatchObject({ retired: backup.key_id });
    await proxy.start();
    // Let the replica reconnect and /readyz settle.
    await eventually(
      async () => ((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200 ? true : null),
      30_000,
      'ready again',
    );
    await delay(2_000);

    await restoreSealedRow(t, backup);
    cf.clearRequests();
    const after = await call();
    expect(JSON.stringify(after)).toMatch(/integrity_failure|could not be decrypted/);
    expect(cf.requests().filter((r) => r.status === 200)).toEqual([]);
  }, 120_000);
});
