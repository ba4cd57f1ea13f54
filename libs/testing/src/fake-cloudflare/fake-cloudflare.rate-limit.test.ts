import { ManualClock } from '@warden/core';
import { describe, expect, it } from 'vitest';
import { startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflareOptions } from './fake-cloudflare.server.ts';
import { FAKE_CF_ALL_PERMISSIONS, seedDemo } from './fake-cloudflare.seed.ts';
import { api } from './fake-cloudflare.test-helpers.ts';
import type { ApiResponse } from './fake-cloudflare.test-helpers.ts';

const rate = (r: ApiResponse) => r.headers.get('ratelimit');
const policy = (r: ApiResponse) => r.headers.get('ratelimit-policy');

async function withFake(
  options: FakeCloudflareOptions,
  run: (fake: Awaited<ReturnType<typeof startFakeCloudflare>>) => Promise<void>,
) {
  const fake = await startFakeCloudflare(options);
  try {
    await run(fake);
  } finally {
    await fake.close();
  }
}

describe('fake Cloudflare: rate limits', () => {
  it("keeps one window per user across all of the user's credentials, with Cloudflare's headers", async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    await withFake(
      { budget: { requests: 5, windowSeconds: 300 }, lockoutSeconds: 60, clock },
      async (fake) => {
        const alice = fake.state.createUser({ email: 'alice@example.com' });
        const acct = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
        const t1 = fake.state.createUserToken({ userId: alice.id, permissions: FAKE_CF_ALL_PERMISSIONS });
        const t2 = fake.state.createUserToken({ userId: alice.id, permissions: ['#zone:read'] });
        const acctToken = fake.state.createAccountToken({
          accountId: acct.id,
          permissions: ['#organization:read'],
        });

        const seen: Array<string | null> = [];
        for (let i = 0; i < 3; i++) seen.push(rate(await api(fake.url, { token: t1.value }, 'GET', '/user')));
        expect(seen).toEqual(['"default";r=4;t=300', '"default";r=3;t=300', '"default";r=2;t=300']);
        clock.advance(60_000);
        const zones = await api(fake.url, { token: t2.value }, 'GET', '/zones');
        expect(rate(zones)).toBe('"default";r=1;t=300');
        expect(policy(zones)).toBe('"default";q=5;w=300');
        const key = await api(fake.url, { email: alice.email, key: alice.globalApiKey }, 'GET', '/user');
        expect([key.status, rate(key)]).toEqual([200, '"default";r=0;t=300']);
        expect(fake.quota({ userId: alice.id })).toEqual({ remaining: 0, resetSeconds: 300 });
        expect(fake.quota({ accountId: acct.id })).toEqual({ remaining: 5, resetSeconds: 0 });

        // One request too many: 429, and the user is locked out (every credential, GraphQL too).
        const limited = await api(fake.url, { token: t2.value }, 'GET', '/zones');
        expect(limited.status).toBe(429);
        expect(limited.headers.get('retry-after')).toBe('240');
        expect(rate(limited)).toBe('"default";r=0;t=240');
        expect(limited.json).toEqual({
          success: false,
          errors: [{ code: 971, message: 'Please wait and consider throttling your request speed' }],
          messages: [],
          result: null,
        });
        const gql = await api(fake.url, { token: t1.value }, 'POST', '/graphql', {
          body: { query: '{ viewer { zones { zoneTag } } }' },
        });
        expect(gql.status).toBe(429);
        // Account-owned tokens have the account's own window.
        expect((await api(fake.url, { token: acctToken.value }, 'GET', `/accounts/${acct.id}`)).status).toBe(
          200,
        );

        clock.advance(60_000);
        // The lockout is over, but the window is still full: another excess, another lockout.
        expect((await api(fake.url, { token: t1.value }, 'GET', '/user')).status).toBe(429);
        clock.advance(180_000);
        // 300 s after the first three they left the window; the lockout (60 s) has passed.
        for (let i = 0; i < 3; i++)
          expect((await api(fake.url, { token: t1.value }, 'GET', '/user')).status).toBe(200);
        expect((await api(fake.url, { token: t1.value }, 'GET', '/user')).status).toBe(429);
        expect(
          fake
            .requests()
            .filter((r) => r.status === 429)
            .map((r) => r.limitedBy),
        ).toEqual(['budget', 'lockout', 'budget', 'budget']);
      },
    );
  });

  it('counts GraphQL queries apart, without a lockout', async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    await withFake({ graphqlBudget: { requests: 2, windowSeconds: 300 }, clock }, async (fake) => {
      const demo = seedDemo(fake.state);
      const gql = () =>
        api(fake.url, { token: demo.userToken.value }, 'POST', '/graphql', {
          body: { query: '{ viewer { zones { zoneTag } } }' },
        });
      const first = await gql();
      expect(first.status).toBe(200);
      expect(rate(first)).toBe('"graphql";r=1;t=300');
      expect(policy(first)).toBe('"graphql";q=2;w=300');
      expect((await gql()).status).toBe(200);
      const limited = await gql();
      expect([limited.status, limited.headers.get('retry-after')]).toEqual([429, '300']);
      const rest = await api(fake.url, { token: demo.userToken.value }, 'GET', '/user');
      expect([rest.status, rate(rest)]).toEqual([200, '"default";r=1199;t=300']);
      expect(fake.requests().at(-2)?.limitedBy).toBe('graphql');
    });
  });

  it('limits requests per client IP per second, every user and unauthenticated calls together', async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    await withFake({ perIpPerSecond: 3, clock }, async (fake) => {
      const demo = seedDemo(fake.state);
      expect((await api(fake.url, { token: demo.userToken.value }, 'GET', '/user')).status).toBe(200);
      expect((await api(fake.url, { token: demo.accountToken.value }, 'GET', '/accounts')).status).toBe(200);
      expect((await api(fake.url, null, 'GET', '/user')).status).toBe(400);
      clock.advance(999);
      const limited = await api(fake.url, { token: demo.userToken.value }, 'GET', '/user');
      expect([limited.status, limited.headers.get('retry-after')]).toEqual([429, '1']);
      expect(fake.requests().at(-1)).toMatchObject({ limitedBy: 'ip', clientIp: '127.0.0.1' });
      clock.advance(1);
      expect((await api(fake.url, { token: demo.userToken.value }, 'GET', '/user')).status).toBe(200);
    });
  });

  it("has Cloudflare's limits by default, none with budget: null, and changes them at runtime", async () => {
    await withFake({}, async (fake) => {
      expect(fake.limits()).toEqual({
        budget: { requests: 1200, windowSeconds: 300 },
        graphql: { requests: 320, windowSeconds: 300 },
        perIpPerSecond: 200,
        lockoutSeconds: 300,
      });
    });
    await withFake({ budget: null }, async (fake) => {
      expect(fake.limits()).toEqual({
        budget: null,
        graphql: null,
        perIpPerSecond: null,
        lockoutSeconds: 300,
      });
      const demo = seedDemo(fake.state);
      const call = () => api(fake.url, { token: demo.userToken.value }, 'GET', '/user');
      expect(rate(await call())).toBeNull();
      fake.setLimits({ budget: { requests: 1, windowSeconds: 60 }, lockoutSeconds: 0 });
      expect((await call()).status).toBe(200);
      const limited = await call();
      expect([limited.status, limited.headers.get('retry-after')]).toEqual([429, '60']);
      fake.setBudget(null);
      expect((await call()).status).toBe(200);
    });
  });
});
