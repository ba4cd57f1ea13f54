import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, startOAuthFixture } from '../oauth/test-support/oauth-fixture.ts';
import type { OAuthFixture } from '../oauth/test-support/oauth-fixture.ts';
import { ScriptedUserAgent } from '../oauth/test-support/user-agent.ts';
import { connectMcpClient } from '../test-support/mcp-client.ts';

/**
 * attack29: a tenant admin signed in to the console through the tenant's SSO is a person; the
 * MCP token an engineer's agent runs with is that same person. Separation of duties on write
 * approvals ("the principal that planned the writes never decides them; another person must")
 * must hold across the two.
 */
describe('attack29: SSO console sessions and write approvals', () => {
  let f: OAuthFixture;

  async function consoleSsoSession(user: { email: string; password: string }) {
    const ua = new ScriptedUserAgent([`${f.base}/console`]);
    const url = `${f.base}/console/api/sso`;
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: user.email }),
    });
    for (const setCookie of res.headers.getSetCookie()) await ua.jar.setCookie(setCookie, url);
    const started = (await res.json()) as { redirect_url: string };
    expect(res.status, JSON.stringify(started)).toBe(200);
    const idpLogin = await ua.get(started.redirect_url);
    const idpConsent = await ua.submit(idpLogin, { login: user.email, password: user.password });
    const back =
      idpConsent.url.startsWith(f.idp.issuer) && idpConsent.status !== 0
        ? await ua.submit(idpConsent)
        : idpConsent;
    expect(back.url).toBe(`${f.base}/console`);
    const cookie = await ua.jar.getCookieString(`${f.base}/api/v1/approvals`);
    const session = await fetch(`${f.base}/console/api/session`, { headers: { cookie } });
    expect(session.status).toBe(200);
    const body = (await session.json()) as { session: { csrf_token: string; sso_identifier: string } };
    expect(body.session.sso_identifier).toBe(user.email);
    return { cookie, csrf: body.session.csrf_token };
  }

  /** The tenant's SSO names Alice one of its console admins. */
  async function nameAliceConsoleAdmin(): Promise<void> {
    const sso = await f.api('GET', '/api/v1/mcp/sso');
    const put = await f.api('PUT', '/api/v1/mcp/sso', {
      issuer: f.idp.issuer,
      client_id: f.idp.clientId,
      client_secret: f.idp.clientSecret,
      allowed_email_domains: sso.body.sso.allowed_email_domains,
      console_admins: [ALICE.email],
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
  }

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('refuses an SSO console admin approving the writes their own agent (their MCP token) planned: 403 self_approval', async () => {
    // Alice is one of Acme's console admins and an engineer with a vaulted Cloudflare token.
    await nameAliceConsoleAdmin();
    const cfUser = [...f.cf.state.users.values()].find((u) => u.email === ALICE.email)!;
    const editToken = f.cf.state.createUserToken({
      userId: cfUser.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:read', '#dns_records:edit'],
    }).value;
    f.t.secrets.add(editToken);
    const accounts = await f.api(
      'GET',
      `/api/v1/connected_accounts?identifier=${encodeURIComponent(ALICE.email)}`,
    );
    const accountId = accounts.body.connected_accounts[0].id as string;
    const rotated = await f.api('PUT', `/api/v1/connected_accounts/${accountId}`, {
      authorization: { type: 'api_token', api_token: editToken },
    });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    const policy = await f.api('PUT', `/api/v1/identities/${encodeURIComponent(ALICE.email)}/policy`, {
      rules: [{ effect: 'approve', methods: ['POST'], path: '/zones/*/dns_records' }],
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(200);

    // Alice's agent, on Alice's own MCP token, plans a DNS write: it waits for approval.
    const client = await connectMcpClient({
      base: f.base,
      apiKey: f.tenant.apiKey,
      identifier: ALICE.email,
      name: 'alice-agent',
      secrets: f.t.secrets,
    });
    try {
      const result = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: `async () => cloudflare.dns.records.create({ zone_id: '${f.zoneId}', type: 'TXT', name: 'self.acme.example', content: 'approved by myself' })`,
        },
      });
      expect(JSON.stringify(result)).toMatch(/approv/i);
    } finally {
      await client.close();
    }
    const pending = await f.api('GET', '/api/v1/approvals?status=pending');
    expect(pending.status).toBe(200);
    const approval = (
      pending.body.approvals as Array<{ id: string; identifier: string; requested_by?: { type: string } }>
    ).find((a) => a.identifier === ALICE.email)!;
    expect(approval, JSON.stringify(pending.body)).toBeDefined();

    // Alice signs in to the console through Acme's SSO and approves her own agent's write.
    const alice = await consoleSsoSession(ALICE);
    const decided = await fetch(`${f.base}/api/v1/approvals/${approval.id}/approve`, {
      method: 'POST',
      headers: { cookie: alice.cookie, 'x-csrf-token': alice.csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ comment: 'looks fine to me' }),
    });
    const decidedBody = await decided.text();
    const writes = f.cf
      .requests()
      .filter((r) => r.method === 'POST' && r.path === `/zones/${f.zoneId}/dns_records`);
    expect(decided.status, decidedBody).toBe(403);
    expect(JSON.parse(decidedBody)).toMatchObject({ error: { code: 'self_approval' } });
    expect(writes).toHaveLength(0);
  });

  it('offboarding an SSO console admin ends what she minted through her session: MCP tokens for other identities stop working', async () => {
    // Acme names Alice a console admin; Bob is another engineer.
    const bobUser = f.cf.state.createUser({ email: 'bob@acme.com' });
    f.cf.state.createAccount({ name: 'Bob Co', members: [bobUser.id] });
    const bobToken = f.cf.state.createUserToken({
      userId: bobUser.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read'],
    }).value;
    await f.t.connect(f.tenant.apiKey, 'bob@acme.com', bobToken);
    await nameAliceConsoleAdmin();

    const alice = await consoleSsoSession(ALICE);
    const minted = await fetch(`${f.base}/api/v1/mcp/tokens`, {
      method: 'POST',
      headers: { cookie: alice.cookie, 'x-csrf-token': alice.csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier: 'bob@acme.com', expiry: '30d' }),
    });
    expect(minted.status).toBe(201);
    const { token } = (await minted.json()) as { token: string };
    f.t.secrets.add(token);
    expect((await f.mcpStatus(token)).status).toBe(200);
    // A one-time sign-in link for Bob (it signs its holder in as Bob) is not hers to make.
    const linked = await fetch(`${f.base}/api/v1/mcp/login_links`, {
      method: 'POST',
      headers: { cookie: alice.cookie, 'x-csrf-token': alice.csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier: 'bob@acme.com' }),
    });
    expect(linked.status).toBe(403);

    // Alice leaves: the tenant offboards her identity.
    const off = await f.api('POST', `/api/v1/identities/${encodeURIComponent(ALICE.email)}/offboard`, {});
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    const session = await fetch(`${f.base}/console/api/session`, { headers: { cookie: alice.cookie } });
    expect(session.status).toBe(401); // her console session ended (held)
    const after = await f.mcpStatus(token);
    const rows = await f.t.container.db.kysely
      .selectFrom('mcp_tokens')
      .select(['created_by', 'revoked_at'])
      .where('identifier', '=', 'bob@acme.com')
      .execute();
    expect(rows).toEqual([{ created_by: `sso:${ALICE.email}`, revoked_at: expect.any(Date) }]);
    expect(after.status).toBe(401);
  });
});
