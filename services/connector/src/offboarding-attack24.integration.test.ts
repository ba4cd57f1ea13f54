import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startEdgeProxy } from './test-support/edge-proxy.ts';
import { tenantAdmin, zoneTenant } from './test-support/fake-user.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack24: offboarding purges the sealed credential even when revoking what the agent made
 * failed. The account is revoked with its credential kept "until what it made is revoked, so a
 * second offboarding can finish the job if this one stops half-way" (offboarding.service.ts);
 * but once the loop has run, `purgeCredential` runs whatever the revocations answered. One
 * transient Cloudflare error on the minted credential's DELETE (a 503, or a 429 the agent can
 * provoke by spending the window just before) then leaves that credential alive for good: the
 * next offboarding finds a REVOKED account without a credential and skips it. Each test asserts
 * the SECURE behaviour and fails on a bug.
 */
const MINT_PERMISSIONS = ['com.cloudflare.api.token.create', 'com.cloudflare.api.token.delete'];

describe('attack24: offboarding purges the credential though a minted credential is still alive', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  /** Token ids whose next DELETE the edge answers 503 (once each). */
  const flaky = new Set<string>();
  const deletes: string[] = [];

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req, res) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const id = /^\/client\/v4\/user\/tokens\/([^/]+)$/.exec(path)?.[1];
      if (req.method !== 'DELETE' || !id) return false;
      deletes.push(id);
      if (!flaky.delete(id)) return false;
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          success: false,
          errors: [{ code: 10000, message: 'Service temporarily unavailable' }],
          messages: [],
          result: null,
        }),
      );
      return true;
    });
    t = await startTestApp({ CLOUDFLARE_API_BASE: edge.base });
  });
  afterAll(async () => {
    await t.close();
    await edge.close();
    await cf.close();
  });

  it('lets a later offboarding with revoke_upstream revoke a token the agent minted whose DELETE met one transient 503', async () => {
    const tn = await zoneTenant(t, cf, 'flakymint', MINT_PERMISSIONS);
    const admin = tenantAdmin(t);
    await admin.setPolicy(tn.auth, {
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    const res = await t.execute(
      tn.apiKey,
      'flakymint',
      `async () => (await cloudflare.request({ method: 'POST', path: '/user/tokens', body: { name: 'agent', policies: [{ permission_groups: [{ name: '#zone:read' }] }] } })).result.id`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const minted = res.json().data as string;
    expect(cf.state.getToken(minted), 'the agent minted a live token').toBeDefined();
    flaky.add(minted);

    const first = await admin.offboard(tn.auth, 'flakymint');
    expect(first.statusCode, first.body).toBe(200);
    // The first offboarding reports it could not revoke the minted token (it stays alive).
    expect(first.body).toContain('0 of 1 revoked');
    expect(cf.state.getToken(minted)).toBeDefined();

    // Cloudflare is back. Offboarding again, with revoke_upstream, is what the operator can do.
    const second = await admin.offboard(tn.auth, 'flakymint');
    expect(second.statusCode, second.body).toBe(200);
    expect(
      cf.state.getToken(minted),
      `the token the agent minted and holds outlives two offboardings (DELETEs sent: ${JSON.stringify(deletes)}): ${second.body}`,
    ).toBeUndefined();
  });
});
