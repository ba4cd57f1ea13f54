import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';

/**
 * Anyone may start an SSO sign-in, and each start stores a pending sign-in for 10 minutes: the
 * starts are limited per client address (OAUTH_SSO_START_LIMIT), for the console and the MCP page.
 */
describe('SSO sign-in starts are limited per client address', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture({ OAUTH_SSO_START_LIMIT: '3/600' });
  });
  afterAll(async () => {
    await f?.close();
  });

  const pending = async () =>
    Number(
      (
        await f.t.container.db.kysely
          .selectFrom('oauth_artifacts')
          .select((eb) => eb.fn.countAll().as('n'))
          .where('model', '=', 'SsoLogin')
          .executeTakeFirstOrThrow()
      ).n,
    );

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
