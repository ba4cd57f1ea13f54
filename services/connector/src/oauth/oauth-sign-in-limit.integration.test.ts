import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';

/**
 * Anyone may start a sign-in: an authorization request stores an interaction, an SSO start a
 * pending sign-in for 10 minutes. Both are limited per client address (OAUTH_SIGN_IN_LIMIT),
 * each kind counted apart.
 */
describe('sign-in starts are limited per client address', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture({ OAUTH_SIGN_IN_LIMIT: '3/600' });
  });
  afterAll(async () => {
    await f?.close();
  });

  const stored = async (model: 'SsoLogin' | 'Interaction') =>
    Number(
      (
        await f.t.container.db.kysely
          .selectFrom('oauth_artifacts')
          .select((eb) => eb.fn.countAll().as('n'))
          .where('model', '=', model)
          .executeTakeFirstOrThrow()
      ).n,
    );
  const pending = () => stored('SsoLogin');

  it('answers an authorization request beyond the limit with 429 and a page, storing no interaction', async () => {
    const { url } = f.authorization();
    const before = await stored('Interaction');
    const statuses: number[] = [];
    let refused: Response | null = null;
    for (let i = 0; i < 5; i++) {
      const res = await fetch(url, { redirect: 'manual' });
      statuses.push(res.status);
      if (res.status === 429) refused = res;
      else await res.body?.cancel();
    }
    expect(statuses.slice(0, 3).every((s) => s === 303 || s === 302)).toBe(true);
    expect(statuses.slice(3)).toEqual([429, 429]);
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await refused?.text()).toContain('Too many sign-ins were started from your network');
    expect((await stored('Interaction')) - before).toBe(3);
  });

  it('answers 429 rate_limited with Retry-After beyond the limit, storing nothing more', async () => {
    const before = await pending();
    const answers = [];
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${f.base}/console/api/sso`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'x@acme.com' }),
      });
      answers.push({
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        body: (await res.json()) as { error?: { code: string; message: string } },
      });
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 429, 429, 429]);
    expect(Number(answers[3]!.retryAfter)).toBeGreaterThan(0);
    expect(answers[3]!.body.error).toMatchObject({
      code: 'rate_limited',
      message: expect.stringMatching(/^too many sign-ins started from this address \(at most 3 in 600 s\)/),
    });
    expect((await pending()) - before).toBe(3);
  });
});

/**
 * An IPv6 client is routinely given a whole /64, and picks a new address in it at will (privacy
 * addresses): counted per address, one client had 2^64 allowances. A home line gets a /56 or a
 * /48, which count too, with 4 and 16 times the limit. Behind a trusted proxy
 * (TRUST_PROXY), X-Forwarded-For names the client.
 */
describe('sign-in starts from IPv6 count per /64, /56 and /48', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture({ OAUTH_SIGN_IN_LIMIT: '3/600', TRUST_PROXY: 'loopback' });
  });
  afterAll(async () => {
    await f?.close();
  });

  const startFrom = async (client: string) => {
    const res = await fetch(`${f.base}/console/api/sso`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
      body: JSON.stringify({ email: 'x@acme.com' }),
    });
    await res.body?.cancel();
    return res.status;
  };

  it('new addresses in one /64 share its limit, a /56 holds 4 times it; another /64, and IPv4 in either form, count apart', async () => {
    const oneNetwork = ['2001:db8:1:2::1', '2001:db8:1:2:aaaa::5', '2001:DB8:1:2:ffff:ffff:ffff:ffff'];
    const statuses = [];
    for (const address of oneNetwork) statuses.push(await startFrom(address));
    statuses.push(await startFrom('2001:db8:1:2:1234:5678:9abc:def0'));
    expect(statuses).toEqual([200, 200, 200, 429]);
    // A client at its own limit, trying on, does not use up its neighbours' share of the block:
    // what its /64 refuses counts in no wider window.
    for (let i = 0; i < 20; i++) expect(await startFrom(`2001:db8:1:2::${i + 10}`)).toBe(429);
    for (let i = 0; i < 3; i++) expect(await startFrom('2001:db8:1:3::1')).toBe(200);
    // One /56 (a home line's delegation) holds 4 times the limit, however many /64s it uses.
    const block = [];
    for (let i = 0; i < 13; i++) block.push(await startFrom(`2001:db8:9:${(0x100 + i).toString(16)}::1`));
    expect(block).toEqual([...Array<number>(12).fill(200), 429]);
    const refused = await fetch(`${f.base}/console/api/sso`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '2001:db8:9:1ff::1' },
      body: JSON.stringify({ email: 'x@acme.com' }),
    });
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(
      /^too many sign-ins started from the network 2001:db8:9:100::\/56 \(at most 12 in 600 s\)/,
    );
    // An IPv4 client is its address, written either way.
    expect([
      await startFrom('203.0.113.7'),
      await startFrom('::ffff:203.0.113.7'),
      await startFrom('::ffff:cb00:7107'),
      await startFrom('203.0.113.7'),
      await startFrom('203.0.113.8'),
    ]).toEqual([200, 200, 200, 429, 200]);
  });
});
