import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYSTEM_CALLER } from '@warden/audit';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { replyEnvelope as reply, startEdgeProxy } from './test-support/edge-proxy.ts';
import { tenantAdmin } from './test-support/fake-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack23h: an outsider's attack on issue 14's claim after attack23f's fixes (offboarding revokes
 * the account keeping its credential sealed, waits for requests in flight, purges at the end; the
 * own-token rule covers `/memberships/**`). A "Cloudflare" edge in front of the fake answers
 * account members and memberships like Cloudflare's API document (a user who left an account, or
 * lost its admin role there, gets a 403 on its members); API tokens are real at the fake. Each
 * test asserts the SECURE behaviour and fails on a bug.
 */
const MINT_PERMISSIONS = ['com.cloudflare.api.token.create', 'com.cloudflare.api.token.delete'];
const ADMIN_ROLE = '05784afa30c1afe1440e79d9351c7430';
/** A read-only role (Administrator Read Only, as Cloudflare documents its ids). */
const READ_ONLY_ROLE = 'e58cefd75d7adae0b761796c28815e5c';

describe('attack23h: the own-token rule on account members, and the credential kept for offboarding', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  const hits: string[] = [];
  /** Members the agents invited (membership id → account). */
  const invited = new Map<string, string>();
  /** The vaulted users' own memberships (membership id → account, user), those removed and demoted. */
  const memberships = new Map<string, { accountId: string; userId: string; email: string }>();
  const left = new Set<string>();
  const demoted = new Set<string>();
  let serial = 0;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const path = (req.url ?? '').split('?')[0]?.replace(/^\/client\/v4/, '') ?? '';
      const method = req.method ?? '';
      if (!/^\/accounts\/[^/]+\/members(\/[^/]+)?$/i.test(path)) return false;
      const account = /^\/accounts\/([^/]+)/i.exec(path)?.[1] ?? '';
      hits.push(`${method} ${path.replace(/^\/accounts\/[^/]+/i, '')}`);
      req.resume();
      const bearer = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      const owner = cf.state.findTokenByValue(bearer)?.owner as { userId?: string } | undefined;
      if (!owner) return (reply(res, 401, null, 'Invalid API Token'), true);
      const mine = [...memberships].find(
        ([id, m]) => m.accountId === account && m.userId === owner.userId && !left.has(id),
      );
      // Not a member any more: no access; a read-only member may list but not change members.
      if (!mine) return (reply(res, 403, null, 'Authentication error'), true);
      if (method === 'GET' && /\/members$/i.test(path)) {
        const list = [...memberships]
          .filter(([id, m]) => m.accountId === account && !left.has(id))
          .map(([id, m]) => ({ id, status: 'accepted', user: { id: m.userId, email: m.email } }));
        return (reply(res, 200, list), true);
      }
      if (demoted.has(mine[0])) return (reply(res, 403, null, 'Authentication error'), true);
      if (method === 'POST' && /\/members$/i.test(path)) {
        const id = `mem${(serial += 1)}`;
        invited.set(id, account);
        reply(res, 200, {
          id,
          status: 'pending',
          roles: [{ id: ADMIN_ROLE, name: 'Administrator' }],
          user: { id: `user-of-${id}`, email: 'x@agent.example' },
        });
        return true;
      }
      const id = path.split('/').at(-1) ?? '';
      if (method === 'DELETE') {
        if (memberships.has(id)) left.add(id);
        else if (!invited.delete(id)) return (reply(res, 404, null, 'Member not found'), true);
        return (reply(res, 200, { id }), true);
      }
      if (method === 'PUT' || method === 'PATCH') {
        if (memberships.has(id)) demoted.add(id);
        return (reply(res, 200, { id, roles: [{ id: READ_ONLY_ROLE }] }), true);
      }
      return (reply(res, 405, null, 'Method not allowed'), true);
    });
    t = await startTestApp({ CLOUDFLARE_API_BASE: edge.base });
  }, 120_000);
  afterAll(async () => {
    await t.close();
    await edge.close();
    await cf.close();
  });

  async function tenant(name: string, permissions: string[] = MINT_PERMISSIONS) {
    const user = cf.state.createUser({ email: `${name}@example.com` });
    const account = cf.state.createAccount({ name, members: [user.id] });
    memberships.set(`ms-${name}`, { accountId: account.id, userId: user.id, email: user.email });
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#organization:read', '#zone:read', ...permissions],
    });
    const tn = await t.createTenant(name);
    const connectedAccountId = await t.connect(tn.apiKey, name, token.value);
    return {
      ...tn,
      token,
      accountId: account.id,
      connectedAccountId,
      auth: { authorization: `Bearer ${tn.apiKey}` },
    };
  }
  const setPolicy = (auth: Record<string, string>, payload: Record<string, unknown>) =>
    tenantAdmin(t).setPolicy(auth, payload);
  const offboard = (auth: Record<string, string>, identifier: string) =>
    tenantAdmin(t).offboard(auth, identifier);

  /** Invites a member, then sends `own` (a write on the vaulted user's own member); both answers. */
  const inviteThenOwn = (accountId: string, own: string) =>
    `async () => {
      const inv = (await cloudflare.request({ method: 'POST', path: '/accounts/${accountId}/members', body: { email: 'x@agent.example', roles: ['${ADMIN_ROLE}'] } })).result;
      const me = (await cloudflare.request({ method: 'GET', path: '/user' })).result;
      const list = (await cloudflare.request({ method: 'GET', path: '/accounts/${accountId}/members' })).result;
      const mine = list.find((m) => m.user.email === me.email);
      let own;
      try { own = (await cloudflare.request({ ...${own}, path: '/accounts/${accountId}/members/' + mine.id })).status; } catch (e) { own = e.code; }
      return { invited: inv.id, own };
    }`;

  it("refuses, with account_members allowed, deleting the vaulted user's own account member (offboarding then cannot delete the member the agent invited)", async () => {
    const tn = await tenant('selfremove');
    await setPolicy(tn.auth, { credential_operations: { allow: ['account_members'] } });
    hits.length = 0;
    const res = await t.execute(tn.apiKey, 'selfremove', inviteThenOwn(tn.accountId, `{ method: 'DELETE' }`));
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as { invited: string; own: number | string };
    const off = await offboard(tn.auth, 'selfremove');
    expect(off.statusCode, off.body).toBe(200);
    expect
      .soft(hits, `the vaulted user's own membership was removed by the agent (answer: ${String(data.own)})`)
      .not.toContain('DELETE /members/ms-selfremove');
    expect(
      invited.has(data.invited),
      `the Administrator the agent invited outlives offboarding: ${JSON.stringify(off.json().revoked_connected_accounts)}`,
    ).toBe(false);
  });

  it("refuses, with account_members allowed, demoting the vaulted user's own account member to read-only (offboarding then cannot delete the member the agent invited)", async () => {
    const tn = await tenant('selfdemote');
    await setPolicy(tn.auth, { credential_operations: { allow: ['account_members'] } });
    hits.length = 0;
    const res = await t.execute(
      tn.apiKey,
      'selfdemote',
      inviteThenOwn(tn.accountId, `{ method: 'PUT', body: { roles: [{ id: '${READ_ONLY_ROLE}' }] } }`),
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as { invited: string; own: number | string };
    const off = await offboard(tn.auth, 'selfdemote');
    expect(off.statusCode, off.body).toBe(200);
    expect
      .soft(hits, `the vaulted user's own roles were changed by the agent (answer: ${String(data.own)})`)
      .not.toContain('PUT /members/ms-selfdemote');
    expect(
      invited.has(data.invited),
      `the Administrator the agent invited outlives offboarding: ${JSON.stringify(off.json().revoked_connected_accounts)}`,
    ).toBe(false);
  });

  /** An agent mints a token it holds; an offboarding then dies right after revoking the account. */
  async function halfOffboarded(name: string) {
    const tn = await tenant(name);
    await setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    const minted = await t.execute(
      tn.apiKey,
      name,
      `async () => (await cloudflare.request({ method: 'POST', path: '/user/tokens', body: { name: 'kept', policies: [{ permission_groups: [{ name: '#zone:read' }] }] } })).result`,
    );
    expect(minted.statusCode, minted.body).toBe(200);
    const kept = minted.json().data as { id: string; value: string };
    t.secrets.add(kept.value);
    // The state an offboarding leaves when its replica dies right after revoking the account
    // (what offboarding-crash-attack23f.integration.test.ts reaches by killing a process).
    await t.container.connectedAccounts.revoke(
      { tenantId: tn.tenantId, actor: SYSTEM_CALLER },
      tn.connectedAccountId,
      { keepCredential: true },
    );
    return { tn, kept };
  }

  it('HELD the next offboarding takes up an account an offboarding left half-way and revokes what the agent minted', async () => {
    const { tn, kept } = await halfOffboarded('halfcontrol');
    const off = await offboard(tn.auth, 'halfcontrol');
    expect(off.statusCode, off.body).toBe(200);
    expect(cf.state.getToken(kept.id), off.body).toBeUndefined();
    expect(cf.state.getToken(tn.token.id), off.body).toBeUndefined();
  });

  it('keeps, for the next offboarding, the credential of an account an offboarding left half-way, when an admin DELETEs the REVOKED account meanwhile', async () => {
    const { tn, kept } = await halfOffboarded('halfway');
    // The console lists the account as REVOKED; an admin "deletes" it (the documented revoke).
    const del = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/connected_accounts/${tn.connectedAccountId}`,
      headers: tn.auth,
    });
    expect(del.statusCode, del.body).toBe(204);
    const off = await offboard(tn.auth, 'halfway');
    expect(off.statusCode, off.body).toBe(200);
    expect(
      cf.state.getToken(kept.id),
      `the token the agent minted and holds outlives offboarding: ${off.body}`,
    ).toBeUndefined();
  });
});
