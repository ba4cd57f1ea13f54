/**
 * One-time codes and rotating refresh tokens under concurrent use (found by an outsider attack,
 * issue 17): two requests presenting the same one at once must not both succeed.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';

const sha = (v: string) => createHash('sha256').update(v, 'utf8').digest('base64url');

describe('MCP OAuth under concurrent and cross-door use', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f.close();
  });

  const authorization = (overrides: Record<string, string | null> = {}) => f.authorization(overrides);

  async function code(identifier = ALICE.email) {
    const { url, verifier } = authorization();
    const back = await f.linkSignIn(f.userAgent(), url, identifier);
    const value = new URL(back.url).searchParams.get('code');
    expect(value, back.url).toBeTruthy();
    return { code: value!, verifier };
  }

  async function tokens(identifier = ALICE.email) {
    const c = await code(identifier);
    const res = await f.token({
      grant_type: 'authorization_code',
      code: c.code,
      code_verifier: c.verifier,
      redirect_uri: f.callbackUrl,
      resource: f.mcpUrl,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  }

  it('concurrent use of one refresh token yields at most one new token family', async () => {
    const issued = await tokens();
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        f.token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token! }),
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    console.log(
      'A1 concurrent refresh statuses',
      results.map((r) => r.status),
    );
    const live = [];
    for (const r of ok) live.push((await f.mcpStatus(r.body.access_token!)).status);
    console.log('A1 access tokens from the concurrent refreshes, /mcp status', live);
    const refreshed = [];
    for (const r of ok) {
      const next = await f.token({ grant_type: 'refresh_token', refresh_token: r.body.refresh_token! });
      refreshed.push(next.status);
    }
    console.log('A1 each rotated refresh token used once more', refreshed);
    expect(ok.length).toBeLessThanOrEqual(1);
  });

  it('two concurrent uses of one refresh token never leave two live token families', async () => {
    let forked = 0;
    for (let trial = 0; trial < 5; trial++) {
      const issued = await tokens();
      const pair = await Promise.all([
        f.token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token! }),
        f.token({ grant_type: 'refresh_token', refresh_token: issued.refresh_token! }),
      ]);
      const ok = pair.filter((r) => r.status === 200);
      const live = [];
      for (const r of ok) live.push((await f.mcpStatus(r.body.access_token!)).status);
      console.log(
        'A1b trial',
        trial,
        'statuses',
        pair.map((r) => r.status),
        '/mcp',
        live,
      );
      if (live.filter((s) => s === 200).length === 2) {
        // Both families keep rotating on their own.
        const next = await Promise.all(
          ok.map((r) => f.token({ grant_type: 'refresh_token', refresh_token: r.body.refresh_token! })),
        );
        console.log(
          'A1b trial',
          trial,
          'both rotated refresh tokens used again',
          next.map((r) => r.status),
        );
        forked++;
      }
    }
    expect(forked, 'trials where one refresh token became two live token families').toBe(0);
  });

  it('two concurrent redemptions of one code never leave two live access tokens', async () => {
    let forked = 0;
    for (let trial = 0; trial < 5; trial++) {
      const c = await code();
      const redeem = () =>
        f.token({
          grant_type: 'authorization_code',
          code: c.code,
          code_verifier: c.verifier,
          redirect_uri: f.callbackUrl,
          resource: f.mcpUrl,
        });
      const pair = await Promise.all([redeem(), redeem()]);
      const ok = pair.filter((r) => r.status === 200);
      const live = [];
      for (const r of ok) live.push((await f.mcpStatus(r.body.access_token!)).status);
      console.log(
        'A2b trial',
        trial,
        'statuses',
        pair.map((r) => r.status),
        '/mcp',
        live,
      );
      if (live.filter((s) => s === 200).length === 2) forked++;
    }
    expect(forked, 'trials where one code gave two live access tokens').toBe(0);
  });

  it('concurrent redemption of one authorization code yields at most one token set', async () => {
    const c = await code();
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        f.token({
          grant_type: 'authorization_code',
          code: c.code,
          code_verifier: c.verifier,
          redirect_uri: f.callbackUrl,
          resource: f.mcpUrl,
        }),
      ),
    );
    console.log(
      'A2 concurrent code redemption statuses',
      results.map((r) => r.status),
    );
    const ok = results.filter((r) => r.status === 200);
    const mcp = [];
    for (const r of ok) mcp.push((await f.mcpStatus(r.body.access_token!)).status);
    console.log('A2 each issued access token on /mcp', mcp);
    const distinctGrants = new Set(
      (
        await f.t.container.db.kysely
          .selectFrom('oauth_artifacts')
          .select('grant_id')
          .where('model', '=', 'AccessToken')
          .where(
            'id',
            'in',
            ok.map((r) => sha(r.body.access_token!)),
          )
          .execute()
      ).map((row) => row.grant_id),
    );
    console.log(
      'A2 distinct access tokens',
      new Set(ok.map((r) => r.body.access_token)).size,
      'grants',
      distinctGrants.size,
    );
    expect(results.filter((r) => r.status === 200).length).toBeLessThanOrEqual(1);
  });

  it('an OAuth access token is not accepted on /api/v1', async () => {
    const issued = await tokens();
    const res = await fetch(`${f.base}/api/v1/connected_accounts`, {
      headers: { authorization: `Bearer ${issued.access_token}` },
    });
    console.log('A4 /api/v1 with OAuth access token', res.status);
    expect(res.status).toBe(401);
  });
});
