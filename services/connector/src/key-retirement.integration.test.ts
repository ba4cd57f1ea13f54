/**
 * `warden keys retire` reaches a running replica at once: a sealed row restored from a backup
 * taken before the rotation does not open there any more, without a restart, although the
 * replica had that row's data key cached and the retired key version in memory.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { REPO_ROOT, SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

const run = promisify(execFile);

describe('key retirement on a running replica', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };
  let zoneId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    tenant = await t.createTenant('Key retirement');
    const user = cf.state.createUser({ email: 'keys@example.com' });
    const account = cf.state.createAccount({ name: 'Keys Co', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'keys.example' }).id;
    const token = cf.state.createUserToken({ userId: user.id, permissions: ['#zone:read'] });
    await t.connect(tenant.apiKey, 'keys', token.value);
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  const cli = (...args: string[]) => {
    const config = t.container.config;
    if (config.kms.provider !== 'local') throw new Error('this test runs with the local key file');
    return run(process.execPath, [path.join(REPO_ROOT, 'services/connector/bin/warden.js'), ...args], {
      env: {
        ...process.env,
        DATABASE_URL: t.db.url,
        DATA_DIR: t.dataDir,
        LOCAL_KEY_FILE: config.kms.keyFile,
        REDIS_URL: process.env.REDIS_URL ?? '',
        REDIS_KEY_PREFIX: config.redisKeyPrefix,
        LOG_LEVEL: 'silent',
      },
    });
  };
  const call = async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/execute_tool',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      payload: {
        tool_name: 'cloudflare_execute',
        identifier: 'keys',
        params: {
          code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
        },
      },
    });
    return res.json() as { data?: unknown; error?: { code: string } };
  };

  it('makes a pre-rotation backup of a sealed row useless on the running replica', async () => {
    // The replica opens the credential: its data key is now cached, key version 1 in memory.
    expect(await call()).toMatchObject({ data: true });
    const backup = await t.db.db.kysely
      .selectFrom('sealed_credentials')
      .selectAll()
      .executeTakeFirstOrThrow();
    expect(backup.key_id).toBe('local:v1');

    await cli('keys', 'rotate');
    expect(await call()).toMatchObject({ data: true });
    const { stdout } = await cli('keys', 'retire', '1');
    expect(JSON.parse(stdout)).toEqual({ retired: 'local:v1' });

    // The backup comes back: the row as it was, wrapped under the retired version.
    await t.db.db.kysely
      .updateTable('sealed_credentials')
      .set({
        key_id: backup.key_id,
        wrapped_key: backup.wrapped_key,
        iv: backup.iv,
        ciphertext: backup.ciphertext,
      })
      .where('connected_account_id', '=', backup.connected_account_id)
      .execute();
    cf.clearRequests();
    // The CLI's publish returned once Redis had handed the message to every subscriber.
    const refused = await call();
    expect(JSON.stringify(refused)).toMatch(/integrity_failure|could not be decrypted/);
    expect(cf.requests().filter((r) => r.status === 200)).toEqual([]);
  }, 120_000);
});
