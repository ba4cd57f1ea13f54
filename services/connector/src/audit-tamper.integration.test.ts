import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '@warden/audit';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { rechain } from '../../../libs/audit/src/test-support/rechain.ts';
import { SKEWED_CLOCK_PRELOAD, SPEC_PATH } from './test-support/paths.ts';
import { localKeyFileOf, startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { wardenCli } from './test-support/warden-cli.ts';

const PERMISSIONS = ['com.cloudflare.api.user.read', '#organization:read', '#zone:read', '#dns_records:edit'];

/**
 * `warden audit verify` against a tampered trail: an edited record, a deleted one, a full
 * re-chain with the project's own `hashEvent` (which the hash chain alone cannot see), and a
 * tampered checkpoint. The signing key is the service's own local key file.
 */
describe('warden audit verify finds tampering, including a re-chained history', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let zoneId: string;
  let userId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    const user = cf.state.createUser({ email: 'tamper@example.com' });
    userId = user.id;
    const account = cf.state.createAccount({ name: 'Tamper Co', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'tamper.example' }).id;
  });
  afterAll(async () => {
    await t.close();
    await cf.close();
  });

  /** A tenant whose trail holds an audited DELETE, signed by a checkpoint. */
  async function signedTrail(name: string) {
    const tenant = await t.createTenant(name);
    const token = cf.state.createUserToken({ userId, permissions: PERMISSIONS });
    await t.connect(tenant.apiKey, 'alice', token.value);
    const record = cf.state.createDnsRecord({
      zoneId,
      type: 'A',
      name: `${name.toLowerCase()}.tamper.example`,
      content: '192.0.2.7',
    });
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/execute_tool',
      headers: { authorization: `Bearer ${tenant.apiKey}` },
      payload: {
        tool_name: 'cloudflare_execute',
        identifier: 'alice',
        params: {
          code: `async () => (await cloudflare.request({ method: 'DELETE', path: '/zones/${zoneId}/dns_records/${record.id}' })).success`,
        },
      },
    });
    expect(res.json().data).toBe(true);
    // (The scheduler may sign too: what matters is that the head is signed now.)
    await t.container.auditCheckpoints?.run('interval');
    const { rows } = await sql<{ seq: string }>`
      select seq::text from audit_events where tenant_id = ${tenant.tenantId} and upstream_method = 'DELETE' and outcome = 'pending'`.execute(
      t.db.db.kysely,
    );
    return { tenantId: tenant.tenantId, apiKey: tenant.apiKey, deleteSeq: Number(rows[0]?.seq) };
  }

  async function cliVerify(tenantId: string) {
    const cli = wardenCli({
      DATABASE_URL: t.db.url,
      LOCAL_KEY_FILE: localKeyFileOf(t),
    });
    const result = await cli.verify(tenantId);
    expect(result.ok).toBe(result.code === 0);
    return result;
  }

  it('passes an untouched, signed trail', async () => {
    const { tenantId } = await signedTrail('Untouched');
    const { code, report } = await cliVerify(tenantId);
    expect(code).toBe(0);
    expect(report.checkpoints?.checked).toBeGreaterThanOrEqual(1);
    expect(report.checkpoints?.unsealed_records).toBe(0);
  });

  it('reads only and judges on the database clock: a host clock a day ahead sees no stale tail, and an empty DATA_DIR stays empty', async () => {
    const { tenantId, apiKey } = await signedTrail('Skewed');
    // A fresh unsigned tail: records written after the last checkpoint, seconds ago.
    await t.connect(apiKey, 'carol', cf.state.createUserToken({ userId, permissions: PERMISSIONS }).value);
    const skewed = wardenCli({
      DATABASE_URL: t.db.url,
      LOCAL_KEY_FILE: localKeyFileOf(t),
      NODE_OPTIONS: SKEWED_CLOCK_PRELOAD,
      WARDEN_TEST_CLOCK_SKEW_MS: String(24 * 3_600_000),
    });
    const { code, report } = await skewed.verify(tenantId);
    expect(report.checkpoints?.unsealed_records).toBeGreaterThan(0);
    expect(report.problems).toEqual([]);
    expect(code).toBe(0);

    const empty = mkdtempSync(path.join(os.tmpdir(), 'warden-verify-'));
    try {
      const fresh = wardenCli({ DATABASE_URL: t.db.url, DATA_DIR: empty, LOCAL_KEY_FILE: '' });
      expect((await fresh.verify(tenantId)).report.tenant_id).toBe(tenantId);
      expect(readdirSync(empty)).toEqual([]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('reports an audited DELETE turned into a GET /zones and the chain re-hashed with hashEvent', async () => {
    const { tenantId, deleteSeq } = await signedTrail('Rechained');
    await rechain(t.db.db.kysely, tenantId, deleteSeq, (e) => ({
      ...e,
      upstream: e.upstream
        ? { ...e.upstream, method: 'GET', path: '/zones', path_template: e.upstream.path_template }
        : null,
    }));
    // The hash chain alone is satisfied: every link and hash was recomputed.
    expect((await verifyChain(t.db.db.kysely, tenantId)).ok).toBe(true);
    const { code, report } = await cliVerify(tenantId);
    expect(code).toBe(1);
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: 'rewritten' }));
  });

  it('reports an edited record and a deleted one', async () => {
    const edited = await signedTrail('Edited');
    await sql`update audit_events set upstream_method = 'GET' where tenant_id = ${edited.tenantId} and seq = ${edited.deleteSeq}`.execute(
      t.db.db.kysely,
    );
    expect((await cliVerify(edited.tenantId)).report.problems).toContainEqual(
      expect.objectContaining({ seq: edited.deleteSeq, kind: 'edited' }),
    );
    const deleted = await signedTrail('Deleted');
    await sql`delete from audit_events where tenant_id = ${deleted.tenantId} and seq = ${deleted.deleteSeq}`.execute(
      t.db.db.kysely,
    );
    const { code, report } = await cliVerify(deleted.tenantId);
    expect(code).toBe(1);
    expect(report.problems).toContainEqual(
      expect.objectContaining({ seq: deleted.deleteSeq, kind: 'missing' }),
    );
  });

  it('reports a removed checkpoint and one edited to sign another head', async () => {
    const { tenantId, apiKey } = await signedTrail('Checkpoints');
    // More records, and a second checkpoint after them.
    await t.connect(apiKey, 'bob', cf.state.createUserToken({ userId, permissions: PERMISSIONS }).value);
    await t.container.auditCheckpoints?.run('interval');
    expect((await cliVerify(tenantId)).report).toMatchObject({
      ok: true,
      checkpoints: { unsealed_records: 0 },
    });
    await sql`delete from audit_checkpoints where tenant_id = ${tenantId} and number = 1`.execute(
      t.db.db.kysely,
    );
    let { code, report } = await cliVerify(tenantId);
    expect(code).toBe(1);
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: 'checkpoint_missing' }));
    await sql`update audit_checkpoints set hash = ${'0'.repeat(64)} where tenant_id = ${tenantId} and number > 1`.execute(
      t.db.db.kysely,
    );
    ({ code, report } = await cliVerify(tenantId));
    expect(code).toBe(1);
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: 'checkpoint_signature' }));
  });
});
