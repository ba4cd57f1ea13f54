import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CloudflareCredential, VerifiedCredential } from '@warden/cloudflare';
import { addKeyVersion, createLocalKeyProvider, removeKeyVersion } from '@warden/kms';
import { createTestDatabase, recordQueries } from '@warden/testing';
import type { TestDatabase } from '@warden/testing';
import { ADMIN_CALLER } from '@warden/audit';
import { createConnectedAccountService } from './connected-accounts.service.ts';
import { createEnvelope } from './envelope.ts';
import { createKeyRotationService } from './key-rotation.service.ts';
import { createTenantService } from './tenants.service.ts';

/** The operator acting in a tenant. */
const as = (tenantId: string) => ({ tenantId, actor: ADMIN_CALLER });
const token = (n: number) => `TestToken${String(n).padStart(31, '0')}`;
const verified = (tokenId: string): VerifiedCredential => ({
  tokenKind: 'user',
  userId: 'user-1',
  accounts: [{ id: 'acc-1', name: 'Acme' }],
  tokenId,
  tokenStatus: 'active',
  expiresOn: null,
});

describe('tenants and connected accounts on PostgreSQL', () => {
  let t: TestDatabase;
  let keyFile: string;
  const verifications: CloudflareCredential[] = [];
  let reject: Error | null = null;

  beforeAll(async () => {
    t = await createTestDatabase();
    keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'warden-vault-')), 'keys.json');
  });
  afterAll(async () => {
    await t.drop();
  });

  function services() {
    const envelope = createEnvelope(createLocalKeyProvider({ keyFile }), { maxEntries: 100, ttlMs: 60_000 });
    const accounts = createConnectedAccountService({
      db: t.db.kysely,
      envelope,
      verify: async (credential) => {
        verifications.push(credential);
        if (reject) throw reject;
        return verified(credential.type === 'api_token' ? `tok-${credential.apiToken.slice(-4)}` : 'gak');
      },
    });
    return {
      envelope,
      accounts,
      tenants: createTenantService({ db: t.db.kysely }),
      rotation: createKeyRotationService({ db: t.db.kysely, envelope }),
    };
  }

  it('issues API keys shown once and stores only their hash', async () => {
    const { tenants } = services();
    const { tenant, apiKey } = await tenants.create(ADMIN_CALLER, 'Acme');
    expect(apiKey.key).toMatch(/^wdn_sk_/);
    expect(await tenants.authenticate(apiKey.key)).toEqual({ tenantId: tenant.id, apiKeyId: apiKey.id });
    const stored = await t.db.kysely
      .selectFrom('tenant_api_keys')
      .selectAll()
      .where('tenant_id', '=', tenant.id)
      .execute();
    expect(JSON.stringify(stored)).not.toContain(apiKey.key);
    await tenants.revokeApiKey(as(tenant.id), apiKey.id);
    expect(await tenants.authenticate(apiKey.key)).toBeNull();
    await expect(tenants.revokeApiKey(as(tenant.id), 'key_doesnotexist000000000')).rejects.toMatchObject({
      code: 'not_found',
    });
  });

  it('remembers authenticated API keys briefly, and forgets them on revocation or when told', async () => {
    const { plugin, queries } = recordQueries();
    const reads = () => queries.filter((q) => q.kind === 'SelectQueryNode');
    let trustedSince: number | null = 0;
    const revoked: string[] = [];
    const tenants = createTenantService({
      db: t.db.kysely.withPlugin(plugin),
      apiKeyCache: { ttlMs: 60_000, trustedSince: () => trustedSince, onRevoked: (id) => revoked.push(id) },
    });
    const { tenant, apiKey } = await tenants.create(ADMIN_CALLER, 'Cached');
    const other = await tenants.issueApiKey(as(tenant.id));
    const caller = { tenantId: tenant.id, apiKeyId: apiKey.id };

    queries.length = 0;
    expect(await tenants.authenticate(apiKey.key)).toEqual(caller);
    expect(await tenants.authenticate(apiKey.key)).toEqual(caller);
    expect(reads()).toHaveLength(1);
    // Unknown keys are never cached.
    expect(await tenants.authenticate(`${apiKey.key.slice(0, -2)}xx`)).toBeNull();
    expect(await tenants.authenticate(`${apiKey.key.slice(0, -2)}xx`)).toBeNull();
    expect(reads()).toHaveLength(3);

    // Nothing cached is trusted while revocations might be missed, nor after a reconnection.
    trustedSince = null;
    queries.length = 0;
    expect(await tenants.authenticate(apiKey.key)).toEqual(caller);
    expect(reads()).toHaveLength(1);
    trustedSince = Date.now() + 1;
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await tenants.authenticate(apiKey.key)).toEqual(caller);
    expect(reads()).toHaveLength(2);
    expect(await tenants.authenticate(apiKey.key)).toEqual(caller);
    expect(reads()).toHaveLength(2);

    // Another replica revoked it: told through forgetApiKey, the next call reads again.
    await t.db.kysely
      .updateTable('tenant_api_keys')
      .set({ revoked_at: new Date() })
      .where('id', '=', apiKey.id)
      .execute();
    tenants.forgetApiKey(apiKey.id);
    expect(await tenants.authenticate(apiKey.key)).toBeNull();

    // Revoked here: refused at once, and the other replicas are told.
    expect(await tenants.authenticate(other.key)).toEqual({ tenantId: tenant.id, apiKeyId: other.id });
    await tenants.revokeApiKey(as(tenant.id), other.id);
    expect(revoked).toEqual([other.id]);
    expect(await tenants.authenticate(other.key)).toBeNull();
  });

  it('seals on create, opens the same credential, and never stores it in clear', async () => {
    const { tenants, accounts } = services();
    const { tenant } = await tenants.create(ADMIN_CALLER, 'Seal');
    const credential = { type: 'api_token', apiToken: token(1) } as const;
    const account = await accounts.create(as(tenant.id), { identifier: 'alice', credential });
    expect(account).toMatchObject({
      identifier: 'alice',
      connectionName: 'cloudflare',
      status: 'ACTIVE',
      tokenKind: 'user',
    });
    const opened = await accounts.openCredential(tenant.id, account.id);
    expect(opened.credential).toEqual(credential);
    const { rows } = await sql`select * from sealed_credentials`.execute(t.db.kysely);
    expect(JSON.stringify(rows)).not.toContain(token(1));
    expect(JSON.stringify(rows)).not.toContain(Buffer.from(token(1)).toString('base64'));
  });

  it('another tenant gets 404 for the account, exactly like an unknown id', async () => {
    const { tenants, accounts } = services();
    const a = await tenants.create(ADMIN_CALLER, 'A');
    const b = await tenants.create(ADMIN_CALLER, 'B');
    const account = await accounts.create(as(a.tenant.id), {
      identifier: 'alice',
      credential: { type: 'api_token', apiToken: token(2) },
    });
    for (const call of [
      () => accounts.get(b.tenant.id, account.id),
      () => accounts.rotate(as(b.tenant.id), account.id, { type: 'api_token', apiToken: token(3) }),
      () => accounts.revoke(as(b.tenant.id), account.id),
      () => accounts.openCredential(b.tenant.id, account.id),
      () => accounts.get(a.tenant.id, 'ca_unknown00000000000000'),
    ]) {
      await expect(call()).rejects.toMatchObject({
        code: 'not_found',
        message: 'connected account not found',
      });
    }
    expect((await accounts.list(b.tenant.id, {})).items).toEqual([]);
    expect((await accounts.get(a.tenant.id, account.id)).status).toBe('ACTIVE');
  });

  it('reads the accounts a tool call may use with their credential in one read, for its tenant only', async () => {
    const { tenants, accounts } = services();
    const a = await tenants.create(ADMIN_CALLER, 'Openable A');
    const b = await tenants.create(ADMIN_CALLER, 'Openable B');
    const first = await accounts.create(as(a.tenant.id), {
      identifier: 'carol',
      credential: { type: 'api_token', apiToken: token(41) },
    });
    const second = await accounts.create(as(a.tenant.id), {
      identifier: 'carol',
      credential: { type: 'api_token', apiToken: token(42) },
    });
    await accounts.create(as(a.tenant.id), {
      identifier: 'dave',
      credential: { type: 'api_token', apiToken: token(43) },
    });
    await accounts.setStatus(as(a.tenant.id), second.id, 'INVALID');

    const active = await accounts.openable(a.tenant.id, { identifier: 'carol' });
    expect(active.map((o) => o.account.id)).toEqual([first.id]);
    expect(await active[0]?.open()).toEqual({ type: 'api_token', apiToken: token(41) });
    expect(await accounts.openable(a.tenant.id, { identifier: 'carol', connectionNames: ['other'] })).toEqual(
      [],
    );
    expect(await accounts.openable(a.tenant.id, { identifier: 'carol', connectionNames: [] })).toEqual([]);
    expect(
      (await accounts.openable(a.tenant.id, { identifier: 'carol', connectionNames: ['cloudflare'] })).length,
    ).toBe(1);

    // By id, any status is read (the caller explains why it cannot be used), but it never opens.
    const [invalid] = await accounts.openable(a.tenant.id, { id: second.id });
    expect(invalid?.account.status).toBe('INVALID');
    await expect(invalid?.open()).rejects.toMatchObject({ code: 'conflict' });

    // Another tenant reads nothing, by identifier or by id.
    expect(await accounts.openable(b.tenant.id, { identifier: 'carol' })).toEqual([]);
    expect(await accounts.openable(b.tenant.id, { id: first.id })).toEqual([]);
  });

  it('a sealed row copied onto another account fails to open', async () => {
    const { tenants, accounts } = services();
    const { tenant } = await tenants.create(ADMIN_CALLER, 'Copy');
    const one = await accounts.create(as(tenant.id), {
      identifier: 'one',
      credential: { type: 'api_token', apiToken: token(4) },
    });
    const two = await accounts.create(as(tenant.id), {
      identifier: 'two',
      credential: { type: 'api_token', apiToken: token(5) },
    });
    const src = await t.db.kysely
      .selectFrom('sealed_credentials')
      .selectAll()
      .where('connected_account_id', '=', one.id)
      .executeTakeFirstOrThrow();
    await t.db.kysely
      .updateTable('sealed_credentials')
      .set({
        key_id: src.key_id,
        wrapped_key: Buffer.from(src.wrapped_key),
        iv: Buffer.from(src.iv),
        ciphertext: Buffer.from(src.ciphertext),
      })
      .where('connected_account_id', '=', two.id)
      .execute();
    await expect(accounts.openCredential(tenant.id, two.id)).rejects.toMatchObject({
      code: 'integrity_failure',
    });
  });

  it('an invalid credential stores nothing', async () => {
    const { tenants, accounts } = services();
    const { tenant } = await tenants.create(ADMIN_CALLER, 'Invalid');
    reject = Object.assign(new Error('refused'), { code: 'invalid_credential' });
    try {
      await expect(
        accounts.create(as(tenant.id), {
          identifier: 'mallory',
          credential: { type: 'api_token', apiToken: token(6) },
        }),
      ).rejects.toThrow('refused');
    } finally {
      reject = null;
    }
    await expect(
      accounts.create(as(tenant.id), {
        identifier: 'x',
        credential: { type: 'api_token', apiToken: 'short' },
      }),
    ).rejects.toMatchObject({
      code: 'invalid_request',
      details: { field: 'authorization.api_token' },
    });
    await expect(
      accounts.create(as(tenant.id), {
        identifier: 'x',
        connectionName: 'github',
        credential: { type: 'api_token', apiToken: token(7) },
      }),
    ).rejects.toMatchObject({ code: 'invalid_request', details: { field: 'connection_name' } });
    const count = await t.db.kysely
      .selectFrom('connected_accounts')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('tenant_id', '=', tenant.id)
      .executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(0);
  });

  it('rotates the credential under a new data key, and revoking shreds it but keeps a tombstone', async () => {
    const { tenants, accounts } = services();
    const { tenant } = await tenants.create(ADMIN_CALLER, 'Rotate');
    const account = await accounts.create(as(tenant.id), {
      identifier: 'alice',
      credential: { type: 'api_token', apiToken: token(8) },
    });
    const before = await t.db.kysely
      .selectFrom('sealed_credentials')
      .selectAll()
      .where('connected_account_id', '=', account.id)
      .executeTakeFirstOrThrow();
    await accounts.rotate(as(tenant.id), account.id, { type: 'api_token', apiToken: token(9) });
    const after = await t.db.kysely
      .selectFrom('sealed_credentials')
      .selectAll()
      .where('connected_account_id', '=', account.id)
      .executeTakeFirstOrThrow();
    expect(Buffer.from(after.wrapped_key).equals(Buffer.from(before.wrapped_key))).toBe(false);
    expect((await accounts.openCredential(tenant.id, account.id)).credential).toEqual({
      type: 'api_token',
      apiToken: token(9),
    });

    const revoked = await accounts.revoke(as(tenant.id), account.id);
    expect(revoked.status).toBe('REVOKED');
    expect(
      await t.db.kysely
        .selectFrom('sealed_credentials')
        .selectAll()
        .where('connected_account_id', '=', account.id)
        .execute(),
    ).toEqual([]);
    await expect(accounts.openCredential(tenant.id, account.id)).rejects.toMatchObject({ code: 'not_found' });
    expect((await accounts.revoke(as(tenant.id), account.id)).status).toBe('REVOKED');
    await expect(
      accounts.rotate(as(tenant.id), account.id, { type: 'api_token', apiToken: token(10) }),
    ).rejects.toMatchObject({ code: 'conflict' });
  });

  it('refuses connecting the same token twice for one identifier', async () => {
    const { tenants, accounts } = services();
    const { tenant } = await tenants.create(ADMIN_CALLER, 'Dupes');
    const credential = { type: 'api_token', apiToken: token(11) } as const;
    const first = await accounts.create(as(tenant.id), { identifier: 'alice', credential });
    await expect(accounts.create(as(tenant.id), { identifier: 'alice', credential })).rejects.toMatchObject({
      code: 'conflict',
      details: { connectedAccountId: first.id },
    });
  });

  it('paginates with a stable cursor', async () => {
    const { tenants, accounts } = services();
    const { tenant } = await tenants.create(ADMIN_CALLER, 'Pages');
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      ids.push(
        (
          await accounts.create(as(tenant.id), {
            identifier: `user-${i}`,
            credential: { type: 'api_token', apiToken: token(100 + i) },
          })
        ).id,
      );
    }
    const seen: string[] = [];
    let pageToken: string | undefined;
    do {
      const page = await accounts.list(tenant.id, { pageSize: 3, ...(pageToken ? { pageToken } : {}) });
      seen.push(...page.items.map((a) => a.id));
      pageToken = page.nextPageToken ?? undefined;
    } while (pageToken);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual([...ids].sort());
    expect((await accounts.list(tenant.id, { identifier: 'user-3' })).items.map((a) => a.id)).toEqual([
      ids[3],
    ]);
    await expect(accounts.list(tenant.id, { pageToken: 'garbage' })).rejects.toMatchObject({
      details: { field: 'page_token' },
    });
    await expect(accounts.list(tenant.id, { pageSize: 0 })).rejects.toMatchObject({
      details: { field: 'page_size' },
    });
  });

  it('key rotation re-wraps every data key and the old key version can be retired', async () => {
    const { tenants, accounts } = services();
    const { tenant } = await tenants.create(ADMIN_CALLER, 'Keys');
    const account = await accounts.create(as(tenant.id), {
      identifier: 'alice',
      credential: { type: 'api_token', apiToken: token(12) },
    });
    // The account's second credential, an R2 access key pair, is sealed too and rotates with it.
    const r2Key = { accessKeyId: 'a'.repeat(32), secretAccessKey: 'b'.repeat(64) };
    await accounts.setR2AccessKey(as(tenant.id), account.id, r2Key);
    addKeyVersion(keyFile);
    const fresh = services();
    const report = await fresh.rotation.rewrapAll();
    expect(report.currentKeyId).toBe('local:v2');
    expect(report.rewrapped).toBeGreaterThan(0);
    // The row corrupted by the copy test above is reported, not fatal.
    expect(report.failed.map((f) => f.code)).toEqual(['integrity_failure']);
    expect(await fresh.rotation.countWrappedUnder('local:v1')).toBe(1);
    const row = await t.db.kysely
      .selectFrom('sealed_credentials')
      .select('key_id')
      .where('connected_account_id', '=', account.id)
      .executeTakeFirstOrThrow();
    expect(row.key_id).toBe('local:v2');
    const r2Row = await t.db.kysely
      .selectFrom('r2_access_keys')
      .select(['key_id', 'access_key_id'])
      .where('connected_account_id', '=', account.id)
      .executeTakeFirstOrThrow();
    expect(r2Row).toEqual({ key_id: 'local:v2', access_key_id: r2Key.accessKeyId });
    removeKeyVersion(keyFile, 1);
    const afterRetire = services();
    expect((await afterRetire.accounts.openCredential(tenant.id, account.id)).credential).toEqual({
      type: 'api_token',
      apiToken: token(12),
    });
    const [openable] = await afterRetire.accounts.openable(tenant.id, { id: account.id });
    expect(await openable!.openR2()).toEqual(r2Key);
    expect((await afterRetire.rotation.rewrapAll()).rewrapped).toBe(0);
  });
});
