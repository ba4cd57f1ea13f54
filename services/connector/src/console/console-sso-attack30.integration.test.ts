/* eslint-disable @typescript-eslint/no-explicit-any -- JSON answers read loosely, as in the other API tests */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALICE, startOAuthFixture } from '../oauth/test-support/oauth-fixture.ts';
import type { OAuthFixture } from '../oauth/test-support/oauth-fixture.ts';
import {
  connectEngineer,
  consoleSsoSession,
  mintInConsole,
  nameConsoleAdmins,
} from '../oauth/test-support/console-sso-session.ts';
import { freePort } from '../test-support/free-port.ts';
import { startTestApp } from '../test-support/test-app.ts';

/**
 * attack30: the attack29 fixes for SSO console admins: separation of duties on write approvals
 * ("the person they were planned for cannot decide them") and offboarding ("revokes what the
 * admin minted for others: they were shown the secrets"). Each test asserts the secure
 * behaviour; those named HELD passed when written.
 */
describe('attack30: SSO console admins, approvals and offboarding', () => {
  let f: OAuthFixture;
  let bobZone: string;

  async function asSession(s: { cookie: string; csrf: string }, method: string, url: string, body?: unknown) {
    const res = await fetch(`${f.base}${url}`, {
      method,
      headers: { cookie: s.cookie, 'x-csrf-token': s.csrf, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, text, json: text ? (JSON.parse(text) as Record<string, any>) : null };
  }

  /** Plans a DNS write with an MCP token (held by the approve rule); returns the approval's id. */
  async function planWith(token: string, zoneId: string, name: string): Promise<string> {
    const client = new Client({ name: 'agent', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${f.base}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    try {
      const result = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: `async () => cloudflare.dns.records.create({ zone_id: '${zoneId}', type: 'TXT', name: '${name}', content: 'x' })`,
        },
      });
      const text = JSON.stringify(result);
      const id = /"?(apr_[a-z0-9]+)/.exec(text.replace(/\\"/g, '"'))?.[1];
      expect(id, text).toBeTruthy();
      return id!;
    } finally {
      await client.close();
    }
  }

  function dnsWrites(zoneId: string) {
    return f.cf.requests().filter((r) => r.method === 'POST' && r.path === `/zones/${zoneId}/dns_records`);
  }

  beforeAll(async () => {
    f = await startOAuthFixture();
    // Bob, another Acme engineer with a DNS-editing token of his own zone.
    const bobUser = f.cf.state.createUser({ email: 'bob@acme.com' });
    const account = f.cf.state.createAccount({ name: 'Bob Co', members: [bobUser.id] });
    bobZone = f.cf.state.createZone({ accountId: account.id, name: 'bob.example' }).id;
    const bobToken = f.cf.state.createUserToken({
      userId: bobUser.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:read', '#dns_records:edit'],
    }).value;
    f.t.secrets.add(bobToken);
    await f.t.connect(f.tenant.apiKey, 'bob@acme.com', bobToken);
    // Every DNS record creation waits for a person's approval.
    const policy = await f.api('PUT', '/api/v1/policy', {
      rules: [{ effect: 'approve', methods: ['POST'], path: '/zones/*/dns_records' }],
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(200);
    await nameConsoleAdmins(f, [ALICE.email]);
  });
  afterAll(async () => {
    await f?.close();
  });

  it('an SSO admin cannot approve writes planned with an MCP token she minted herself in the console (for another identifier): 403 self_approval', async () => {
    const alice = await consoleSsoSession(f, ALICE);
    const minted = await asSession(alice, 'POST', '/api/v1/mcp/tokens', {
      identifier: 'bob@acme.com',
      expiry: '1h',
    });
    expect(minted.status, minted.text).toBe(201);
    const token = minted.json!.token as string;
    f.t.secrets.add(token);
    // Alice, holding the secret she was shown, plans a write as "bob's agent"...
    const id = await planWith(token, bobZone, 'sod-approve.bob.example');
    const view = await f.api('GET', `/api/v1/approvals/${id}`);
    expect(view.body.approval?.status ?? view.body.status, JSON.stringify(view.body)).toBe('pending');
    // ...and approves it herself.
    const before = dnsWrites(bobZone).length;
    const decided = await asSession(alice, 'POST', `/api/v1/approvals/${id}/approve`, { comment: 'lgtm' });
    const sent = dnsWrites(bobZone).length - before;
    expect(decided.status, decided.text).toBe(403);
    expect(decided.json).toMatchObject({ error: { code: 'self_approval' } });
    expect(sent).toBe(0);
  });

  it('HELD: an SSO admin cannot reject or approve writes planned for her identifier spelled in another case (ALICE@ACME.COM)', async () => {
    // The tenant's key mints a token for the upper-case spelling; Alice's SSO identifier is lower case.
    const upper = ALICE.email.toUpperCase();
    const userToken = f.cf.state.createUserToken({
      userId: [...f.cf.state.users.values()].find((u) => u.email === ALICE.email)!.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:read', '#dns_records:edit'],
    }).value;
    f.t.secrets.add(userToken);
    await f.t.connect(f.tenant.apiKey, upper, userToken);
    const minted = await f.api('POST', '/api/v1/mcp/tokens', { identifier: upper, expiry: '1h' });
    expect(minted.status).toBe(201);
    f.t.secrets.add(minted.body.token);
    const id = await planWith(minted.body.token, f.zoneId, 'case.acme.example');
    const alice = await consoleSsoSession(f, ALICE);
    for (const verb of ['reject', 'approve']) {
      const decided = await asSession(alice, 'POST', `/api/v1/approvals/${id}/${verb}`, {});
      expect(decided.status, `${verb}: ${decided.text}`).toBe(403);
      expect(decided.json).toMatchObject({ error: { code: 'self_approval' } });
    }
  });

  it('HELD: writes her agent planned on an OAuth token from her own MCP sign-in through SSO: she can neither approve nor reject them', async () => {
    const { url, verifier } = f.authorization();
    const back = await f.ssoSignIn(f.userAgent(), url, ALICE);
    const code = new URL(back.url).searchParams.get('code');
    expect(code, back.url).toBeTruthy();
    const tokens = await f.token({
      grant_type: 'authorization_code',
      code: code!,
      code_verifier: verifier,
      redirect_uri: f.callbackUrl,
      resource: f.mcpUrl,
    });
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);
    const id = await planWith(tokens.body.access_token!, f.zoneId, 'oauth.acme.example');
    const alice = await consoleSsoSession(f, ALICE);
    for (const verb of ['reject', 'approve']) {
      const decided = await asSession(alice, 'POST', `/api/v1/approvals/${id}/${verb}`, {});
      expect(decided.status, `${verb}: ${decided.text}`).toBe(403);
      expect(decided.json).toMatchObject({ error: { code: 'self_approval' } });
    }
  });

  it('an SSO admin cannot make a sign-in link for another identifier (the grant it leads to would outlive her offboarding): 403', async () => {
    const alice = await consoleSsoSession(f, ALICE);
    const link = await asSession(alice, 'POST', '/api/v1/mcp/login_links', { identifier: 'bob@acme.com' });
    expect(link.status, link.text).toBe(403);
    const stored = await f.t.container.db.kysely
      .selectFrom('oauth_artifacts')
      .select('id')
      .where('model', '=', 'LoginLink')
      .where('identifier', '=', 'bob@acme.com')
      .execute();
    expect(stored).toHaveLength(0);
  });
});

describe('attack30: offboarding an SSO admin across replicas and tenants', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f?.close();
  });

  it("HELD: a live MCP session on another replica of a token she minted ends; another tenant's token for her identifier and the tenant key's tokens stay", async () => {
    await connectEngineer(f, 'bob@acme.com');
    await nameConsoleAdmins(f, [ALICE.email]);
    const alice = await consoleSsoSession(f, ALICE);
    const token = await mintInConsole(f, alice, 'bob@acme.com', '1h');
    // The tenant key's own token for bob, and another tenant's token for alice@acme.com.
    const keyToken = await f.api('POST', '/api/v1/mcp/tokens', { identifier: 'bob@acme.com', expiry: '1h' });
    expect(keyToken.status).toBe(201);
    f.t.secrets.add(keyToken.body.token);
    const other = await f.t.createTenant('Other');
    const oUser = f.cf.state.createUser({ email: 'alice@other.example' });
    f.cf.state.createAccount({ name: 'Other co', members: [oUser.id] });
    const oToken = f.cf.state.createUserToken({
      userId: oUser.id,
      permissions: ['com.cloudflare.api.user.read'],
    }).value;
    f.t.secrets.add(oToken);
    await f.t.connect(other.apiKey, ALICE.email, oToken);
    const otherMint = await f.t.app.inject({
      method: 'POST',
      url: '/api/v1/mcp/tokens',
      headers: { authorization: `Bearer ${other.apiKey}` },
      payload: { identifier: ALICE.email, expiry: '1h' },
    });
    expect(otherMint.statusCode).toBe(201);
    f.t.secrets.add(otherMint.json().token);

    // Replica B of the same deployment; Alice's agent holds a live session there.
    const portB = await freePort();
    const b = await startTestApp(
      {
        CLOUDFLARE_API_BASE: f.cf.url,
        PUBLIC_URL: f.base,
        OAUTH_ALLOW_INSECURE: 'true',
        SSO_DOMAIN_PROOF: 'none',
      },
      { replicaOf: f.t },
    );
    await b.app.listen({ host: '127.0.0.1', port: portB });
    const client = new Client({ name: 'kept', version: '1.0.0' });
    try {
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${portB}/mcp`), {
          requestInit: { headers: { Authorization: `Bearer ${token}` } },
        }),
      );
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
      const before = await client.callTool({
        name: 'cloudflare_execute',
        arguments: { code: 'async () => 1' },
      });
      expect(before.isError ?? false, JSON.stringify(before)).toBe(false);
      const off = await f.api('POST', `/api/v1/identities/${encodeURIComponent(ALICE.email)}/offboard`, {});
      expect(off.status, JSON.stringify(off.body)).toBe(200);
      await new Promise((r) => setTimeout(r, 1000));
      let refused = false;
      try {
        const r = await client.callTool({ name: 'cloudflare_execute', arguments: { code: 'async () => 1' } });
        refused = r.isError === true;
      } catch {
        refused = true;
      }
      expect(refused, 'a call on the live session on replica B after the offboarding').toBe(true);
      expect((await f.mcpStatus(keyToken.body.token)).status).toBe(200);
      expect((await f.mcpStatus(otherMint.json().token)).status).toBe(200);
    } finally {
      await client.close().catch(() => {});
      await b.close();
    }
  });
});

describe('attack30: an SSO admin removed from console_admins (not offboarded)', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('taking an admin off console_admins also ends the MCP tokens she minted for others in the console (she was shown them)', async () => {
    await connectEngineer(f, 'bob@acme.com');
    await nameConsoleAdmins(f, [ALICE.email]);
    const alice = await consoleSsoSession(f, ALICE);
    const token = await mintInConsole(f, alice, 'bob@acme.com', '30d');
    expect((await f.mcpStatus(token)).status).toBe(200);

    // The tenant takes Alice off its console admins (she stays an engineer).
    await nameConsoleAdmins(f, []);
    const session = await fetch(`${f.base}/console/api/session`, { headers: { cookie: alice.cookie } });
    expect(session.status).toBe(401); // her console session ended
    expect((await f.mcpStatus(token)).status).toBe(401);
  });
});

describe('attack30: offboarding another identifier that differs from the admin only in case', () => {
  let f: OAuthFixture;

  beforeAll(async () => {
    f = await startOAuthFixture();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('offboarding ALICE@ACME.COM (another identifier: compared exactly everywhere else) does not revoke the tokens alice@acme.com minted for Bob', async () => {
    await connectEngineer(f, 'bob@acme.com');
    await nameConsoleAdmins(f, [ALICE.email]);
    const alice = await consoleSsoSession(f, ALICE);
    const token = await mintInConsole(f, alice, 'bob@acme.com', '30d');

    const off = await f.api(
      'POST',
      `/api/v1/identities/${encodeURIComponent('ALICE@ACME.COM')}/offboard`,
      {},
    );
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    // Alice (lower case) is still a console admin, signed in: offboarding ALICE@ACME.COM was not about her...
    const session = await fetch(`${f.base}/console/api/session`, { headers: { cookie: alice.cookie } });
    const admins = (await f.api('GET', '/api/v1/mcp/sso')).body.sso.console_admins;
    // ...so what she minted stays too (or else all of the above would have ended with it).
    expect({ session: session.status, admins, token: (await f.mcpStatus(token)).status }).toEqual({
      session: 200,
      admins: [ALICE.email],
      token: 200,
    });
  });
});
