/**
 * `warden keys retire` reaches a running replica at once: a sealed row restored from a backup
 * taken before the rotation does not open there any more, without a restart, although the
 * replica had that row's data key cached and the retired key version in memory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_SIGNATURE_HEADER, verifyWebhookSignature } from '@warden/audit';
import { createLocalKeyProvider } from '@warden/kms';
import { sealInFirstFormat, startFakeCloudflare } from '@warden/testing';
import { sealIdentity, sealedColumns, sealedFromColumns } from '@warden/vault';
import type { FakeCloudflare } from '@warden/testing';
import { eventually, startReceiver } from './test-support/http-receiver.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { appCli, executeBody } from './test-support/warden-cli.ts';
import { backUpSealedRow, restoreSealedRow } from './test-support/sealed-backup.ts';

describe('key retirement on a running replica', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };
  let zoneId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      DELIVERY_ALLOW_INSECURE: 'true',
      OUTBOX_INTERVAL_MS: '200',
      // Every call reads the sealed row as the database holds it now: these tests rewrite rows
      // behind the service's back (a restored backup, an older release's format), which no
      // replica hears of, and must not be answered from a call context cached before that.
      CONTEXT_CACHE_TTL_MS: '0',
    });
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

  const cli = (...args: string[]) => appCli(t, process.env.REDIS_URL ?? '')(...args);
  const call = () =>
    executeBody(
      t,
      tenant.apiKey,
      'keys',
      `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).success`,
    );

  it('rotates every sealed secret (SIEM sink too), so retiring the old key leaves delivery working', async () => {
    const receiver = await startReceiver();
    try {
      const sink = await t.app.inject({
        method: 'POST',
        url: '/api/v1/audit/sinks',
        headers: { authorization: `Bearer ${tenant.apiKey}` },
        payload: {
          name: 'siem',
          config: { type: 'webhook', url: receiver.url, secret: 'siem-signing-secret-0123456789' },
        },
      });
      expect(sink.statusCode).toBe(201);
      const status = async () =>
        JSON.parse((await cli('keys', 'status')).stdout) as {
          current_key_id: string;
          data_keys_by_key: Record<string, number>;
        };
      const before = await status();
      // The credential and the sink secret, both under the first key.
      expect(before.data_keys_by_key[before.current_key_id]).toBeGreaterThanOrEqual(2);
      const refused = await cli('keys', 'retire', before.current_key_id).catch(
        (e: { code: number; stderr: string }) => e,
      );
      expect(refused).toMatchObject({ code: 1, stderr: expect.stringMatching(/still wrapped under/) });

      await cli('keys', 'rotate');
      const rotated = await status();
      expect(rotated.current_key_id).not.toBe(before.current_key_id);
      expect(rotated.data_keys_by_key[before.current_key_id] ?? 0).toBe(0);
      await cli('keys', 'retire', before.current_key_id);

      const signed = (r: { status: number; headers: Record<string, unknown>; body: string }) =>
        r.status === 200 &&
        verifyWebhookSignature(
          'siem-signing-secret-0123456789',
          r.headers[WEBHOOK_SIGNATURE_HEADER] as string,
          r.body,
        );
      const deliveredBefore = receiver.requests.filter(signed).length;
      expect(await call()).toMatchObject({ data: true });
      await eventually(
        () => (receiver.requests.filter(signed).length > deliveredBefore ? true : null),
        20_000,
        'a signed delivery after the retirement',
      );
    } finally {
      await receiver.close();
    }
  }, 120_000);

  it('re-seals secrets an older release sealed in the first format (kind-blind), by kind and id, and they keep working', async () => {
    const receiver = await startReceiver();
    try {
      const secret = 'first-format-signing-secret-0123';
      const sink = await t.app.inject({
        method: 'POST',
        url: '/api/v1/audit/sinks',
        headers: { authorization: `Bearer ${tenant.apiKey}` },
        payload: { name: 'first-format', config: { type: 'webhook', url: receiver.url, secret } },
      });
      expect(sink.statusCode).toBe(201);
      const sinkId = (sink.json() as { sink: { id: string } }).sink.id;
      const db = t.db.db.kysely;
      const config = t.container.config;
      if (config.kms.provider !== 'local') throw new Error('this test runs with the local key file');
      const keys = createLocalKeyProvider({ keyFile: config.kms.keyFile });

      // Both rows as the release before kinds left them: opened, then sealed in format 1.
      const credential = await db
        .selectFrom('sealed_credentials')
        .selectAll()
        .where('tenant_id', '=', tenant.tenantId)
        .executeTakeFirstOrThrow();
      const credentialIdentity = sealIdentity('credential', tenant.tenantId, credential.connected_account_id);
      const credentialPlain = await t.container.envelope.open(
        credentialIdentity,
        sealedFromColumns(credential)!,
      );
      const oldCredential = await sealInFirstFormat(
        keys,
        tenant.tenantId,
        credential.connected_account_id,
        credentialPlain,
      );
      await db
        .updateTable('sealed_credentials')
        .set(sealedColumns(oldCredential))
        .where('connected_account_id', '=', credential.connected_account_id)
        .execute();
      const sinkRow = await db
        .selectFrom('audit_sinks')
        .selectAll()
        .where('id', '=', sinkId)
        .executeTakeFirstOrThrow();
      const sinkPlain = await t.container.envelope.open(
        sealIdentity('siem_sink', tenant.tenantId, sinkId),
        sealedFromColumns(sinkRow)!,
      );
      expect(sinkPlain.toString('utf8')).toBe(secret);
      await db
        .updateTable('audit_sinks')
        .set(sealedColumns(await sealInFirstFormat(keys, tenant.tenantId, sinkId, sinkPlain)))
        .where('id', '=', sinkId)
        .execute();
      t.container.envelope.cache.clear();

      // A first-format credential still opens for a call.
      expect(await call()).toMatchObject({ data: true });
      const status = async () =>
        JSON.parse((await cli('keys', 'status')).stdout) as { current_key_id: string; legacy_format: number };
      expect((await status()).legacy_format).toBe(2);

      const rotated = JSON.parse((await cli('keys', 'rotate')).stdout) as {
        resealed: number;
        failed: unknown[];
      };
      expect(rotated).toMatchObject({ resealed: 2, failed: [] });
      expect((await status()).legacy_format).toBe(0);
      const after = await db
        .selectFrom('sealed_credentials')
        .selectAll()
        .where('connected_account_id', '=', credential.connected_account_id)
        .executeTakeFirstOrThrow();
      expect(after.seal_format).toBe(2);
      expect(Buffer.from(after.ciphertext).equals(oldCredential.ciphertext)).toBe(false);
      // Bound by kind now: the same row read as another kind of secret does not open.
      await expect(
        t.container.envelope.open(
          sealIdentity('webhook', tenant.tenantId, credential.connected_account_id),
          sealedFromColumns(after)!,
        ),
      ).rejects.toMatchObject({ code: 'integrity_failure' });

      // The call and a signed SIEM delivery still work with the re-sealed secrets.
      t.container.envelope.cache.clear();
      const signed = (r: { status: number; headers: Record<string, unknown>; body: string }) =>
        r.status === 200 &&
        verifyWebhookSignature(secret, r.headers[WEBHOOK_SIGNATURE_HEADER] as string, r.body);
      const deliveredBefore = receiver.requests.filter(signed).length;
      expect(await call()).toMatchObject({ data: true });
      await eventually(
        () => (receiver.requests.filter(signed).length > deliveredBefore ? true : null),
        20_000,
        'a signed delivery with the re-sealed sink secret',
      );
    } finally {
      await receiver.close();
    }
  }, 120_000);

  it('makes a pre-rotation backup of a sealed row useless on the running replica', async () => {
    // The replica opens the credential: its data key is now cached, key version 1 in memory.
    expect(await call()).toMatchObject({ data: true });
    const backup = await backUpSealedRow(t);
    expect(backup.key_id).toMatch(/^local:v\d+$/);

    await cli('keys', 'rotate');
    expect(await call()).toMatchObject({ data: true });
    const { stdout } = await cli('keys', 'retire', backup.key_id);
    expect(JSON.parse(stdout)).toEqual({ retired: backup.key_id });

    // The backup comes back: the row as it was, wrapped under the retired version.
    await restoreSealedRow(t, backup);
    cf.clearRequests();
    // The CLI's publish returned once Redis had handed the message to every subscriber.
    const refused = await call();
    expect(JSON.stringify(refused)).toMatch(/integrity_failure|could not be decrypted/);
    expect(cf.requests().filter((r) => r.status === 200)).toEqual([]);
  }, 120_000);

  it("puts the deployment's own events (spec loaded, keys rotated and retired) on the system trail, with their actor, in every export format", async () => {
    const exported = async (format: string) => {
      const res = await t.app.inject({
        method: 'GET',
        url: `/admin/v1/audit/export?format=${format}`,
        headers: { authorization: `Bearer ${t.adminToken}` },
      });
      expect(res.statusCode, res.body).toBe(200);
      return res.body;
    };
    const events = (await exported('ndjson'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { action: string; caller: { type: string; id: string | null } });
    const actorOf = (action: string) => events.find((e) => e.action === action)?.caller;
    // Loaded by the service at start; rotated and retired by an operator with the CLI.
    expect(actorOf('spec.loaded')).toMatchObject({ type: 'system' });
    expect(actorOf('key.rotated')).toMatchObject({ type: 'admin', id: 'cli' });
    expect(actorOf('key.retired')).toMatchObject({ type: 'admin', id: 'cli' });
    const [ocsf, cef] = await Promise.all([exported('ocsf'), exported('cef')]);
    for (const action of ['spec.loaded', 'key.rotated', 'key.retired']) {
      expect(ocsf, action).toContain(action);
      expect(cef, action).toContain(`act=${action}`);
    }
    // No tenant's events are on it, and a tenant key cannot read it.
    expect(events.some((e) => e.action.startsWith('connected_account.'))).toBe(false);
    const asTenant = await t.app.inject({
      method: 'GET',
      url: '/admin/v1/audit/export',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
    });
    expect(asTenant.statusCode).toBe(401);
  });
});
