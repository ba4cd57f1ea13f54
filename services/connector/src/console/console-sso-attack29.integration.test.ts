import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, startOAuthFixture } from '../oauth/test-support/oauth-fixture.ts';
import type { OAuthFixture } from '../oauth/test-support/oauth-fixture.ts';
import {
  connectEngineer,
  consoleSsoSession,
  mintInConsole,
  nameConsoleAdmins,
} from '../oauth/test-support/console-sso-session.ts';
import { connectMcpClient } from '../test-support/mcp-client.ts';

/**
 * attack29: a tenant admin signed in to the console through the tenant's SSO is a person; the
 * MCP token an engineer's agent runs with is that same person. Separation of duties on write
 * approvals ("the principal that planned the writes never decides them; another person must")
 * must hold across the two.
 */
describe('attack29: SSO console sessions and write approvals', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('refuses an SSO console admin approving the writes their own agent (their MCP token) planned: 403 self_approval', async () => {
    // Alice is one of Acme's console admins and an engineer with a vaulted Cloudflare token.
    await nameConsoleAdmins(f, [ALICE.email]);
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
    const alice = await consoleSsoSession(f, ALICE);
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
    await connectEngineer(f, 'bob@acme.com');
    await nameConsoleAdmins(f, [ALICE.email]);

    const alice = await consoleSsoSession(f, ALICE);
    const token = await mintInConsole(f, alice, 'bob@acme.com', '30d');
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
