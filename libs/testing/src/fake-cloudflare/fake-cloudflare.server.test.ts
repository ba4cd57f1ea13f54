import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare.server.ts';
import { seedDemo } from './fake-cloudflare.seed.ts';
import type { FakeDemo } from './fake-cloudflare.seed.ts';
import { api } from './fake-cloudflare.test-helpers.ts';

const RAY = /^[0-9a-f]{16}-SJC$/;

describe('fake Cloudflare server: envelope, routing, pagination, log', () => {
  let fake: FakeCloudflare;
  let demo: FakeDemo;
  beforeAll(async () => {
    fake = await startFakeCloudflare({ budget: null });
    demo = seedDemo(fake.state);
  });
  afterAll(async () => {
    await fake.close();
  });

  it('serves under /client/v4 on 127.0.0.1 with a cf-ray on every answer', async () => {
    expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/client\/v4$/);
    const ok = await api(fake.url, { token: demo.userToken.value }, 'GET', '/user/tokens/verify');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('cf-ray')).toMatch(RAY);
    expect(ok.json).toEqual({
      result: { id: demo.userToken.id, status: 'active' },
      success: true,
      errors: [],
      messages: [{ code: 10000, message: 'This API Token is valid and active' }],
    });
    const outside = await api(fake.origin, null, 'GET', '/user');
    expect(outside.headers.get('cf-ray')).toMatch(RAY);
    expect(outside.status).toBe(404);
  });

  it('answers unknown routes with 7000 and wrong methods with 405', async () => {
    const unknown = await api(fake.url, { token: demo.userToken.value }, 'GET', '/no/such/thing');
    expect(unknown.status).toBe(404);
    expect(unknown.json).toEqual({
      success: false,
      errors: [{ code: 7000, message: 'No route for that URI' }],
      messages: [],
      result: null,
    });
    const wrong = await api(fake.url, { token: demo.userToken.value }, 'POST', `/zones/${demo.zone.id}`);
    expect(wrong.status).toBe(405);
    expect(wrong.json.errors?.[0]?.code).toBe(10405);
    expect(wrong.headers.get('allow')).toBe('GET, DELETE');
  });

  it('paginates lists with page/per_page and result_info', async () => {
    for (let i = 0; i < 7; i++) {
      fake.state.createDnsRecord({
        zoneId: demo.zone.id,
        type: 'TXT',
        name: `page-${i}`,
        content: `value ${i}`,
      });
    }
    const path = `/zones/${demo.zone.id}/dns_records?type=TXT&order=name`;
    const first = await api(fake.url, { token: demo.userToken.value }, 'GET', `${path}&per_page=3`);
    expect(first.json.result_info).toEqual({
      page: 1,
      per_page: 3,
      count: 3,
      total_count: 8,
      total_pages: 3,
    });
    const last = await api(fake.url, { token: demo.userToken.value }, 'GET', `${path}&per_page=3&page=3`);
    expect(last.json.result_info).toEqual({ page: 3, per_page: 3, count: 2, total_count: 8, total_pages: 3 });
    const names = [first, last].flatMap((r) => (r.json.result as Array<{ name: string }>).map((x) => x.name));
    expect(names).toContain('page-0.example.com');
    expect(names).toContain('page-6.example.com');
    // Zones clamp per_page to the documented 5..50.
    const zones = await api(fake.url, { token: demo.userToken.value }, 'GET', '/zones?per_page=1000');
    expect(zones.json.result_info).toMatchObject({
      page: 1,
      per_page: 50,
      count: 1,
      total_count: 1,
      total_pages: 1,
    });
  });

  it('logs every request with principal, token, status and ray, and counts what reached it', async () => {
    fake.clearRequests();
    const a = await api(fake.url, { token: demo.accountToken.value }, 'GET', `/accounts/${demo.account.id}`);
    const b = await api(fake.url, { email: demo.user.email, key: demo.user.globalApiKey }, 'GET', '/user');
    await api(fake.url, null, 'GET', '/user');
    expect(fake.requestCount()).toBe(3);
    const log = fake.requests();
    expect(log).toHaveLength(3);
    expect(log[0]).toMatchObject({
      method: 'GET',
      path: `/accounts/${demo.account.id}`,
      principalKind: 'account_token',
      principalId: demo.account.id,
      tokenId: demo.accountToken.id,
      status: 200,
      cfRay: a.headers.get('cf-ray'),
    });
    expect(log[1]).toMatchObject({
      principalKind: 'global_api_key',
      principalId: demo.user.id,
      tokenId: null,
      cfRay: b.headers.get('cf-ray'),
    });
    expect(log[2]).toMatchObject({ principalKind: null, status: 400 });
    expect(log[0]?.at).toBeInstanceOf(Date);
  });
});

describe('fake Cloudflare server: fault injection', () => {
  let fake: FakeCloudflare;
  let demo: FakeDemo;
  beforeAll(async () => {
    fake = await startFakeCloudflare();
    demo = seedDemo(fake.state);
  });
  afterEach(() => {
    fake.faults.reset();
  });
  afterAll(async () => {
    await fake.close();
  });
  const call = () => api(fake.url, { token: demo.userToken.value }, 'GET', '/user/tokens/verify');

  it('fails the next N requests with the chosen 5xx, then recovers', async () => {
    fake.faults.failNext(2, 502);
    fake.faults.failNext(1);
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await call()).status);
    expect(statuses).toEqual([502, 502, 503, 200]);
  });

  it('adds latency to every answer', async () => {
    fake.faults.setLatencyMs(120);
    const started = performance.now();
    expect((await call()).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(100);
  });

  it('drops connections while unreachable and counts only requests that reached it', async () => {
    fake.clearRequests();
    fake.faults.setUnreachable(true);
    await expect(call()).rejects.toThrow();
    fake.faults.setUnreachable(false);
    expect((await call()).status).toBe(200);
    expect(fake.requestCount()).toBe(1);
  });

  it('can hang instead, so callers hit their own timeout', async () => {
    fake.faults.setUnreachable('hang');
    await expect(
      fetch(`${fake.url}/user/tokens/verify`, {
        headers: { authorization: `Bearer ${demo.userToken.value}` },
        signal: AbortSignal.timeout(200),
      }),
    ).rejects.toThrow(/timeout|aborted/i);
    fake.faults.setUnreachable(false);
    expect((await call()).status).toBe(200);
  });

  it('reset() empties state, log and faults', async () => {
    const other = await startFakeCloudflare();
    try {
      const d = seedDemo(other.state);
      other.faults.failNext(5);
      await api(other.url, { token: d.userToken.value }, 'GET', '/user');
      other.reset();
      expect(other.requests()).toEqual([]);
      expect(other.requestCount()).toBe(0);
      expect(other.state.users.size).toBe(0);
      const again = seedDemo(other.state);
      expect((await api(other.url, { token: again.userToken.value }, 'GET', '/user')).status).toBe(200);
    } finally {
      await other.close();
    }
  });
});
