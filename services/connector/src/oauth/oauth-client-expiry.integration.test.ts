import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purgeExpiredOAuthArtifacts } from './oauth-artifacts.ts';
import { connectWithOAuth, TestOAuthClientProvider } from './test-support/oauth-client.ts';
import { ALICE, startOAuthFixture } from './test-support/oauth-fixture.ts';
import type { OAuthFixture } from './test-support/oauth-fixture.ts';

const DAY_MS = 86_400_000;

describe('dynamically registered clients expire unless a grant keeps them', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f.close();
  });

  async function clientRow(clientId: string) {
    return f.t.container.db.kysely
      .selectFrom('oauth_artifacts')
      .select(['created_at', 'expires_at'])
      .where('model', '=', 'Client')
      .where('id', '=', clientId)
      .executeTakeFirst();
  }

  async function grantExpiry(clientId: string): Promise<Date | null | undefined> {
    const row = await f.t.container.db.kysely
      .selectFrom('oauth_artifacts')
      .select('expires_at')
      .where('model', '=', 'Grant')
      .where('client_id', '=', clientId)
      .orderBy('created_at', 'desc')
      .executeTakeFirst();
    return row?.expires_at;
  }

  /** Where the authorization endpoint sends a browser for this client (or its error page). */
  async function authorize(clientId: string) {
    return f.userAgent().get(f.authorization({ client_id: clientId, state: null }).url.href);
  }

  it('an unused client is gone after a day (invalid_client, then purged); a used one lasts with its grant; metadata-document clients are never stored', async () => {
    // Registered and never used.
    const res = await fetch(`${f.base}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'Abandoned client',
        token_endpoint_auth_method: 'none',
        redirect_uris: [f.callbackUrl],
      }),
    });
    expect(res.status).toBe(201);
    const unused = (await res.json()) as { client_id: string; client_id_issued_at: number };
    const unusedRow = await clientRow(unused.client_id);
    expect(unusedRow?.expires_at).toBeInstanceOf(Date);
    const lifetime = unusedRow!.expires_at!.getTime() - unusedRow!.created_at.getTime();
    expect(Math.abs(lifetime - DAY_MS)).toBeLessThan(60_000);
    expect((await authorize(unused.client_id)).status).toBe(200);

    // Registered and used: signed in, consented, tools listed.
    const provider = new TestOAuthClientProvider(f.callbackUrl, { clientName: 'Used client' });
    const ua = f.userAgent();
    await (
      await connectWithOAuth(
        f.mcpUrl,
        provider,
        async (url) => (await f.linkSignIn(ua, url, ALICE.email)).url,
      )
    ).close();
    const tokens = provider.tokens()!;
    f.t.secrets.add(tokens.access_token);
    f.t.secrets.add(tokens.refresh_token!);
    const usedId = (provider.clientInformation() as { client_id: string }).client_id;
    const grantExpires = await grantExpiry(usedId);
    expect(grantExpires).toBeInstanceOf(Date);
    const usedRow = await clientRow(usedId);
    expect(usedRow!.expires_at!.getTime()).toBeGreaterThanOrEqual(grantExpires!.getTime());
    expect(usedRow!.expires_at!.getTime()).toBeGreaterThan(Date.now() + 29 * DAY_MS);

    // A metadata-document client signs in without a row of its own.
    const cimd = new TestOAuthClientProvider(f.callbackUrl, { clientMetadataUrl: f.cimd.clientId });
    await (
      await connectWithOAuth(
        f.mcpUrl,
        cimd,
        async (url) => (await f.linkSignIn(f.userAgent(), url, ALICE.email)).url,
      )
    ).close();
    f.t.secrets.add(cimd.tokens()!.access_token);
    f.t.secrets.add(cimd.tokens()!.refresh_token!);
    expect(await clientRow(f.cimd.clientId)).toBeUndefined();

    // A day and more later (its expiry moved back rather than the clock forward).
    await f.t.container.db.kysely
      .updateTable('oauth_artifacts')
      .set({ expires_at: new Date(Date.now() - 2 * 3_600_000) })
      .where('model', '=', 'Client')
      .where('id', '=', unused.client_id)
      .execute();
    const refused = await authorize(unused.client_id);
    expect(refused.status).toBe(400);
    expect(refused.body).toContain('invalid_client');
    // The start-up tasks' hourly purge reclaims the row; the used client and its grant stay.
    expect(await purgeExpiredOAuthArtifacts(f.t.container.db.kysely)).toBeGreaterThanOrEqual(1);
    expect(await clientRow(unused.client_id)).toBeUndefined();
    expect(await clientRow(usedId)).toBeDefined();

    const refreshed = await fetch(`${f.base}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        client_id: usedId,
        refresh_token: tokens.refresh_token!,
        resource: f.mcpUrl,
      }),
    });
    const body = (await refreshed.json()) as { access_token?: string; refresh_token?: string };
    if (body.access_token) f.t.secrets.add(body.access_token);
    if (body.refresh_token) f.t.secrets.add(body.refresh_token);
    expect(refreshed.status, JSON.stringify(body)).toBe(200);
    expect((await f.mcpStatus(body.access_token!)).status).toBe(200);
  });
});
