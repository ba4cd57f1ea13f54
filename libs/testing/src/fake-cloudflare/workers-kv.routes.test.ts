import { ManualClock } from '@warden/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare.server.ts';
import { FAKE_CF_ALL_PERMISSIONS } from './fake-cloudflare.seed.ts';
import type { FakeAccount } from './fake-cloudflare.state.ts';
import { api, loadSpec } from './fake-cloudflare.test-helpers.ts';
import type { Credential } from './fake-cloudflare.test-helpers.ts';

describe('Workers scripts and KV', () => {
  const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
  let fake: FakeCloudflare;
  let acme: FakeAccount;
  let cred: Credential;
  beforeAll(async () => {
    fake = await startFakeCloudflare({ spec: loadSpec(), budget: null, clock });
    const alice = fake.state.createUser({ email: 'alice@example.com' });
    acme = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
    cred = {
      token: fake.state.createAccountToken({
        accountId: acme.id,
        permissions: FAKE_CF_ALL_PERMISSIONS.filter((p) => !p.startsWith('com.cloudflare.api.user')),
      }).value,
    };
  });
  afterAll(async () => {
    await fake.close();
  });

  it('uploads an ES module Worker as multipart (metadata + module part), lists, downloads and deletes it', async () => {
    const source = 'export default { async fetch() { return new Response("hi"); } };\n';
    const form = new FormData();
    form.append(
      'metadata',
      new Blob([JSON.stringify({ main_module: 'worker.js', compatibility_date: '2025-06-01' })], {
        type: 'application/json',
      }),
    );
    form.append('worker.js', new Blob([source], { type: 'application/javascript+module' }), 'worker.js');
    const path = `/accounts/${acme.id}/workers/scripts/my-worker`;
    const put = await api(fake.url, cred, 'PUT', path, { rawBody: form });
    expect(put.status).toBe(200);
    expect(put.json.result).toMatchObject({
      id: 'my-worker',
      handlers: ['fetch'],
      has_modules: true,
      compatibility_date: '2025-06-01',
    });
    expect((put.json.result as { etag: string }).etag).toMatch(/^[0-9a-f]{64}$/);

    const list = await api(fake.url, cred, 'GET', `/accounts/${acme.id}/workers/scripts`);
    expect((list.json.result as Array<{ id: string }>).map((s) => s.id)).toEqual(['my-worker']);

    const download = await api(fake.url, cred, 'GET', path);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toBe('application/javascript');
    expect(download.text).toBe(source);

    expect((await api(fake.url, cred, 'DELETE', path)).json).toMatchObject({ success: true, result: null });
    const gone = await api(fake.url, cred, 'GET', path);
    expect(gone.status).toBe(404);
    expect(gone.json.errors?.[0]?.code).toBe(10007);
  });

  it('accepts a service-worker script as a raw application/javascript body', async () => {
    const source = "addEventListener('fetch', (e) => e.respondWith(new Response('ok')));";
    const path = `/accounts/${acme.id}/workers/scripts/raw-worker`;
    const put = await api(fake.url, cred, 'PUT', path, {
      rawBody: source,
      contentType: 'application/javascript',
    });
    expect(put.json.result).toMatchObject({ id: 'raw-worker', has_modules: false, handlers: ['fetch'] });
    expect((await api(fake.url, cred, 'GET', path)).text).toBe(source);
  });

  it('refuses broken uploads like the real API', async () => {
    const base = `/accounts/${acme.id}/workers/scripts`;
    const noModule = new FormData();
    noModule.append('metadata', JSON.stringify({ main_module: 'missing.js' }));
    noModule.append('other.js', new Blob(['x'], { type: 'application/javascript+module' }), 'other.js');
    const missing = await api(fake.url, cred, 'PUT', `${base}/w1`, { rawBody: noModule });
    expect(missing.status).toBe(400);
    expect(missing.json.errors?.[0]).toEqual({ code: 10021, message: 'No such module "missing.js".' });
    const empty = await api(fake.url, cred, 'PUT', `${base}/w2`, {
      rawBody: '  ',
      contentType: 'application/javascript',
    });
    expect(empty.json.errors?.[0]?.message).toMatch(/No event handlers/);
    const badName = await api(fake.url, cred, 'PUT', `${base}/Bad_Name`, {
      rawBody: 'x()',
      contentType: 'application/javascript',
    });
    expect(badName.json.errors?.[0]?.code).toBe(10016);
  });

  it('round-trips raw KV bytes and lists keys with prefix and cursor', async () => {
    const created = await api(fake.url, cred, 'POST', `/accounts/${acme.id}/storage/kv/namespaces`, {
      body: { title: 'cache' },
    });
    expect(created.json.result).toMatchObject({ title: 'cache', supports_url_encoding: true });
    const ns = (created.json.result as { id: string }).id;
    const dupe = await api(fake.url, cred, 'POST', `/accounts/${acme.id}/storage/kv/namespaces`, {
      body: { title: 'cache' },
    });
    expect(dupe.json.errors?.[0]?.code).toBe(10014);

    const values = `/accounts/${acme.id}/storage/kv/namespaces/${ns}/values`;
    const bytes = Buffer.from([0, 1, 2, 254, 255, 10, 13]);
    const put = await api(fake.url, cred, 'PUT', `${values}/bin%2Fkey`, {
      rawBody: bytes,
      contentType: 'application/octet-stream',
    });
    expect(put.json).toMatchObject({ success: true });
    const got = await fetch(`${fake.url}${values}/bin%2Fkey`, {
      headers: { authorization: `Bearer ${(cred as { token: string }).token}` },
    });
    expect(got.headers.get('content-type')).toBe('application/octet-stream');
    expect(Buffer.from(await got.arrayBuffer())).toEqual(bytes);

    const form = new FormData();
    form.append('value', 'with metadata');
    form.append('metadata', JSON.stringify({ owner: 'alice' }));
    await api(fake.url, cred, 'PUT', `${values}/meta`, { rawBody: form });
    expect((await api(fake.url, cred, 'GET', `${values}/meta`)).text).toBe('with metadata');

    for (let i = 0; i < 12; i++) {
      await api(fake.url, cred, 'PUT', `${values}/user:${String(i).padStart(2, '0')}`, {
        rawBody: `v${i}`,
        contentType: 'text/plain',
      });
    }
    const keys = `/accounts/${acme.id}/storage/kv/namespaces/${ns}/keys`;
    const first = await api(fake.url, cred, 'GET', `${keys}?prefix=user:&limit=10`);
    expect((first.json.result as Array<{ name: string }>).map((k) => k.name)).toEqual(
      Array.from({ length: 10 }, (_, i) => `user:${String(i).padStart(2, '0')}`),
    );
    const cursor = first.json.result_info?.cursor as string;
    expect(cursor).not.toBe('');
    const second = await api(fake.url, cred, 'GET', `${keys}?prefix=user:&limit=10&cursor=${cursor}`);
    expect((second.json.result as Array<{ name: string }>).map((k) => k.name)).toEqual([
      'user:10',
      'user:11',
    ]);
    expect(second.json.result_info).toEqual({ count: 2, cursor: '' });
    const all = await api(fake.url, cred, 'GET', keys);
    expect(all.json.result).toContainEqual({ name: 'meta', metadata: { owner: 'alice' } });
    expect(all.json.result).toContainEqual({ name: 'bin/key' });

    expect((await api(fake.url, cred, 'DELETE', `${values}/meta`)).status).toBe(200);
    const missing = await api(fake.url, cred, 'GET', `${values}/meta`);
    expect(missing.status).toBe(404);
    expect(missing.json.errors).toEqual([{ code: 10009, message: "get: 'key not found'" }]);
  });

  it('expires KV values with expiration_ttl on the injected clock', async () => {
    const ns = fake.state.createKvNamespace({ accountId: acme.id, title: 'ttl' });
    const path = `/accounts/${acme.id}/storage/kv/namespaces/${ns.id}/values/session`;
    const tooShort = await api(fake.url, cred, 'PUT', `${path}?expiration_ttl=10`, {
      rawBody: 'x',
      contentType: 'text/plain',
    });
    expect(tooShort.status).toBe(400);
    await api(fake.url, cred, 'PUT', `${path}?expiration_ttl=60`, {
      rawBody: 'x',
      contentType: 'text/plain',
    });
    expect((await api(fake.url, cred, 'GET', path)).text).toBe('x');
    clock.advance(60_000);
    expect((await api(fake.url, cred, 'GET', path)).status).toBe(404);
  });

  it('lists and deletes namespaces', async () => {
    const list = await api(fake.url, cred, 'GET', `/accounts/${acme.id}/storage/kv/namespaces?per_page=5`);
    const titles = (list.json.result as Array<{ title: string }>).map((n) => n.title);
    expect(titles).toEqual([...titles].sort());
    expect(list.json.result_info).toMatchObject({ page: 1, per_page: 5 });
    const ns = fake.state.createKvNamespace({ accountId: acme.id, title: 'doomed' });
    expect(
      (await api(fake.url, cred, 'DELETE', `/accounts/${acme.id}/storage/kv/namespaces/${ns.id}`)).status,
    ).toBe(200);
    expect(
      (await api(fake.url, cred, 'GET', `/accounts/${acme.id}/storage/kv/namespaces/${ns.id}`)).status,
    ).toBe(404);
  });
});
