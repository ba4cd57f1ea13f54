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
 * attack23i: the own-access rule refuses writes to `/memberships/**` and `/accounts/{id}/members/
 * {id}`, but Cloudflare's API document has a user-level way to leave an account too: `DELETE
 * /user/organizations/{organization_id}` ("Leave Organization: Removes association to an
 * organization"). A "Cloudflare" edge in front of the fake answers it and account members as the
 * document describes (a user who left an account gets a 403 on its members). The test asserts
 * the SECURE behaviour and fails on a bug.
 */
const MINT_PERMISSIONS = ['com.cloudflare.api.token.create', 'com.cloudflare.api.token.delete'];
const ADMIN_ROLE = '05784afa30c1afe1440e79d9351c7430';

describe('attack23i: leaving the account through /user/organizations', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  const hits: string[] = [];
  const invited = new Map<string, string>();
  /** The vaulted users' memberships (account → user), and the accounts their users left. */
  const memberOf = new Map<string, string>();
  const left = new Set<string>();
  let serial = 0;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const path = (req.url ?? '').split('?')[0]?.replace(/^\/client\/v4/, '') ?? '';
      const method = req.method ?? '';
      const org = /^\/user\/organizations\/([^/]+)$/i.exec(path);
      const members = /^\/accounts\/([^/]+)\/members(\/[^/]+)?$/i.exec(path);
      if (!org && !members) return false;
      hits.push(`${method} ${path}`);
      req.resume();
      const bearer = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      const owner = cf.state.findTokenByValue(bearer)?.owner as { userId?: string } | undefined;
      if (!owner) return (reply(res, 401, null, 'Invalid API Token'), true);
      if (org) {
        const account = org[1] ?? '';
        if (method !== 'DELETE') return (reply(res, 405, null, 'Method not allowed'), true);
        if (memberOf.get(account) !== owner.userId || left.has(account))
          return (reply(res, 404, null, 'Organization not found'), true);
        left.add(account);
        return (reply(res, 200, { id: account }), true);
      }
      const account = members?.[1] ?? '';
      if (memberOf.get(account) !== owner.userId || left.has(account))
        return (reply(res, 403, null, 'Authentication error'), true);
      if (method === 'POST' && !members?.[2]) {
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
      if (method === 'DELETE' && members?.[2]) {
        const id = members[2].slice(1);
        if (!invited.delete(id)) return (reply(res, 404, null, 'Member not found'), true);
        return (reply(res, 200, { id }), true);
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

  it('refuses DELETE /user/organizations/{account_id} (the vaulted user leaves the account: offboarding then cannot delete the Administrator the agent invited)', async () => {
    const name = 'leaveorg';
    const user = cf.state.createUser({ email: `${name}@example.com` });
    const account = cf.state.createAccount({ name, members: [user.id] });
    memberOf.set(account.id, user.id);
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#organization:read', '#zone:read', ...MINT_PERMISSIONS],
    });
    const tn = await t.createTenant(name);
    await t.connect(tn.apiKey, name, token.value);
    const auth = { authorization: `Bearer ${tn.apiKey}` };
    await tenantAdmin(t).setPolicy(auth, { credential_operations: { allow: ['account_members'] } });
    const res = await t.execute(
      tn.apiKey,
      name,
      `async () => {
        const inv = (await cloudflare.request({ method: 'POST', path: '/accounts/${account.id}/members', body: { email: 'x@agent.example', roles: ['${ADMIN_ROLE}'] } })).result;
        let leave;
        try { leave = (await cloudflare.request({ method: 'DELETE', path: '/user/organizations/${account.id}' })).status; } catch (e) { leave = e.code; }
        return { invited: inv.id, leave };
      }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as { invited: string; leave: number | string };
    const off = await tenantAdmin(t).offboard(auth, name);
    expect(off.statusCode, off.body).toBe(200);
    expect
      .soft(hits, `the vaulted user left the account at the agent's request (answer: ${String(data.leave)})`)
      .not.toContain(`DELETE /user/organizations/${account.id}`);
    expect(
      invited.has(data.invited),
      `the Administrator the agent invited outlives offboarding: ${JSON.stringify(off.json().revoked_connected_accounts)}`,
    ).toBe(false);
  });

  it('keeps, for an offboarding that revokes upstream, the credential of an account an offboarding left half-way, when an admin offboards again without revoke_upstream', async () => {
    const name = 'halfnoup';
    const user = cf.state.createUser({ email: `${name}@example.com` });
    const account = cf.state.createAccount({ name, members: [user.id] });
    memberOf.set(account.id, user.id);
    const token = cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#organization:read', '#zone:read', ...MINT_PERMISSIONS],
    });
    const tn = await t.createTenant(name);
    const connectedAccountId = await t.connect(tn.apiKey, name, token.value);
    const auth = { authorization: `Bearer ${tn.apiKey}` };
    await tenantAdmin(t).setPolicy(auth, {
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
    // An offboarding that stopped right after revoking the account (as attack23h reaches it).
    await t.container.connectedAccounts.revoke(
      { tenantId: tn.tenantId, actor: SYSTEM_CALLER },
      connectedAccountId,
      {
        keepCredential: true,
      },
    );
    const quiet = await t.app.inject({
      method: 'POST',
      url: `/api/v1/identities/${name}/offboard`,
      headers: auth,
      payload: { revoke_upstream: false },
    });
    expect(quiet.statusCode, quiet.body).toBe(200);
    const off = await tenantAdmin(t).offboard(auth, name);
    expect(off.statusCode, off.body).toBe(200);
    expect(
      cf.state.getToken(kept.id),
      `the token the agent minted outlives a later offboarding with revoke_upstream (first: ${quiet.body}; then: ${off.body})`,
    ).toBeUndefined();
  });
});
