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
