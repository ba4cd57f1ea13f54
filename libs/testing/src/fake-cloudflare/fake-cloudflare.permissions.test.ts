import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expandPermissions, FAKE_CF_PERMISSION_GROUPS, satisfies } from './fake-cloudflare.permissions.ts';
import { FAKE_CF_ROUTES, startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare.server.ts';
import { indexSpecPermissions } from './fake-cloudflare.spec.ts';
import type { FakeAccount, FakeUser, FakeZone } from './fake-cloudflare.state.ts';
import { api, loadSpec } from './fake-cloudflare.test-helpers.ts';

describe('permission keys', () => {
  it('lets :edit imply :read and write-ish IAM verbs imply reads', () => {
    expect(satisfies(expandPermissions(['#dns_records:edit']), ['#dns_records:read'])).toBe(true);
    expect(satisfies(expandPermissions(['#dns_records:read']), ['#dns_records:edit'])).toBe(false);
    expect(satisfies(expandPermissions(['#zone:edit']), ['#dns_records:read'])).toBe(false);
    const workers = expandPermissions(['com.cloudflare.edge.worker.script.edit']);
    expect(satisfies(workers, ['com.cloudflare.edge.worker.script.create'])).toBe(true);
    expect(satisfies(workers, ['com.cloudflare.edge.worker.script.list'])).toBe(true);
    const kvWrite = expandPermissions(['com.cloudflare.edge.storage.kv.key.update']);
    expect(satisfies(kvWrite, ['com.cloudflare.edge.storage.kv.key.read'])).toBe(true);
    expect(satisfies(kvWrite, ['com.cloudflare.edge.storage.kv.key.delete'])).toBe(false);
    expect(satisfies(expandPermissions([]), [])).toBe(true);
  });
});

describe('permissions driven by the OpenAPI document', () => {
  let fake: FakeCloudflare;
  let alice: FakeUser;
  let acme: FakeAccount;
  let zone: FakeZone;
  let otherZone: FakeZone;
  beforeAll(async () => {
    fake = await startFakeCloudflare({ spec: loadSpec(), budget: null });
    alice = fake.state.createUser({ email: 'alice@example.com' });
    acme = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
    zone = fake.state.createZone({ accountId: acme.id, name: 'example.com' });
    otherZone = fake.state.createZone({ accountId: acme.id, name: 'example.org' });
  });
  afterAll(async () => {
    await fake.close();
  });

  it("takes each route's permissions from x-cfPermissionsRequired where the document has them", () => {
    const table = new Map(fake.routePermissions().map((r) => [`${r.method} ${r.path}`, r]));
    expect(table.get('GET /zones/{zone_id}/dns_records')).toMatchObject({
      source: 'spec',
      permissions: ['#dns_records:read'],
      operationId: 'dns-records-for-a-zone-list-dns-records',
    });
    expect(table.get('PUT /accounts/{account_id}/workers/scripts/{script_name}')).toMatchObject({
      source: 'spec',
      permissions: ['com.cloudflare.edge.worker.script.create'],
    });
    expect(table.get('DELETE /user/tokens/{token_id}')).toMatchObject({
      source: 'spec',
      permissions: ['com.cloudflare.api.token.delete'],
    });
    // Not in the document (or listed without permissions): the built-in table.
    expect(table.get('POST /graphql')).toMatchObject({
      source: 'fallback',
      permissions: ['#analytics:read'],
    });
    expect(table.get('GET /accounts/{account_id}/tokens/verify')).toMatchObject({
      source: 'fallback',
      permissions: [],
    });
    expect(table.get('GET /zones')).toMatchObject({ source: 'fallback', operationId: 'zones-get' });
  });

  it('keeps the built-in table identical to the document for every route the document covers', () => {
    const index = indexSpecPermissions(loadSpec());
    for (const route of FAKE_CF_ROUTES) {
      const found = index.lookup(route.method, route.path);
      if (found.found && found.permissions) {
        expect({ route: `${route.method} ${route.path}`, permissions: route.fallbackPermissions }).toEqual({
          route: `${route.method} ${route.path}`,
          permissions: found.permissions,
        });
      }
    }
  });

  it('uses only keys the document knows in its permission groups', () => {
    const vocabulary = indexSpecPermissions(loadSpec()).vocabulary;
    for (const keys of Object.values(FAKE_CF_PERMISSION_GROUPS))
      for (const key of keys) expect(vocabulary).toContain(key);
  });

  it("refuses a request lacking the permission with 403 and Cloudflare's error", async () => {
    const readOnly = fake.state.createUserToken({ userId: alice.id, permissions: ['#dns_records:read'] });
    const list = await api(fake.url, { token: readOnly.value }, 'GET', `/zones/${zone.id}/dns_records`);
    expect(list.status).toBe(200);
    const create = await api(fake.url, { token: readOnly.value }, 'POST', `/zones/${zone.id}/dns_records`, {
      body: { type: 'A', name: 'www', content: '192.0.2.1' },
    });
    expect(create.status).toBe(403);
    expect(create.json).toEqual({
      success: false,
      errors: [{ code: 10000, message: 'Authentication error' }],
      messages: [],
      result: null,
    });
    const workers = await api(
      fake.url,
      { token: readOnly.value },
      'GET',
      `/accounts/${acme.id}/workers/scripts`,
    );
    expect(workers.status).toBe(403);
    expect(workers.json.errors?.[0]).toEqual({
      code: 9109,
      message: 'Unauthorized to access requested resource',
    });
    const user = await api(fake.url, { token: readOnly.value }, 'GET', '/user');
    expect(user.status).toBe(403);
    expect(fake.requests().at(-1)).toMatchObject({ status: 403, tokenId: readOnly.id });
  });

  it('honours :edit implying :read', async () => {
    const editor = fake.state.createUserToken({ userId: alice.id, permissions: ['#dns_records:edit'] });
    expect(
      (await api(fake.url, { token: editor.value }, 'GET', `/zones/${zone.id}/dns_records`)).status,
    ).toBe(200);
  });

  it('limits a token to the zones and accounts its policy names', async () => {
    const scoped = fake.state.createUserToken({
      userId: alice.id,
      permissions: ['#zone:read', '#dns_records:read'],
      zones: [zone.id],
    });
    expect((await api(fake.url, { token: scoped.value }, 'GET', `/zones/${zone.id}`)).status).toBe(200);
    const other = await api(fake.url, { token: scoped.value }, 'GET', `/zones/${otherZone.id}/dns_records`);
    expect(other.status).toBe(403);
    const listed = await api(fake.url, { token: scoped.value }, 'GET', '/zones');
    expect((listed.json.result as Array<{ id: string }>).map((z) => z.id)).toEqual([zone.id]);
    // A zone-only policy grants nothing at the account level.
    const kv = await api(
      fake.url,
      { token: scoped.value },
      'GET',
      `/accounts/${acme.id}/storage/kv/namespaces`,
    );
    expect(kv.status).toBe(403);

    const multi = fake.state.createUserToken({
      userId: alice.id,
      policies: [
        { permissions: ['#dns_records:edit'], zones: [zone.id] },
        { permissions: ['com.cloudflare.edge.storage.kv.namespace.list'], accounts: [acme.id] },
      ],
    });
    expect(
      (await api(fake.url, { token: multi.value }, 'GET', `/accounts/${acme.id}/storage/kv/namespaces`))
        .status,
    ).toBe(200);
    expect(
      (await api(fake.url, { token: multi.value }, 'GET', `/zones/${otherZone.id}/dns_records`)).status,
    ).toBe(403);
  });

  it('answers 7003 for ids the credential cannot reach at all', async () => {
    const token = fake.state.createUserToken({ userId: alice.id, permissions: ['#zone:read'] });
    const bogus = await api(fake.url, { token: token.value }, 'GET', `/zones/${'0'.repeat(32)}`);
    expect(bogus.status).toBe(404);
    expect(bogus.json.errors).toEqual([
      {
        code: 7003,
        message: `Could not route to /zones/${'0'.repeat(32)}, perhaps your object identifier is invalid?`,
      },
    ]);
    const bob = fake.state.createUser({ email: 'bob@example.com' });
    const bobs = fake.state.createAccount({ name: 'Bob Inc', members: [bob.id] });
    const bobZone = fake.state.createZone({ accountId: bobs.id, name: 'bob.example' });
    expect((await api(fake.url, { token: token.value }, 'GET', `/zones/${bobZone.id}`)).status).toBe(404);
  });

  it('refuses permission keys the document does not know', () => {
    expect(() => fake.state.createUserToken({ userId: alice.id, permissions: ['#dns_record:edit'] })).toThrow(
      /not a permission key of the OpenAPI document/,
    );
    expect(() => fake.state.createUserToken({ userId: alice.id, permissions: ['DNS Write'] })).toThrow(
      /not a permission key/,
    );
  });
});

describe('permissions without the document', () => {
  it('falls back to the built-in table', async () => {
    const fake = await startFakeCloudflare({ budget: null });
    try {
      expect(fake.routePermissions().every((r) => r.source === 'fallback')).toBe(true);
      const alice = fake.state.createUser({ email: 'alice@example.com' });
      const acme = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
      const zone = fake.state.createZone({ accountId: acme.id, name: 'example.com' });
      const token = fake.state.createUserToken({ userId: alice.id, permissions: ['#zone:read'] });
      expect((await api(fake.url, { token: token.value }, 'GET', `/zones/${zone.id}`)).status).toBe(200);
      expect(
        (await api(fake.url, { token: token.value }, 'GET', `/zones/${zone.id}/dns_records`)).status,
      ).toBe(403);
    } finally {
      await fake.close();
    }
  });
});
