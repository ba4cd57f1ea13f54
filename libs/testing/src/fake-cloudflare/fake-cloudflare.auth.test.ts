import { createCloudflareClient, verifyCredential } from '@warden/cloudflare';
import { ManualClock } from '@warden/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeAccount, FakeUser } from './fake-cloudflare.state.ts';
import { api, loadSpec } from './fake-cloudflare.test-helpers.ts';

describe('fake Cloudflare authentication', () => {
  const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
  let fake: FakeCloudflare;
  let alice: FakeUser;
  let acme: FakeAccount;
  beforeAll(async () => {
    fake = await startFakeCloudflare({ spec: loadSpec(), clock, budget: null });
    alice = fake.state.createUser({ email: 'alice@example.com' });
    acme = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
  });
  afterAll(async () => {
    await fake.close();
  });

  it('generates realistic secrets at runtime', () => {
    const token = fake.state.createUserToken({ userId: alice.id, permissions: ['#zone:read'] });
    expect(token.id).toMatch(/^[0-9a-f]{32}$/);
    expect(token.value).toMatch(/^[A-Za-z0-9_-]{40}$/);
    expect(alice.id).toMatch(/^[0-9a-f]{32}$/);
    expect(alice.globalApiKey).toMatch(/^[0-9a-f]{37}$/);
  });

  it('verifies user tokens at /user/tokens/verify and refuses account-owned ones there (401, 1000)', async () => {
    const userToken = fake.state.createUserToken({
      userId: alice.id,
      permissions: ['#zone:read'],
      expiresOn: new Date('2027-01-01T00:00:00Z'),
      notBefore: new Date('2026-01-01T00:00:00Z'),
    });
    const accountToken = fake.state.createAccountToken({ accountId: acme.id, permissions: ['#zone:read'] });

    const user = await api(fake.url, { token: userToken.value }, 'GET', '/user/tokens/verify');
    expect(user.status).toBe(200);
    expect(user.json.result).toEqual({
      id: userToken.id,
      status: 'active',
      expires_on: '2027-01-01T00:00:00Z',
      not_before: '2026-01-01T00:00:00Z',
    });

    const acctAtUser = await api(fake.url, { token: accountToken.value }, 'GET', '/user/tokens/verify');
    expect(acctAtUser.status).toBe(401);
    expect(acctAtUser.json.errors).toEqual([{ code: 1000, message: 'Invalid API Token' }]);

    const acct = await api(
      fake.url,
      { token: accountToken.value },
      'GET',
      `/accounts/${acme.id}/tokens/verify`,
    );
    expect(acct.status).toBe(200);
    expect(acct.json.result).toEqual({ id: accountToken.id, status: 'active' });
    expect(acct.json.messages?.[0]?.message).toBe('This API Token is valid and active');

    const userAtAccount = await api(
      fake.url,
      { token: userToken.value },
      'GET',
      `/accounts/${acme.id}/tokens/verify`,
    );
    expect(userAtAccount.status).toBe(401);

    const unknown = await api(fake.url, { token: 'x'.repeat(40) }, 'GET', '/user/tokens/verify');
    expect(unknown.status).toBe(401);
    expect(unknown.json.errors).toEqual([{ code: 1000, message: 'Invalid API Token' }]);

    const malformed = await api(fake.url, null, 'GET', '/user/tokens/verify', {
      headers: { authorization: 'Token abc' },
    });
    expect(malformed.status).toBe(400);
    expect(malformed.json.errors?.[0]).toEqual({
      code: 6003,
      message: 'Invalid request headers',
      error_chain: [{ code: 6111, message: 'Invalid format for Authorization header' }],
    });

    const none = await api(fake.url, null, 'GET', '/zones');
    expect(none.status).toBe(400);
    expect(none.json.errors?.[0]?.code).toBe(9106);
  });

  it('lets an account-owned token see its own account in GET /accounts', async () => {
    const other = fake.state.createAccount({ name: 'Other', members: [alice.id] });
    const accountToken = fake.state.createAccountToken({
      accountId: acme.id,
      permissions: ['#dns_records:read'],
    });
    const listed = await api(fake.url, { token: accountToken.value }, 'GET', '/accounts');
    expect((listed.json.result as Array<{ id: string }>).map((a) => a.id)).toEqual([acme.id]);
    expect(listed.json.result_info).toMatchObject({ total_count: 1 });
    const global = await api(fake.url, { email: alice.email, key: alice.globalApiKey }, 'GET', '/accounts');
    expect((global.json.result as Array<{ id: string }>).map((a) => a.id).sort()).toEqual(
      [acme.id, other.id].sort(),
    );
  });

  it('reports disabled and expired tokens by status at verify and refuses them elsewhere', async () => {
    const token = fake.state.createUserToken({
      userId: alice.id,
      permissions: ['com.cloudflare.api.user.read'],
    });
    fake.state.setTokenStatus(token.id, 'disabled');
    const disabled = await api(fake.url, { token: token.value }, 'GET', '/user/tokens/verify');
    expect(disabled.status).toBe(200);
    expect(disabled.json).toMatchObject({
      success: true,
      result: { id: token.id, status: 'disabled' },
      messages: [],
    });
    const refused = await api(fake.url, { token: token.value }, 'GET', '/user');
    expect(refused.status).toBe(401);
    expect(refused.json.errors?.[0]?.code).toBe(1000);

    const expiring = fake.state.createUserToken({
      userId: alice.id,
      permissions: ['com.cloudflare.api.user.read'],
      expiresOn: new Date(clock.now().getTime() + 60_000),
    });
    expect((await api(fake.url, { token: expiring.value }, 'GET', '/user')).status).toBe(200);
    clock.advance(60_000);
    const expired = await api(fake.url, { token: expiring.value }, 'GET', '/user/tokens/verify');
    expect(expired.json.result).toMatchObject({ status: 'expired' });
    expect((await api(fake.url, { token: expiring.value }, 'GET', '/user')).status).toBe(401);
    expect(fake.state.getToken(expiring.id)?.status).toBe('expired');

    const explicit = fake.state.createUserToken({ userId: alice.id, permissions: [], status: 'expired' });
    expect(
      (await api(fake.url, { token: explicit.value }, 'GET', '/user/tokens/verify')).json.result,
    ).toMatchObject({
      status: 'expired',
    });
  });

  it('accepts the Global API Key for everything the user is a member of', async () => {
    const good = await api(fake.url, { email: alice.email, key: alice.globalApiKey }, 'GET', '/user');
    expect(good.status).toBe(200);
    expect(good.json.result).toMatchObject({ id: alice.id, email: 'alice@example.com' });
    const caseInsensitive = await api(
      fake.url,
      { email: 'ALICE@example.com', key: alice.globalApiKey },
      'GET',
      '/user',
    );
    expect(caseInsensitive.status).toBe(200);

    const badEmail = await api(
      fake.url,
      { email: 'mallory@example.com', key: alice.globalApiKey },
      'GET',
      '/user',
    );
    expect(badEmail.status).toBe(403);
    expect(badEmail.json.errors).toEqual([{ code: 9103, message: 'Unknown X-Auth-Key or X-Auth-Email' }]);
    const wrongKey = await api(fake.url, { email: alice.email, key: 'a'.repeat(37) }, 'GET', '/user');
    expect(wrongKey.status).toBe(403);

    const badFormat = await api(fake.url, { email: alice.email, key: 'NOT-A-KEY' }, 'GET', '/user');
    expect(badFormat.status).toBe(400);
    expect(badFormat.json.errors).toEqual([
      {
        code: 6003,
        message: 'Invalid request headers',
        error_chain: [{ code: 6103, message: 'Invalid format for X-Auth-Key header' }],
      },
    ]);
    const badEmailFormat = await api(
      fake.url,
      { email: 'not-an-email', key: alice.globalApiKey },
      'GET',
      '/user',
    );
    expect(badEmailFormat.json.errors?.[0]?.error_chain?.[0]?.code).toBe(6102);

    const foreign = fake.state.createAccount({ name: 'Not Alice' });
    const denied = await api(
      fake.url,
      { email: alice.email, key: alice.globalApiKey },
      'GET',
      `/accounts/${foreign.id}`,
    );
    expect(denied.status).toBe(404);
    expect(denied.json.errors?.[0]?.code).toBe(7003);
  });

  it('lets a token with API Tokens Write delete itself (offboarding), and refuses one without it', async () => {
    const deletable = fake.state.createUserToken({
      userId: alice.id,
      permissions: ['com.cloudflare.api.token.delete'],
    });
    const plain = fake.state.createUserToken({ userId: alice.id, permissions: ['#zone:read'] });

    const refused = await api(fake.url, { token: plain.value }, 'DELETE', `/user/tokens/${plain.id}`);
    expect(refused.status).toBe(403);
    expect(refused.json.errors?.[0]?.code).toBe(9109);
    expect(fake.state.getToken(plain.id)).toBeDefined();

    const deleted = await api(fake.url, { token: deletable.value }, 'DELETE', `/user/tokens/${deletable.id}`);
    expect(deleted.status).toBe(200);
    expect(deleted.json.result).toEqual({ id: deletable.id });
    expect(fake.state.getToken(deletable.id)).toBeUndefined();
    expect((await api(fake.url, { token: deletable.value }, 'GET', '/user/tokens/verify')).status).toBe(401);

    // The Global API Key may delete any of the user's tokens.
    const byKey = await api(
      fake.url,
      { email: alice.email, key: alice.globalApiKey },
      'DELETE',
      `/user/tokens/${plain.id}`,
    );
    expect(byKey.status).toBe(200);

    // Account-owned tokens delete themselves under the account.
    const acctToken = fake.state.createAccountToken({
      accountId: acme.id,
      permissions: ['com.cloudflare.api.token.delete'],
    });
    const acctDeleted = await api(
      fake.url,
      { token: acctToken.value },
      'DELETE',
      `/accounts/${acme.id}/tokens/${acctToken.id}`,
    );
    expect(acctDeleted.status).toBe(200);
    expect(fake.state.getToken(acctToken.id)).toBeUndefined();
  });

  it('shows token details to a token with API Tokens Read', async () => {
    const reader = fake.state.createUserToken({
      userId: alice.id,
      name: 'reader',
      permissions: ['com.cloudflare.api.token.read'],
      accounts: [acme.id],
    });
    const details = await api(fake.url, { token: reader.value }, 'GET', `/user/tokens/${reader.id}`);
    expect(details.status).toBe(200);
    expect(details.json.result).toMatchObject({
      id: reader.id,
      name: 'reader',
      status: 'active',
      policies: [
        {
          effect: 'allow',
          resources: { [`com.cloudflare.api.account.${acme.id}`]: '*' },
          permission_groups: [{ name: 'com.cloudflare.api.token.read' }],
        },
      ],
    });
    expect(JSON.stringify(details.json)).not.toContain(reader.value);
  });

  it("works with Warden's own credential verification (user token, account token, Global API Key)", async () => {
    const client = createCloudflareClient({ baseUrl: fake.url });
    const userToken = fake.state.createUserToken({
      userId: alice.id,
      permissions: ['com.cloudflare.api.user.read', '#organization:read'],
    });
    const user = await verifyCredential(client, { type: 'api_token', apiToken: userToken.value });
    expect(user).toMatchObject({
      tokenKind: 'user',
      userId: alice.id,
      tokenId: userToken.id,
      tokenStatus: 'active',
    });
    expect(user.accounts.map((a) => a.id)).toContain(acme.id);

    const accountToken = fake.state.createAccountToken({
      accountId: acme.id,
      permissions: ['#dns_records:edit'],
    });
    const account = await verifyCredential(client, { type: 'api_token', apiToken: accountToken.value });
    expect(account).toMatchObject({
      tokenKind: 'account',
      tokenId: accountToken.id,
      accounts: [{ id: acme.id, name: 'Acme' }],
    });

    const key = await verifyCredential(client, {
      type: 'global_api_key',
      email: alice.email,
      apiKey: alice.globalApiKey,
    });
    expect(key).toMatchObject({ tokenKind: 'user', userId: alice.id, tokenId: null });

    fake.state.setTokenStatus(userToken.id, 'disabled');
    await expect(
      verifyCredential(client, { type: 'api_token', apiToken: userToken.value }),
    ).rejects.toMatchObject({
      code: 'invalid_credential',
    });
  });
});
