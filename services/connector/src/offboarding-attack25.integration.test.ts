import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { replyEnvelope, startEdgeProxy } from './test-support/edge-proxy.ts';
import { tenantAdmin, zoneTenant } from './test-support/fake-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack25: offboarding now keeps the vaulted token and the sealed credential of an account
 * while something its agents made could not be revoked (c1f1847). Attacks on that retention:
 * is the kept credential usable again (re-activation, rotation, an execution naming the account,
 * another tenant), shown anywhere, and does a later offboarding really finish, also when what
 * was made is already gone (404)? Each test asserts the SECURE behaviour and fails on a bug;
 * tests named HELD are attacks that did not get through.
 */
const MINT_PERMISSIONS = ['com.cloudflare.api.token.create', 'com.cloudflare.api.token.delete'];

describe('attack25: the credential offboarding keeps while a minted credential lives', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  /** Token ids whose DELETE the edge answers 503 (while in the set). */
  const failing = new Set<string>();

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const id = /^\/client\/v4\/user\/tokens\/([^/]+)$/.exec(path)?.[1];
      if (req.method !== 'DELETE' || !id || !failing.has(id)) return false;
      req.resume();
      replyEnvelope(res, 503, null, 'Service temporarily unavailable');
      return true;
    });
    t = await startTestApp({ CLOUDFLARE_API_BASE: edge.base });
  });
  afterAll(async () => {
    await t.close();
    await edge.close();
    await cf.close();
  });

  const sealedRows = async (accountId: string) =>
    Number(
      (
        await sql<{
          n: string;
        }>`select count(*) as n from sealed_credentials where connected_account_id = ${accountId}`.execute(
          t.container.db.kysely,
        )
      ).rows[0]?.n ?? 0,
    );
  const mintCode = `async () => (await cloudflare.request({ method: 'POST', path: '/user/tokens', body: { name: 'agent', policies: [{ permission_groups: [{ name: '#zone:read' }] }] } })).result.id`;

  async function minter(name: string) {
    const tn = await zoneTenant(t, cf, name, MINT_PERMISSIONS);
    await tenantAdmin(t).setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    const accounts = await t.app.inject({
      method: 'GET',
      url: `/api/v1/connected_accounts?identifier=${name}`,
      headers: tn.auth,
    });
    const accountId = (accounts.json() as { connected_accounts: Array<{ id: string }> })
      .connected_accounts[0]!.id;
    return { ...tn, connectedAccountId: accountId };
  }

  it('HELD: a later offboarding finishes (own token deleted, sealed credential purged) when the agent already deleted what it minted (404)', async () => {
    const tn = await minter('gone404');
    const res = await t.execute(
      tn.apiKey,
      'gone404',
      `async () => { const id = (await cloudflare.request({ method: 'POST', path: '/user/tokens', body: { name: 'agent', policies: [{ permission_groups: [{ name: '#zone:read' }] }] } })).result.id; await cloudflare.request({ method: 'DELETE', path: '/user/tokens/' + id }); return id; }`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const minted = res.json().data as string;
    expect(cf.state.getToken(minted)).toBeUndefined();
    const off = await tenantAdmin(t).offboard(tn.auth, 'gone404');
    expect(off.statusCode, off.body).toBe(200);
    expect(off.body).toContain('1 of 1 revoked');
    expect(cf.state.getToken(tn.token.id), off.body).toBeUndefined();
    expect(await sealedRows(tn.connectedAccountId)).toBe(0);
  });

  it('HELD: while kept, the credential is not shown, not rotatable, not re-activatable, not usable by an execution naming the account nor by another tenant; then a later offboarding finishes', async () => {
    const tn = await minter('keptcred');
    const res = await t.execute(tn.apiKey, 'keptcred', mintCode);
    expect(res.statusCode, res.body).toBe(200);
    const minted = res.json().data as string;
    failing.add(minted);
    const first = await tenantAdmin(t).offboard(tn.auth, 'keptcred');
    expect(first.statusCode, first.body).toBe(200);
    expect(first.body).toContain('kept until');
    expect(await sealedRows(tn.connectedAccountId)).toBe(1);
    const token = tn.token.value;
    const accountUrl = `/api/v1/connected_accounts/${tn.connectedAccountId}`;

    // Shown: never the token, in the account, the listing, the audit events.
    const shown = [
      await t.app.inject({ method: 'GET', url: accountUrl, headers: tn.auth }),
      await t.app.inject({
        method: 'GET',
        url: '/api/v1/connected_accounts?identifier=keptcred',
        headers: tn.auth,
      }),
      await t.app.inject({ method: 'GET', url: '/api/v1/audit/events?limit=200', headers: tn.auth }),
    ];
    for (const r of shown) expect(r.body).not.toContain(token);
    expect((shown[0]!.json() as { connected_account: { status: string } }).connected_account.status).toBe(
      'REVOKED',
    );

    // Re-activation and rotation of the REVOKED account (the sealed row is still there).
    const rotate = await t.app.inject({
      method: 'PUT',
      url: accountUrl,
      headers: tn.auth,
      payload: { authorization: { type: 'api_token', api_token: token } },
    });
    expect(rotate.statusCode, rotate.body).toBe(409);
    for (const status of ['ACTIVE', 'SUSPENDED']) {
      const patch = await t.app.inject({
        method: 'PATCH',
        url: accountUrl,
        headers: tn.auth,
        payload: { status },
      });
      expect(patch.statusCode, patch.body).not.toBe(200);
    }
    const r2 = await t.app.inject({
      method: 'PUT',
      url: `${accountUrl}/r2_access_key`,
      headers: tn.auth,
      payload: { access_key_id: 'a'.repeat(32), secret_access_key: 'b'.repeat(64) },
    });
    expect(r2.statusCode, r2.body).toBe(409);

    // An execution naming the account by id, and plain ones.
    const before = cf.requests().length;
    const named = await t.app.inject({
      method: 'POST',
      url: '/api/v1/execute_tool',
      headers: tn.auth,
      payload: {
        tool_name: 'cloudflare_execute',
        identifier: 'keptcred',
        connected_account_id: tn.connectedAccountId,
        params: {
          code: `async () => (await cloudflare.request({ method: 'GET', path: '/user/tokens/verify' })).result`,
        },
      },
    });
    expect(named.statusCode, named.body).not.toBe(200);
    const plain = await t.execute(tn.apiKey, 'keptcred', mintCode);
    expect(plain.statusCode, plain.body).not.toBe(200);

    // Another tenant: the account id, and the same identifier.
    const other = await t.createTenant('keptother');
    const otherAuth = { authorization: `Bearer ${other.apiKey}` };
    const foreign = await t.app.inject({ method: 'GET', url: accountUrl, headers: otherAuth });
    expect(foreign.statusCode).toBe(404);
    const foreignRun = await t.app.inject({
      method: 'POST',
      url: '/api/v1/execute_tool',
      headers: otherAuth,
      payload: {
        tool_name: 'cloudflare_execute',
        identifier: 'keptcred',
        connected_account_id: tn.connectedAccountId,
        params: { code: `async () => 1` },
      },
    });
    expect(foreignRun.statusCode, foreignRun.body).not.toBe(200);
    const foreignOff = await tenantAdmin(t).offboard(otherAuth, 'keptcred');
    expect(foreignOff.statusCode, foreignOff.body).toBe(200);
    expect(foreignOff.body).not.toContain(tn.connectedAccountId);
    // The tenant's own DELETE of the account does not lose the credential offboarding still needs.
    const del = await t.app.inject({ method: 'DELETE', url: accountUrl, headers: tn.auth });
    expect([204, 404, 409]).toContain(del.statusCode);
    expect(
      cf
        .requests()
        .slice(before)
        .filter((r) => r.path.includes('/user/tokens')),
      'nothing reached Cloudflare with the kept credential',
    ).toEqual([]);

    // Cloudflare is back: the next offboarding finishes.
    failing.delete(minted);
    const second = await tenantAdmin(t).offboard(tn.auth, 'keptcred');
    expect(second.statusCode, second.body).toBe(200);
    expect(cf.state.getToken(minted), second.body).toBeUndefined();
    expect(cf.state.getToken(tn.token.id), second.body).toBeUndefined();
    expect(await sealedRows(tn.connectedAccountId)).toBe(0);
    // And a third has nothing left to do.
    const third = await tenantAdmin(t).offboard(tn.auth, 'keptcred');
    expect(third.statusCode, third.body).toBe(200);
    expect(third.body).not.toContain(tn.connectedAccountId);
  });
});
