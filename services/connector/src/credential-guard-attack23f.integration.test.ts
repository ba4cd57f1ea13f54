import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { connectMcpClient } from './test-support/mcp-client.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { replyEnvelope as reply, startEdgeProxy } from './test-support/edge-proxy.ts';
import { tenantAdmin } from './test-support/fake-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack23f: an outsider's third attack on issue 14's claim ("credential-minting operations are
 * guarded"), end to end through the real service, after attack23d's fixes: the new offboarding
 * order (the account revoked first, a late mint undone as it is recorded), the own-token rule on
 * other routes (the vaulted user's membership, an approved plan), and the new kind
 * `account_members`. A hostile "Cloudflare" edge in front of the fake answers what the fake does
 * not implement (members, memberships, Access service tokens) with the shapes of Cloudflare's API
 * document, checks the bearer like Cloudflare (a deleted token gets a 401; a user who left the
 * account gets a 403 there), and records what reached it; API tokens are real at the fake. Each
 * test asserts the SECURE behaviour and fails on a bug; tests named HELD did not get through.
 */
const MARKER = 'ATTACK23FMARKER0123456789abcdef';
const MINT_PERMISSIONS = ['com.cloudflare.api.token.create', 'com.cloudflare.api.token.delete'];
/** Administrator (the role id Cloudflare documents in its examples). */
const ADMIN_ROLE = '05784afa30c1afe1440e79d9351c7430';

describe('attack23f: offboarding order, the own-token rule elsewhere, account members', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  const hits: string[] = [];
  /** Account members the agents invited, live at "Cloudflare" (membership id → account). */
  const members = new Map<string, string>();
  /** The vaulted users' own memberships (membership id → account), and those they left. */
  const memberships = new Map<string, { accountId: string; userId: string; email: string }>();
  const left = new Set<string>();
  /** Access service tokens live at "Cloudflare" (id → account). */
  const serviceTokens = new Map<string, string>();
  /** A POST …/members held at the edge until `release` (then answered). */
  let holdInvite: { seen: () => void; gate: Promise<void> } | null = null;
  /** How many DELETEs of a member the edge answers 503 (Cloudflare having a bad minute). */
  let failMemberDeletes = 0;
  let serial = 0;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const path = (req.url ?? '').split('?')[0]?.replace(/^\/client\/v4/, '') ?? '';
      const method = req.method ?? '';
      const short = `${method} ${path.replace(/^\/(accounts|zones)\/[^/]+/, '')}`;
      // Who is calling, as Cloudflare sees it: a live token of the fake, or nobody.
      const bearer = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      const token = cf.state.findTokenByValue(bearer);
      const owner = token?.owner as { userId?: string } | undefined;
      const account = /^\/accounts\/([^/]+)/.exec(path)?.[1];
      /** A user token's user that left the account has no access there any more. */
      const outside = () =>
        account !== undefined &&
        [...memberships].some(
          ([id, m]) => left.has(id) && m.accountId === account && m.userId === owner?.userId,
        );
      const answer = (): boolean => {
        if (method === 'GET' && path === '/memberships') {
          const mine = [...memberships].filter(([id, m]) => m.userId === owner?.userId && !left.has(id));
          reply(
            res,
            200,
            mine.map(([id, m]) => ({ id, status: 'accepted', account: { id: m.accountId }, roles: [] })),
          );
          return true;
        }
        if (method === 'DELETE' && /^\/memberships\/[^/]+$/.test(path)) {
          const id = path.split('/')[2] ?? '';
          if (!memberships.has(id)) return (reply(res, 404, null, 'Membership not found'), true);
          left.add(id);
          reply(res, 200, { id });
          return true;
        }
        if (account === undefined) return false;
        if (outside()) return (reply(res, 403, null, 'Authentication error'), true);
        if (method === 'GET' && /\/members$/.test(path)) {
          const list = [...memberships]
            .filter(([id, m]) => m.accountId === account && !left.has(id))
            .map(([id, m]) => ({ id, status: 'accepted', user: { id: m.userId, email: m.email } }));
          reply(res, 200, list);
          return true;
        }
        if (method === 'POST' && /\/members$/.test(path)) {
          const id = `mem${(serial += 1)}`;
          const answerInvite = () => {
            members.set(id, account);
            reply(res, 200, {
              id,
              status: 'pending',
              roles: [{ id: ADMIN_ROLE, name: 'Administrator' }],
              user: { id: `user-of-${id}`, email: 'x@agent.example' },
            });
          };
          const held = holdInvite;
          if (held) {
            held.seen();
            void held.gate.then(answerInvite);
          } else {
            answerInvite();
          }
          return true;
        }
        if (method === 'DELETE' && /\/members\/[^/]+$/.test(path)) {
          const id = path.split('/').at(-1) ?? '';
          if (failMemberDeletes > 0) {
            failMemberDeletes -= 1;
            return (reply(res, 503, null, 'Service unavailable'), true);
          }
          if (memberships.has(id)) left.add(id);
          else if (!members.delete(id)) return (reply(res, 404, null, 'Member not found'), true);
          reply(res, 200, { id });
          return true;
        }
        if (method === 'POST' && /\/access\/service_tokens$/.test(path)) {
          const id = `st${(serial += 1)}`;
          serviceTokens.set(id, account);
          reply(res, 200, { id, name: 'agent', client_id: `${id}.access`, client_secret: `${MARKER}-${id}` });
          return true;
        }
        if (method === 'DELETE' && /\/access\/service_tokens\/[^/]+$/.test(path)) {
          const id = path.split('/').at(-1) ?? '';
          if (!serviceTokens.delete(id)) return (reply(res, 404, null, 'not found'), true);
          reply(res, 200, { id });
          return true;
        }
        return false;
      };
      // Every request the fake does not answer needs a live token, as at Cloudflare.
      const ours = /^\/memberships/.test(path) || /\/(members|access\/service_tokens)(\/[^/]+)?$/.test(path);
      if (!ours) return false;
      hits.push(short);
      req.resume();
      if (!token) {
        reply(res, 401, null, 'Invalid API Token');
        return true;
      }
      return answer();
    });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({ CLOUDFLARE_API_BASE: edge.base, PUBLIC_URL: base });
    await t.app.listen({ host: '127.0.0.1', port });
  });
  afterAll(async () => {
    await t.close();
    await edge.close();
    await cf.close();
  });

  async function tenant(name: string, permissions: string[] = []) {
    const user = cf.state.createUser({ email: `${name}@example.com` });
    const account = cf.state.createAccount({ name, members: [user.id] });
    memberships.set(`ms-${name}`, { accountId: account.id, userId: user.id, email: user.email });
    const tokenPermissions = [
      'com.cloudflare.api.user.read',
      '#organization:read',
      '#zone:read',
      ...permissions,
    ];
    const token = cf.state.createUserToken({ userId: user.id, permissions: tokenPermissions });
    const tn = await t.createTenant(name);
    const connectedAccountId = await t.connect(tn.apiKey, name, token.value);
    const auth = { authorization: `Bearer ${tn.apiKey}` };
    return {
      ...tn,
      userId: user.id,
      tokenPermissions,
      token,
      accountId: account.id,
      connectedAccountId,
      auth,
    };
  }

  const setPolicy = (auth: Record<string, string>, payload: Record<string, unknown>) =>
    tenantAdmin(t).setPolicy(auth, payload);
  const offboard = (auth: Record<string, string>, identifier: string) =>
    tenantAdmin(t).offboard(auth, identifier);
  const mintedRows = async (tenantId: string) =>
    (
      await sql<{ kind: string; upstream_id: string; revoked_at: Date | null; last_error: string | null }>`
        select kind, upstream_id, revoked_at, last_error from minted_credentials
        where tenant_id = ${tenantId} order by id`.execute(t.container.db.kysely)
    ).rows;

  /** Code that invites x@agent.example as Administrator and returns the answer or the error. */
  const inviteCode = (accountId: string) =>
    `async () => { try { const r = await cloudflare.request({ method: 'POST', path: '/accounts/${accountId}/members', body: { email: 'x@agent.example', roles: ['${ADMIN_ROLE}'] } }); return { status: r.status, result: r.result }; } catch (e) { return { code: e.code, message: e.message }; } }`;

  /**
   * Starts an execution that invites a member, holds the invite's answer at the edge until the
   * offboarding (revoke_upstream) of the identity has returned, then lets it through; returns
   * the offboarding's answer and the execution's.
   */
  async function inviteAnsweredAfterOffboarding(tn: Awaited<ReturnType<typeof tenant>>, identifier: string) {
    let release!: () => void;
    let seen!: () => void;
    const inviteSeen = new Promise<void>((resolve) => (seen = resolve));
    holdInvite = { seen, gate: new Promise<void>((resolve) => (release = resolve)) };
    try {
      const running = t.execute(tn.apiKey, identifier, inviteCode(tn.accountId));
      await inviteSeen;
      // The invite is at Cloudflare; the identity is offboarded meanwhile. Fixed: offboarding
      // revokes the account, then waits for the account's requests in flight before it revokes
      // what the account made and deletes its token, so Cloudflare answers the invite only now.
      const offboarding = offboard(tn.auth, identifier);
      await new Promise((resolve) => setTimeout(resolve, 500));
      holdInvite = null;
      release();
      const off = await offboarding;
      expect(off.statusCode, off.body).toBe(200);
      const exe = await running;
      return { off, exe };
    } finally {
      holdInvite = null;
      release();
    }
  }

  it('revokes an account member the agent invited whose answer came back while the offboarding ran (it waits for it)', async () => {
    // The README: "a credential one of them made as it ended is revoked as it is recorded: the
    // record is written only while the account is not revoked". The invite was sent while the
    // account was active; Cloudflare answers it after offboarding (which found nothing recorded)
    // deleted the vaulted token. The record is refused (revoked) and the undo is sent with the
    // vaulted token, which is dead by now: a 401, a log line, and the invitation stays. The agent
    // needs nothing from the answer: the invitation reaches its mailbox, a dashboard login.
    const tn = await tenant('lateinvite', MINT_PERMISSIONS);
    await setPolicy(tn.auth, { credential_operations: { allow: ['account_members'] } });
    hits.length = 0;
    const { off, exe } = await inviteAnsweredAfterOffboarding(tn, 'lateinvite');
    expect(cf.state.getToken(tn.token.id), 'offboarding deleted the vaulted token').toBeUndefined();
    const invited = [...members].filter(([, accountId]) => accountId === tn.accountId).map(([id]) => id);
    expect(
      invited,
      `members the agent invited that are still live (undo: ${hits.filter((h) => h.startsWith('DELETE')).join(', ')}; execution: ${exe.body}; offboarding: ${JSON.stringify(off.json().revoked_connected_accounts)})`,
    ).toEqual([]);
  });

  it('keeps on record (to revoke and report) a late credential whose immediate undo Cloudflare refused', async () => {
    // The same late invite, the vaulted token still live (it may not delete itself), and the
    // undo answered 503 once. Nothing was recorded, so nothing can ever revoke or report it:
    // offboarding already returned, and the account's credential was deleted with the account.
    const tn = await tenant('lateundo');
    await setPolicy(tn.auth, { credential_operations: { allow: ['account_members'] } });
    failMemberDeletes = 1;
    try {
      await inviteAnsweredAfterOffboarding(tn, 'lateundo');
    } finally {
      failMemberDeletes = 0;
    }
    expect(cf.state.getToken(tn.token.id), 'the vaulted token is still live').toBeDefined();
    const invited = [...members].filter(([, accountId]) => accountId === tn.accountId).map(([id]) => id);
    const rows = await mintedRows(tn.tenantId);
    const unaccounted = invited.filter(
      (id) => !rows.some((row) => row.upstream_id === id && row.revoked_at === null),
    );
    expect(unaccounted, 'live members the agent invited that no record keeps').toEqual([]);
  });

  it("refuses a write that takes the vaulted token's user out of the account (its membership), which offboarding needs to revoke what the agent made", async () => {
    // The own-token rule keeps the agent from deleting or rolling the vaulted token because
    // offboarding revokes with it. Leaving the account does the same to every account-level
    // credential: the agent creates an Access service token (allowed and revealed), then deletes
    // its user's membership (DELETE /memberships/{id}, open: GET /memberships lists it; or DELETE
    // …/members/{its member id}). Offboarding's DELETE of the service token is then a 403 and the
    // secret the agent holds stays valid for Access.
    const tn = await tenant('leaver', MINT_PERMISSIONS);
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['access_service_tokens'], reveal_secrets: ['access_service_tokens'] },
    });
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'leaver',
      `async () => {
        const st = (await cloudflare.request({ method: 'POST', path: '/accounts/${tn.accountId}/access/service_tokens', body: { name: 'agent' } })).result;
        const mine = (await cloudflare.request({ method: 'GET', path: '/memberships' })).result;
        let left;
        try { left = (await cloudflare.request({ method: 'DELETE', path: '/memberships/' + mine[0].id })).status; } catch (e) { left = e.code; }
        return { st, left };
      }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as { st: { id: string; client_secret: string }; left: number | string };
    // The agent holds the service token's secret (the tenant revealed it).
    expect(data.st.client_secret).toContain(MARKER);
    const off = await offboard(tn.auth, 'leaver');
    expect(off.statusCode, off.body).toBe(200);
    expect(
      serviceTokens.has(data.st.id),
      `the service token the agent holds outlives offboarding (leaving the account: ${String(data.left)}; offboarding: ${JSON.stringify(off.json().revoked_connected_accounts)})`,
    ).toBe(false);
  });

  it("refuses deleting the vaulted user's own account member (DELETE /accounts/{id}/members/{its member id})", async () => {
    const tn = await tenant('selfmember', MINT_PERMISSIONS);
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'selfmember',
      `async () => {
        const me = (await cloudflare.request({ method: 'GET', path: '/user' })).result;
        const list = (await cloudflare.request({ method: 'GET', path: '/accounts/${tn.accountId}/members' })).result;
        const mine = list.find((m) => m.user.email === me.email);
        try { return (await cloudflare.request({ method: 'DELETE', path: '/accounts/${tn.accountId}/members/' + mine.id })).status; } catch (e) { return e.code; }
      }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(hits, 'sent to Cloudflare').not.toContain('DELETE /members/ms-selfmember');
    expect(res.json().data).toBe('policy_denied');
  });

  it('keeps the own-token rule when a person approves a write to the token that became the vaulted one (rotation between plan and approval)', async () => {
    // The own-token rule is the gateway's, applied with `party.ownTokenId`; an approval's apply
    // builds its party without it. A write held for approval on another token (one the agent
    // sees at GET /user/tokens, e.g. the one an admin made to rotate to) is checked against the
    // id vaulted when it was planned; the account is then rotated to that token and the plan is
    // approved: the apply deletes the vaulted token, and offboarding can revoke nothing after.
    const tn = await tenant('approvedself', MINT_PERMISSIONS);
    const issued = await t.app.inject({
      method: 'POST',
      url: `/admin/v1/tenants/${tn.tenantId}/api_keys`,
      headers: { authorization: `Bearer ${t.adminToken}` },
    });
    expect(issued.statusCode, issued.body).toBe(201);
    const approverKey = (issued.json() as { api_key: string }).api_key;
    t.secrets.add(approverKey);
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'] },
      rules: [{ effect: 'approve', methods: ['PUT', 'DELETE'], path: '/user/tokens/**' }],
    });
    const next = cf.state.createUserToken({ userId: tn.userId, permissions: tn.tokenPermissions });
    t.secrets.add(next.value);
    const planned = await t.execute(
      tn.apiKey,
      'approvedself',
      `async () => (await cloudflare.request({ method: 'DELETE', path: '/user/tokens/${next.id}' })).status`,
    );
    expect(planned.statusCode, planned.body).toBe(200);
    const approval = planned.json().approval as { id: string; status: string };
    expect(approval.status).toBe('pending');
    const rotated = await t.app.inject({
      method: 'PUT',
      url: `/api/v1/connected_accounts/${tn.connectedAccountId}`,
      headers: tn.auth,
      payload: { authorization: { type: 'api_token', api_token: next.value } },
    });
    expect(rotated.statusCode, rotated.body).toBe(200);
    const approved = await t.app.inject({
      method: 'POST',
      url: `/api/v1/approvals/${approval.id}/approve`,
      headers: { authorization: `Bearer ${approverKey}` },
      payload: {},
    });
    expect(approved.statusCode, approved.body).toBe(200);
    expect(
      cf.state.getToken(next.id),
      `the vaulted token was deleted by the approved plan: ${approved.body}`,
    ).toBeDefined();
  });

  it('HELD an invited member is deleted on offboarding by its membership id, with the vaulted token, and reported', async () => {
    const tn = await tenant('invitedmember', MINT_PERMISSIONS);
    await setPolicy(tn.auth, { credential_operations: { allow: ['account_members'] } });
    const res = await t.execute(tn.apiKey, 'invitedmember', inviteCode(tn.accountId));
    expect(res.statusCode, res.body).toBe(200);
    const id = (res.json().data as { result: { id: string } }).result.id;
    expect(members.get(id)).toBe(tn.accountId);
    hits.length = 0;
    const off = await offboard(tn.auth, 'invitedmember');
    expect(off.statusCode, off.body).toBe(200);
    expect(hits).toContain(`DELETE /members/${id}`);
    expect(members.has(id)).toBe(false);
    expect(off.json().revoked_connected_accounts[0].upstream.detail).toContain(
      'credentials it created through Warden: 1 of 1 revoked',
    );
    expect(await mintedRows(tn.tenantId)).toEqual([
      { kind: 'account_members', upstream_id: id, revoked_at: expect.any(Date), last_error: null },
    ]);
  });

  it('HELD an invite is refused without account_members, and so is changing a member’s roles or status, in any case', async () => {
    const tn = await tenant('noinvite');
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'noinvite',
      `async () => { const out = []; for (const r of [
        { method: 'POST', path: '/accounts/${tn.accountId}/members', body: { email: 'x@agent.example', roles: ['${ADMIN_ROLE}'] } },
        { method: 'PUT', path: '/accounts/${tn.accountId}/Members/ms-noinvite', body: { roles: [{ id: '${ADMIN_ROLE}' }] } },
        { method: 'PATCH', path: '/ACCOUNTS/${tn.accountId}/members/ms-noinvite', body: { status: 'accepted' } },
      ]) { try { out.push((await cloudflare.request(r)).status); } catch (e) { out.push(e.code); } } return out; }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().data).toEqual(['policy_denied', 'policy_denied', 'policy_denied']);
    expect(hits).toEqual([]);
  });

  it('HELD through the MCP front door, the vaulted token may be neither deleted, rolled nor edited in any spelling, with api_tokens allowed and revealed', async () => {
    const tn = await tenant('mcpself', MINT_PERMISSIONS);
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    const id = tn.token.id;
    const requests = [
      { method: 'DELETE', path: `/user/tokens/${id}` },
      { method: 'PUT', path: `/user/tokens/${id.toUpperCase()}/value`, body: {} },
      { method: 'PUT', path: `/accounts/${tn.accountId}/tokens/${id}`, body: { name: 'x' } },
      { method: 'PUT', path: `/accounts/${tn.accountId}/TOKENS/${id}/value`, body: {} },
      { method: 'DELETE', path: `/user/tokens/%${id.charCodeAt(0).toString(16)}${id.slice(1)}` },
    ];
    const client = await connectMcpClient({
      base,
      apiKey: tn.apiKey,
      identifier: 'mcpself',
      name: 'attack23f',
      secrets: t.secrets,
    });
    const before = cf.requests().length;
    try {
      const result = await client.callTool({
        name: 'cloudflare_execute',
        arguments: {
          code: `async () => { const out = []; for (const r of ${JSON.stringify(requests)}) { try { out.push((await cloudflare.request(r)).status); } catch (e) { out.push(e.code); } } return out; }`,
        },
      });
      const text = (result.content as Array<{ type: string; text: string }>)[0]?.text ?? '';
      expect(text).toContain(JSON.stringify(requests.map(() => 'policy_denied')));
    } finally {
      await client.close();
    }
    const sent = cf
      .requests()
      .slice(before)
      .filter((r) => r.method !== 'GET');
    expect(sent).toEqual([]);
    expect(cf.state.getToken(id)).toBeDefined();
  });
});
