/**
 * attack22b — 5aba3f9: a connect refused by Cloudflare's 429 without Retry-After names the wait
 * the budget blocks the user for (blockSecondsOf). Does the budget then block that user?
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

describe('attack22b: credential verification and the budget on a 429', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let tenant: { tenantId: string; apiKey: string };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    tenant = await t.createTenant('Acme SaaS');
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  const create = (payload: object) =>
    t.app.inject({
      method: 'POST',
      url: '/api/v1/connected_accounts',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      payload,
    });

  function userToken(userId: string) {
    const token = cf.state.createUserToken({
      userId,
      permissions: ['#zone:read', 'com.cloudflare.api.user.read'],
    });
    t.secrets.add(token.value);
    return token;
  }

  /** Fails the `n`-th request (1-based) Cloudflare receives from now on with a 429 of its API-wide limit. */
  async function fail429At(
    n: number,
    run: () => Promise<{ statusCode: number; headers: Record<string, unknown>; json(): unknown }>,
  ) {
    // Long enough that the request is still held when the fault is armed, however busy the machine.
    cf.faults.setLatencyMs(500);
    const base = cf.requestCount();
    const pending = run();
    await expect
      .poll(() => cf.requestCount(), { timeout: 5_000, interval: 5 })
      .toBeGreaterThanOrEqual(base + n); // arrived, still in the fake's latency
    cf.faults.failNext(1, 429, { code: 971 });
    try {
      return await pending;
    } finally {
      cf.faults.reset();
    }
  }

  it('a 429 after Cloudflare named the user (GET /accounts): the named five-minute wait is the one the budget blocks that user for', async () => {
    const alice = cf.state.createUser({ email: `alice-${Date.now()}@example.com` });
    cf.state.createAccount({ name: 'Acme', members: [alice.id] });
    // Alice already has an account connected: its requests go through the budget as cf:user:<alice>.
    const first = await create({
      identifier: 'alice',
      authorization: { type: 'api_token', api_token: userToken(alice.id).value },
    });
    expect(first.statusCode).toBe(201);
    // A second token of hers: /user/tokens/verify (1), /user (2, names her), /accounts (3) -> 429 971.
    const limited = await fail429At(3, () =>
      create({
        identifier: 'alice-2',
        authorization: { type: 'api_token', api_token: userToken(alice.id).value },
      }),
    );
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('300');
    // The 429 came after GET /user had named her (the fake's log: path and status of the last three).
    expect(
      cf
        .requests()
        .slice(-3)
        .map((r) => `${r.path} ${r.status}`),
    ).toEqual(['/user/tokens/verify 200', '/user 200', '/accounts 429']);
    // The budget learnt Cloudflare's lockout for her: the next request for her is refused, not sent.
    const principal = `cf:user:${alice.id}`;
    const admitted = await t.container.rateBudget.admit({
      principal,
      tenantId: tenant.tenantId,
      kind: 'rest',
      spec: t.container.config.cloudflare.budget,
    });
    if (admitted.allowed) await t.container.rateBudget.release(admitted);
    expect(
      admitted.allowed
        ? 'admitted (sent into the lockout)'
        : `${admitted.reason} ~${Math.round(admitted.retryAfterMs / 1000)} s`,
    ).toMatch(/^blocked ~(29\d|300) s$/);
  });

  it('HELD?: a non-429 failure during verification (503, 500) is not turned into a rate limit', async () => {
    const bob = cf.state.createUser({ email: `bob-${Date.now()}@example.com` });
    cf.state.createAccount({ name: 'Bob Co', members: [bob.id] });
    for (const status of [503, 500, 502]) {
      cf.faults.failNext(1, status, { code: 971 });
      try {
        const res = await create({
          identifier: 'bob',
          authorization: { type: 'api_token', api_token: userToken(bob.id).value },
        });
        expect(res.statusCode).not.toBe(429);
        expect(res.headers['retry-after']).toBeUndefined();
      } finally {
        cf.faults.reset();
      }
    }
  });

  it('HELD?: a 429 with Retry-After keeps Cloudflare’s figure; a 429 of another limit names a second', async () => {
    const carol = cf.state.createUser({ email: `carol-${Date.now()}@example.com` });
    cf.state.createAccount({ name: 'Carol Co', members: [carol.id] });
    cf.faults.failNext(1, 429, { code: 971, retryAfterSeconds: 7 });
    try {
      const res = await create({
        identifier: 'carol',
        authorization: { type: 'api_token', api_token: userToken(carol.id).value },
      });
      expect(res.statusCode).toBe(429);
      expect(res.headers['retry-after']).toBe('7');
      expect(res.body).not.toMatch(/cfut_|api_token/);
    } finally {
      cf.faults.reset();
    }
  });
});
