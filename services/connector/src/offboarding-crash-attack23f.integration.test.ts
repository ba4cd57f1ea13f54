import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { startConnectorProcess } from './test-support/connector-process.ts';
import type { ConnectorProcess } from './test-support/connector-process.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startEdgeProxy } from './test-support/edge-proxy.ts';
import { localKeyFileOf, startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/**
 * attack23f: offboarding now revokes the connected account first (which deletes its sealed
 * credential) and only then revokes, with that credential, what the agent made. A replica that
 * dies between the two (a crash, a deploy's SIGKILL, an OOM) leaves the account revoked and its
 * credential gone: offboarding run again finds no live account, and nothing can revoke the
 * minted tokens any more. Before the reorder the account stayed active until the end, so running
 * offboarding again finished the job. Two replicas on one database: B (a real connector process)
 * offboards and is killed while it revokes the first minted token; A runs offboarding again.
 */
describe('attack23f: offboarding interrupted after the account revoke', () => {
  let cf: FakeCloudflare;
  let a: TestApp;
  let b: ConnectorProcess | null = null;
  let edge: Awaited<ReturnType<typeof startEdgeProxy>>;
  let dataDir: string;
  /** A DELETE of this token id is held at the edge (never answered) and announced. */
  let hold: { tokenId: string; seen: () => void } | null = null;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    edge = await startEdgeProxy(cf.url, (req) => {
      const held = hold;
      const path = (req.url ?? '').split('?')[0] ?? '';
      if (held && req.method === 'DELETE' && path.endsWith(`/user/tokens/${held.tokenId}`)) {
        req.resume();
        held.seen();
        return true;
      }
      return false;
    });
    a = await startTestApp({ CLOUDFLARE_API_BASE: edge.base });
    dataDir = mkdtempSync(path.join(tmpdir(), 'warden-attack23f-b-'));
  }, 120_000);
  afterAll(async () => {
    await b?.kill('SIGKILL').catch(() => undefined);
    await a.close();
    await edge.close();
    await cf.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('revokes on a second offboarding the tokens the agent minted when the first one died after revoking the account', async () => {
    const user = cf.state.createUser({ email: 'crash@example.com' });
    cf.state.createAccount({ name: 'crash', members: [user.id] });
    const vaulted = cf.state.createUserToken({
      userId: user.id,
      permissions: [
        'com.cloudflare.api.user.read',
        '#zone:read',
        'com.cloudflare.api.token.create',
        'com.cloudflare.api.token.delete',
      ],
    });
    const tn = await a.createTenant('crash');
    await a.connect(tn.apiKey, 'crash', vaulted.value);
    const auth = { authorization: `Bearer ${tn.apiKey}` };
    const policy = await a.app.inject({
      method: 'PUT',
      url: '/api/v1/policy',
      headers: auth,
      payload: { credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] } },
    });
    expect(policy.statusCode, policy.body).toBe(200);
    const minted = await a.execute(
      tn.apiKey,
      'crash',
      `async () => (await cloudflare.request({ method: 'POST', path: '/user/tokens', body: { name: 'kept', policies: [{ permission_groups: [{ name: '#zone:read' }] }] } })).result`,
    );
    expect(minted.statusCode, minted.body).toBe(200);
    const kept = minted.json().data as { id: string; value: string };
    a.secrets.add(kept.value);
    // The agent holds a live token of its own, recorded for offboarding.
    expect(cf.state.getToken(kept.id)).toBeDefined();

    b = await startConnectorProcess('attack23f-b', {
      DATABASE_URL: a.db.url,
      REDIS_URL: process.env.REDIS_URL ?? '',
      LOCAL_KEY_FILE: localKeyFileOf(a),
      DATA_DIR: dataDir,
      WARDEN_ADMIN_TOKEN: a.adminToken,
      CLOUDFLARE_API_BASE: edge.base,
      CLOUDFLARE_SPEC_PATH: SPEC_PATH,
      SANDBOX_POOL_SIZE: '1',
      LOG_LEVEL: 'warn',
    });
    let seen!: () => void;
    const revoking = new Promise<void>((resolve) => (seen = resolve));
    hold = { tokenId: kept.id, seen };
    const first = fetch(`${b.url}/api/v1/identities/crash/offboard`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ revoke_upstream: true }),
    }).catch((error: unknown) => error);
    await revoking;
    // Replica B dies while its DELETE of the minted token is out.
    await b.kill('SIGKILL');
    b = null;
    hold = null;
    await first;

    const again = await a.app.inject({
      method: 'POST',
      url: '/api/v1/identities/crash/offboard',
      headers: auth,
      payload: { revoke_upstream: true },
    });
    expect(again.statusCode, again.body).toBe(200);
    expect(
      cf.state.getToken(kept.id),
      `the token the agent minted and holds outlives offboarding run twice: ${again.body}`,
    ).toBeUndefined();
    expect(cf.state.getToken(vaulted.id), 'the vaulted token is deleted too').toBeUndefined();
  }, 240_000);
});
