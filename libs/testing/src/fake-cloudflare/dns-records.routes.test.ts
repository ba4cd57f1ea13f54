import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeAccount } from './fake-cloudflare.state.ts';
import { api, loadSpec } from './fake-cloudflare.test-helpers.ts';
import type { Credential } from './fake-cloudflare.test-helpers.ts';

describe('zones and DNS records', () => {
  let fake: FakeCloudflare;
  let acme: FakeAccount;
  let cred: Credential;
  beforeAll(async () => {
    fake = await startFakeCloudflare({ spec: loadSpec(), budget: null });
    const alice = fake.state.createUser({ email: 'alice@example.com' });
    acme = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
    const token = fake.state.createUserToken({
      userId: alice.id,
      permissions: ['#zone:edit', '#dns_records:edit'],
    });
    cred = { token: token.value };
  });
  afterAll(async () => {
    await fake.close();
  });

  it('creates, lists with filters, reads and deletes zones', async () => {
    const created = await api(fake.url, cred, 'POST', '/zones', {
      body: { name: 'Shop.Example.com', account: { id: acme.id }, type: 'full' },
    });
    expect(created.status).toBe(200);
    const zone = created.json.result as {
      id: string;
      name: string;
      status: string;
      account: unknown;
      name_servers: string[];
    };
    expect(zone).toMatchObject({
      name: 'shop.example.com',
      status: 'pending',
      account: { id: acme.id, name: 'Acme' },
    });
    expect(zone.id).toMatch(/^[0-9a-f]{32}$/);
    expect(zone.name_servers).toHaveLength(2);
    fake.state.createZone({ accountId: acme.id, name: 'acme.test' });

    const dupe = await api(fake.url, cred, 'POST', '/zones', {
      body: { name: 'shop.example.com', account: { id: acme.id } },
    });
    expect(dupe.status).toBe(400);
    expect(dupe.json.errors?.[0]).toEqual({ code: 1061, message: 'shop.example.com already exists' });
    const invalid = await api(fake.url, cred, 'POST', '/zones', {
      body: { name: 'localhost', account: { id: acme.id } },
    });
    expect(invalid.json.errors?.[0]?.code).toBe(1099);
    const malformed = await api(fake.url, cred, 'POST', '/zones', {
      rawBody: '{nope',
      contentType: 'application/json',
    });
    expect(malformed.json.errors?.[0]).toEqual({ code: 6007, message: 'Malformed JSON in request body' });

    const byName = await api(fake.url, cred, 'GET', '/zones?name=shop.example.com');
    expect((byName.json.result as Array<{ id: string }>).map((z) => z.id)).toEqual([zone.id]);
    const byStatus = await api(fake.url, cred, 'GET', `/zones?status=active&account.id=${acme.id}`);
    expect((byStatus.json.result as Array<{ name: string }>).map((z) => z.name)).toEqual(['acme.test']);
    const contains = await api(fake.url, cred, 'GET', '/zones?name=contains:example');
    expect(contains.json.result_info).toMatchObject({ total_count: 1 });

    expect((await api(fake.url, cred, 'GET', `/zones/${zone.id}`)).json.result).toMatchObject({
      id: zone.id,
    });
    const deleted = await api(fake.url, cred, 'DELETE', `/zones/${zone.id}`);
    expect(deleted.json.result).toEqual({ id: zone.id });
    expect((await api(fake.url, cred, 'GET', `/zones/${zone.id}`)).status).toBe(404);
  });

  it('runs the DNS record lifecycle: create, filter, read, put, patch, delete', async () => {
    const zone = fake.state.createZone({ accountId: acme.id, name: 'dns.example' });
    const base = `/zones/${zone.id}/dns_records`;
    const a = await api(fake.url, cred, 'POST', base, {
      body: { type: 'A', name: 'www', content: '192.0.2.1', ttl: 3600, comment: 'web' },
    });
    expect(a.status).toBe(200);
    const record = a.json.result as Record<string, unknown> & { id: string };
    expect(record).toMatchObject({
      name: 'www.dns.example',
      type: 'A',
      content: '192.0.2.1',
      ttl: 3600,
      proxied: false,
      proxiable: true,
      comment: 'web',
      tags: [],
    });
    await api(fake.url, cred, 'POST', base, {
      body: { type: 'MX', name: '@', content: 'mail.dns.example', priority: 10 },
    });
    await api(fake.url, cred, 'POST', base, {
      body: { type: 'TXT', name: 'dns.example', content: 'hello world' },
    });

    const byType = await api(fake.url, cred, 'GET', `${base}?type=MX`);
    expect(byType.json.result).toMatchObject([{ type: 'MX', name: 'dns.example', priority: 10 }]);
    const byName = await api(fake.url, cred, 'GET', `${base}?name=www.dns.example`);
    expect((byName.json.result as unknown[]).length).toBe(1);
    const byContent = await api(fake.url, cred, 'GET', `${base}?content=hello%20world`);
    expect(byContent.json.result).toMatchObject([{ type: 'TXT' }]);
    const all = await api(fake.url, cred, 'GET', base);
    expect(all.json.result_info).toEqual({
      page: 1,
      per_page: 100,
      count: 3,
      total_count: 3,
      total_pages: 1,
    });

    expect((await api(fake.url, cred, 'GET', `${base}/${record.id}`)).json.result).toMatchObject({
      id: record.id,
    });
    const put = await api(fake.url, cred, 'PUT', `${base}/${record.id}`, {
      body: { type: 'A', name: 'www', content: '192.0.2.2', proxied: true, ttl: 300 },
    });
    expect(put.json.result).toMatchObject({
      id: record.id,
      content: '192.0.2.2',
      proxied: true,
      ttl: 1,
      comment: null,
    });
    const patch = await api(fake.url, cred, 'PATCH', `${base}/${record.id}`, {
      body: { comment: 'patched' },
    });
    expect(patch.json.result).toMatchObject({ content: '192.0.2.2', proxied: true, comment: 'patched' });

    const del = await api(fake.url, cred, 'DELETE', `${base}/${record.id}`);
    expect(del.json.result).toEqual({ id: record.id });
    const gone = await api(fake.url, cred, 'GET', `${base}/${record.id}`);
    expect(gone.status).toBe(404);
    expect(gone.json.errors).toEqual([{ code: 81044, message: 'Record does not exist.' }]);
  });

  it('validates records like Cloudflare', async () => {
    const zone = fake.state.createZone({ accountId: acme.id, name: 'valid.example' });
    const post = (body: unknown) => api(fake.url, cred, 'POST', `/zones/${zone.id}/dns_records`, { body });
    const cases: Array<[unknown, number, RegExp]> = [
      [{ type: 'A', name: 'x', content: '300.1.1.1' }, 9005, /valid IPv4/],
      [{ type: 'AAAA', name: 'x', content: '192.0.2.1' }, 9006, /valid IPv6/],
      [{ type: 'CNAME', name: 'x', content: 'not a host' }, 9007, /CNAME/],
      [{ type: 'BOGUS', name: 'x', content: 'y' }, 9020, /Invalid DNS record type/],
      [{ type: 'A', name: 'bad_label-.', content: '192.0.2.1' }, 9000, /DNS name is invalid/],
      [{ type: 'A', name: 'x', content: '192.0.2.1', ttl: 30 }, 9021, /Invalid TTL/],
      [{ type: 'A', name: 'x', content: '192.0.2.1', proxied: 'yes' }, 9003, /proxied/],
      [{ type: 'TXT', name: 'x', content: 'y', proxied: true }, 9004, /cannot be proxied/],
      [{ type: 'MX', name: 'x', content: 'mail.valid.example' }, 9100, /Priority/],
      [{ type: 'TXT', name: 'x', content: 'y'.repeat(2049) }, 9101, /too long/],
    ];
    for (const [body, code, message] of cases) {
      const response = await post(body);
      expect({ body, status: response.status }).toEqual({ body, status: 400 });
      expect(response.json.errors?.[0]?.code).toBe(code);
      expect(response.json.errors?.[0]?.message).toMatch(message);
    }
    expect(fake.state.listDnsRecords(zone.id)).toEqual([]);
  });

  it('refuses duplicates and A/AAAA/CNAME clashes', async () => {
    const zone = fake.state.createZone({ accountId: acme.id, name: 'dupe.example' });
    const post = (body: unknown) => api(fake.url, cred, 'POST', `/zones/${zone.id}/dns_records`, { body });
    expect((await post({ type: 'A', name: 'www', content: '192.0.2.1' })).status).toBe(200);
    expect((await post({ type: 'A', name: 'www', content: '192.0.2.2' })).status).toBe(200);
    const same = await post({ type: 'A', name: 'www.dupe.example', content: '192.0.2.1' });
    expect(same.json.errors).toEqual([{ code: 81057, message: 'Record already exists.' }]);
    const cname = await post({ type: 'CNAME', name: 'www', content: 'elsewhere.example' });
    expect(cname.status).toBe(400);
    expect(cname.json.errors).toEqual([
      { code: 81053, message: 'An A, AAAA, or CNAME record with that host already exists.' },
    ]);
    expect((await post({ type: 'CNAME', name: 'blog', content: 'elsewhere.example' })).status).toBe(200);
    expect((await post({ type: 'AAAA', name: 'blog', content: '2001:db8::1' })).json.errors?.[0]?.code).toBe(
      81053,
    );
    // TXT next to a CNAME is not an A/AAAA/CNAME clash.
    expect((await post({ type: 'TXT', name: 'www', content: 'ok' })).status).toBe(200);

    // An update into a clash is refused too.
    const blogA = await post({ type: 'A', name: 'api', content: '192.0.2.9' });
    const id = (blogA.json.result as { id: string }).id;
    const clash = await api(fake.url, cred, 'PATCH', `/zones/${zone.id}/dns_records/${id}`, {
      body: { name: 'blog' },
    });
    expect(clash.json.errors?.[0]?.code).toBe(81053);
  });
});
