import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare, startFakeKms, startTcpProxy } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

describe('connected accounts API', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };
  let other: { tenantId: string; apiKey: string };
  let alice: { id: string; email: string; globalApiKey: string };
  let acme: { id: string; name: string };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    tenant = await t.createTenant('Acme SaaS');
    other = await t.createTenant('Other SaaS');
    alice = cf.state.createUser({ email: 'alice@example.com' });
    acme = cf.state.createAccount({ name: 'Acme', members: [alice.id] });
    t.secrets.add(alice.globalApiKey);
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  function userToken(permissions = ['#zone:read', '#dns_records:edit', 'com.cloudflare.api.user.read']) {
    const token = cf.state.createUserToken({ userId: alice.id, permissions });
    t.secrets.add(token.value);
    return token;
  }

  const auth = (key = tenant.apiKey) => ({ authorization: `Bearer ${key}` });
  const create = (payload: object, key?: string) =>
    t.app.inject({ method: 'POST', url: '/api/v1/connected_accounts', headers: auth(key), payload });
  const countAccounts = async () =>
    Number(
      (
        await t.db.db.kysely
          .selectFrom('connected_accounts')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  it('vaults a user token after verifying it, and never returns the secret', async () => {
    const token = userToken();
    const res = await create({
      identifier: 'alice@acme.com',
      authorization: { type: 'api_token', api_token: token.value },
    });
    expect(res.statusCode).toBe(201);
    expect(res.body).not.toContain(token.value);
    expect(res.json().connected_account).toMatchObject({
      id: expect.stringMatching(/^ca_/),
      identifier: 'alice@acme.com',
      connection_name: 'cloudflare',
      status: 'ACTIVE',
      authorization_type: 'api_token',
      token_kind: 'user',
      cloudflare: { user_id: alice.id, account_ids: [acme.id], token_id: token.id, token_status: 'active' },
    });
    const id = res.json().connected_account.id;
    const get = await t.app.inject({
      method: 'GET',
      url: `/api/v1/connected_accounts/${id}`,
      headers: auth(),
    });
    expect(get.json().connected_account.id).toBe(id);
    expect(get.body).not.toContain(token.value);
  });

  it('vaults a credential whose Cloudflare account name holds a NUL or an unpaired surrogate', async () => {
    // Account names are free text the account's owner chooses; a member must still connect.
    const member = cf.state.createUser({ email: 'member@hostile.example' });
    cf.state.createAccount({ name: 'Evil\u0000Co \ud800', members: [member.id] });
    const token = cf.state.createUserToken({ userId: member.id, permissions: ['#zone:read'] });
    const res = await create({
      identifier: 'member@hostile.example',
      authorization: { type: 'api_token', api_token: token.value },
    });
    expect(res.statusCode, res.body).toBe(201);
    const stored = await t.db.db.kysely
      .selectFrom('connected_accounts')
      .select('cf_accounts')
      .where('id', '=', res.json().connected_account.id)
      .executeTakeFirstOrThrow();
    expect(stored.cf_accounts).toEqual([{ id: expect.any(String), name: 'Evil\uFFFDCo \uFFFD' }]);
  });

  it('recognises account-owned tokens and Global API Keys', async () => {
    const accountToken = cf.state.createAccountToken({ accountId: acme.id, permissions: ['#zone:read'] });
    t.secrets.add(accountToken.value);
    const acc = await create({
      identifier: 'ci-bot',
      authorization: { type: 'api_token', api_token: accountToken.value },
    });
    expect(acc.statusCode).toBe(201);
    expect(acc.json().connected_account).toMatchObject({
      token_kind: 'account',
      cloudflare: { user_id: null, account_ids: [acme.id], token_id: accountToken.id },
    });
    const gak = await create({
      identifier: 'alice-legacy',
      authorization: { type: 'global_api_key', email: alice.email, api_key: alice.globalApiKey },
    });
    expect(gak.statusCode).toBe(201);
    expect(gak.json().connected_account).toMatchObject({
      authorization_type: 'global_api_key',
      token_kind: 'user',
      cloudflare: { user_id: alice.id, token_id: null },
    });
    expect(gak.body).not.toContain(alice.globalApiKey);
  });

  it("refuses invalid, disabled and expired credentials with 400 and Cloudflare's reason, storing nothing", async () => {
    const before = await countAccounts();
    const disabled = userToken();
    cf.state.setTokenStatus(disabled.id, 'disabled');
    const expired = cf.state.createUserToken({
      userId: alice.id,
      permissions: ['#zone:read'],
      expiresOn: new Date(Date.now() - 60_000),
    });
    t.secrets.add(expired.value);
    const unknown = 'A'.repeat(40);
    for (const [value, reason] of [
      [unknown, /Invalid API Token/],
      [disabled.value, /disabled/],
      [expired.value, /expired/],
    ] as const) {
      const res = await create({
        identifier: 'mallory',
        authorization: { type: 'api_token', api_token: value },
      });
      expect(res.statusCode, String(reason)).toBe(400);
      expect(res.json().error).toMatchObject({
        code: 'invalid_credential',
        message: expect.stringMatching(reason),
      });
      expect(res.body).not.toContain(value);
    }
    const badKey = await create({
      identifier: 'mallory',
      authorization: { type: 'global_api_key', email: alice.email, api_key: 'f'.repeat(37) },
    });
    expect(badKey.statusCode).toBe(400);
    expect(badKey.json().error.code).toBe('invalid_credential');
    expect(await countAccounts()).toBe(before);
  });

  it('answers 502 and stores nothing when Cloudflare is down or failing', async () => {
    const before = await countAccounts();
    const token = userToken();
    cf.faults.failNext(1, 503);
    const failing = await create({
      identifier: 'bob',
      authorization: { type: 'api_token', api_token: token.value },
    });
    expect(failing.statusCode).toBe(502);
    expect(failing.json().error.code).toBe('upstream_error');
    cf.faults.setUnreachable('drop');
    try {
      const down = await create({
        identifier: 'bob',
        authorization: { type: 'api_token', api_token: token.value },
      });
      expect(down.statusCode).toBe(502);
      expect(down.json().error.message).toMatch(/unreachable/);
    } finally {
      cf.faults.setUnreachable(false);
    }
    expect(await countAccounts()).toBe(before);
  });

  it("answers a 429 while verifying as rate_limited with Cloudflare's Retry-After, storing nothing", async () => {
    const before = await countAccounts();
    const token = userToken();
    cf.faults.failNext(1, 429, { retryAfterSeconds: 7 });
    try {
      const limited = await create({
        identifier: 'bob',
        authorization: { type: 'api_token', api_token: token.value },
      });
      expect(limited.statusCode).toBe(429);
      expect(limited.headers['retry-after']).toBe('7');
      expect(limited.json().error).toMatchObject({
        code: 'rate_limited',
        message: expect.stringMatching(
          /^Cloudflare rate-limited the user of this credential .*retry after 7 s/,
        ),
      });
    } finally {
      cf.faults.reset();
    }
    expect(await countAccounts()).toBe(before);
  });

  it("names the wait the budget blocks for when Cloudflare's 429 has no Retry-After (five minutes for its API-wide limit, a second otherwise)", async () => {
    const before = await countAccounts();
    for (const [code, wait] of [
      [971, '300'],
      [10000, '1'],
    ] as const) {
      cf.faults.failNext(1, 429, { code });
      try {
        const limited = await create({
          identifier: 'bob',
          authorization: { type: 'api_token', api_token: userToken().value },
        });
        expect(limited.statusCode).toBe(429);
        // Before, the answer said "retry later" with no Retry-After, whatever the lockout.
        expect(limited.headers['retry-after']).toBe(wait);
        expect(limited.json().error.message).toMatch(new RegExp(`retry after ${wait} s`));
      } finally {
        cf.faults.reset();
      }
    }
    expect(await countAccounts()).toBe(before);
  });

  it('answers bad input with 400 naming the field', async () => {
    const token = userToken();
    const cases: Array<[object, string]> = [
      [{ authorization: { type: 'api_token', api_token: token.value } }, 'identifier'],
      [{ identifier: 42, authorization: { type: 'api_token', api_token: token.value } }, 'identifier'],
      [{ identifier: 'x' }, 'authorization'],
      [
        { identifier: 'x', authorization: { type: 'password', api_token: token.value } },
        'authorization.type',
      ],
      [{ identifier: 'x', authorization: { type: 'api_token' } }, 'authorization.api_token'],
      [
        { identifier: 'x', authorization: { type: 'api_token', api_token: 'Bearer abc' } },
        'authorization.api_token',
      ],
      [
        { identifier: 'x', authorization: { type: 'api_token', api_token: token.value, extra: 1 } },
        'authorization.extra',
      ],
      [
        {
          identifier: 'x',
          authorization: { type: 'global_api_key', email: 'not-an-email', api_key: 'a'.repeat(37) },
        },
        'authorization.email',
      ],
      [
        { identifier: 'x', authorization: { type: 'global_api_key', email: 'a@b.co', api_key: 'xyz' } },
        'authorization.api_key',
      ],
      [
        {
          identifier: 'x',
          connection_name: 'github',
          authorization: { type: 'api_token', api_token: token.value },
        },
        'connection_name',
      ],
    ];
    for (const [payload, field] of cases) {
      const res = await create(payload);
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.json().error, JSON.stringify(payload)).toMatchObject({ code: 'invalid_request', field });
      expect(res.body).not.toContain(token.value);
    }
    const huge = await t.app.inject({
      method: 'POST',
      url: '/api/v1/connected_accounts',
      headers: { ...auth(), 'content-type': 'application/json' },
      payload: JSON.stringify({ identifier: 'x'.repeat(2 * 1024 * 1024) }),
    });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().error).toMatchObject({ code: 'payload_too_large', field: 'body' });
    const malformed = await t.app.inject({
      method: 'POST',
      url: '/api/v1/connected_accounts',
      headers: { ...auth(), 'content-type': 'application/json' },
      payload: '{"identifier": "x", ',
    });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().error.field).toBe('body');
  });

  it("keeps tenants apart: another tenant's id answers 404 exactly like an unknown id", async () => {
    const token = userToken();
    const res = await create({
      identifier: 'carol',
      authorization: { type: 'api_token', api_token: token.value },
    });
    const id = res.json().connected_account.id;
    const unknownId = 'ca_00000000000000000000';
    for (const [method, url, payload] of [
      ['GET', `/api/v1/connected_accounts/${id}`, undefined],
      [
        'PUT',
        `/api/v1/connected_accounts/${id}`,
        { authorization: { type: 'api_token', api_token: token.value } },
      ],
      ['DELETE', `/api/v1/connected_accounts/${id}`, undefined],
    ] as const) {
      const foreign = await t.app.inject({
        method,
        url,
        headers: auth(other.apiKey),
        ...(payload ? { payload } : {}),
      });
      const unknown = await t.app.inject({
        method,
        url: url.replace(id, unknownId),
        headers: auth(other.apiKey),
        ...(payload ? { payload } : {}),
      });
      expect(foreign.statusCode).toBe(404);
      expect(foreign.json()).toEqual(unknown.json());
    }
    const list = await t.app.inject({
      method: 'GET',
      url: '/api/v1/connected_accounts',
      headers: auth(other.apiKey),
    });
    expect(list.json().connected_accounts).toEqual([]);
    const mine = await t.app.inject({
      method: 'GET',
      url: `/api/v1/connected_accounts/${id}`,
      headers: auth(),
    });
    expect(mine.json().connected_account.status).toBe('ACTIVE');
  });

  it('rotates after verifying the new credential; a refused rotation keeps the old one', async () => {
    const first = userToken();
    const created = await create({
      identifier: 'dave',
      authorization: { type: 'api_token', api_token: first.value },
    });
    const id = created.json().connected_account.id;
    const bad = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/connected_accounts/${id}`,
      headers: auth(),
      payload: { authorization: { type: 'api_token', api_token: 'B'.repeat(40) } },
    });
    expect(bad.statusCode).toBe(400);
    const still = await t.container.connectedAccounts.openCredential(tenant.tenantId, id);
    expect(still.credential).toEqual({ type: 'api_token', apiToken: first.value });

    const second = userToken();
    const rotated = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/connected_accounts/${id}`,
      headers: auth(),
      payload: { authorization: { type: 'api_token', api_token: second.value } },
    });
    expect(rotated.statusCode).toBe(200);
    expect(rotated.json().connected_account.cloudflare.token_id).toBe(second.id);
    expect((await t.container.connectedAccounts.openCredential(tenant.tenantId, id)).credential).toEqual({
      type: 'api_token',
      apiToken: second.value,
    });
  });

  it('deletes by destroying ciphertext and data key, keeping a REVOKED tombstone', async () => {
    const token = userToken();
    const created = await create({
      identifier: 'erin',
      authorization: { type: 'api_token', api_token: token.value },
    });
    const id = created.json().connected_account.id;
    const del = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/connected_accounts/${id}`,
      headers: auth(),
    });
    expect(del.statusCode).toBe(204);
    const sealed = await t.db.db.kysely
      .selectFrom('sealed_credentials')
      .selectAll()
      .where('connected_account_id', '=', id)
      .execute();
    expect(sealed).toEqual([]);
    const get = await t.app.inject({
      method: 'GET',
      url: `/api/v1/connected_accounts/${id}`,
      headers: auth(),
    });
    expect(get.json().connected_account.status).toBe('REVOKED');
    const again = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/connected_accounts/${id}`,
      headers: auth(),
    });
    expect(again.statusCode).toBe(204);
  });

  it('pages with next_page_token and filters by identifier and status', async () => {
    const { apiKey } = await t.createTenant('Pager');
    for (let i = 0; i < 5; i++) {
      const token = userToken();
      const res = await create(
        { identifier: `p${i}`, authorization: { type: 'api_token', api_token: token.value } },
        apiKey,
      );
      expect(res.statusCode).toBe(201);
    }
    const ids: string[] = [];
    let url = '/api/v1/connected_accounts?page_size=2';
    for (;;) {
      const page = await t.app.inject({ method: 'GET', url, headers: auth(apiKey) });
      expect(page.statusCode).toBe(200);
      ids.push(...page.json().connected_accounts.map((a: { id: string }) => a.id));
      const next = page.json().next_page_token;
      if (!next) break;
      url = `/api/v1/connected_accounts?page_size=2&page_token=${encodeURIComponent(next)}`;
    }
    expect(new Set(ids).size).toBe(5);
    const filtered = await t.app.inject({
      method: 'GET',
      url: '/api/v1/connected_accounts?identifier=p3',
      headers: auth(apiKey),
    });
    expect(filtered.json().connected_accounts).toHaveLength(1);
    const badSize = await t.app.inject({
      method: 'GET',
      url: '/api/v1/connected_accounts?page_size=1000',
      headers: auth(apiKey),
    });
    expect(badSize.json().error.field).toBe('page_size');
  });

  it('answers 503 and writes nothing while KMS is down', async () => {
    const kms = await startFakeKms();
    kms.createKey({ alias: 'alias/warden-test' });
    const app = await startTestApp({
      CLOUDFLARE_API_BASE: cf.url,
      KMS_PROVIDER: 'aws',
      AWS_KMS_KEY_ID: 'alias/warden-test',
      AWS_KMS_ENDPOINT: kms.endpoint,
      AWS_REGION: kms.region,
      AWS_ACCESS_KEY_ID: 'AKIDTESTFAKE',
      AWS_SECRET_ACCESS_KEY: 'fake-secret',
    });
    try {
      const { apiKey } = await app.createTenant();
      const token = userToken();
      app.secrets.add(token.value);
      const ok = await app.app.inject({
        method: 'POST',
        url: '/api/v1/connected_accounts',
        headers: auth(apiKey),
        payload: { identifier: 'kms-user', authorization: { type: 'api_token', api_token: token.value } },
      });
      expect(ok.statusCode).toBe(201);
      expect(ok.json().connected_account).toBeDefined();
      kms.setDown('error');
      const token2 = userToken();
      app.secrets.add(token2.value);
      const down = await app.app.inject({
        method: 'POST',
        url: '/api/v1/connected_accounts',
        headers: auth(apiKey),
        payload: { identifier: 'kms-user-2', authorization: { type: 'api_token', api_token: token2.value } },
      });
      expect(down.statusCode).toBe(503);
      expect(down.json().error.code).toBe('unavailable');
      const ready = await app.app.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json().checks.kms).toBe('unavailable');
      const rows = await app.db.db.kysely.selectFrom('connected_accounts').select('identifier').execute();
      expect(rows.map((r) => r.identifier)).toEqual(['kms-user']);
    } finally {
      kms.setDown(false);
      await app.close();
      await kms.close();
    }
  });

  it('answers 503 while PostgreSQL is down and recovers when it is back', async () => {
    const pgUrl = new URL(process.env.DATABASE_URL ?? '');
    const proxy = await startTcpProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
    const app = await startTestApp({ CLOUDFLARE_API_BASE: cf.url }, { viaProxyPort: proxy.port });
    try {
      const { apiKey } = await app.createTenant();
      await proxy.stop();
      const list = await app.app.inject({
        method: 'GET',
        url: '/api/v1/connected_accounts',
        headers: auth(apiKey),
      });
      expect(list.statusCode).toBe(503);
      expect(list.json().error).toMatchObject({ code: 'unavailable' });
      const ready = await app.app.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json().checks.database).toBe('unavailable');
      await proxy.start();
      const again = await app.app.inject({
        method: 'GET',
        url: '/api/v1/connected_accounts',
        headers: auth(apiKey),
      });
      expect(again.statusCode).toBe(200);
    } finally {
      await proxy.start().catch(() => {});
      await app.close();
      await proxy.close();
    }
  });

  it("FIXED (a re-attack of session 20): a rotation to a token of a user Cloudflare locked out answers 429 and leaves the old user's budget as it was", async () => {
    const tenant = await t.createTenant('Rotating SaaS');
    const permissions = ['#zone:read', 'com.cloudflare.api.user.read'];
    const alice = cf.state.createUser({ email: 'alice-rotating@example.com' });
    const bob = cf.state.createUser({ email: 'bob-rotating@example.com' });
    const id = await t.connect(
      tenant.apiKey,
      'alice',
      cf.state.createUserToken({ userId: alice.id, permissions }).value,
    );
    const view = async () =>
      (
        await t.app.inject({
          method: 'GET',
          url: `/api/v1/connected_accounts/${id}`,
          headers: { authorization: `Bearer ${tenant.apiKey}` },
        })
      ).json().connected_account.rate_budget;
    const before = await view();
    expect(before).toMatchObject({ principal: `cf:user:${alice.id}`, blocked_until: null });

    // Bob uses his whole Cloudflare quota outside Warden: Cloudflare locks him out.
    cf.setLimits({ budget: { requests: 2, windowSeconds: 300 }, lockoutSeconds: 300 });
    try {
      const bobs = cf.state.createUserToken({ userId: bob.id, permissions });
      for (let i = 0; i < 3; i++) {
        await fetch(`${cf.url}/user/tokens/verify`, { headers: { authorization: `Bearer ${bobs.value}` } });
      }
      const rotated = await t.app.inject({
        method: 'PUT',
        url: `/api/v1/connected_accounts/${id}`,
        headers: { authorization: `Bearer ${tenant.apiKey}` },
        payload: {
          authorization: {
            type: 'api_token',
            api_token: cf.state.createUserToken({ userId: bob.id, permissions }).value,
          },
        },
      });
      expect(rotated.statusCode).toBe(429);
      expect(rotated.json().error.code).toBe('rate_limited');
    } finally {
      cf.setLimits({ budget: { requests: 1200, windowSeconds: 300 }, lockoutSeconds: 300 });
    }
    // Bob's lockout is not Alice's: her budget is as it was, and not blocked.
    expect(await view()).toMatchObject({ blocked_until: null, remaining: before.remaining });
  });
});
