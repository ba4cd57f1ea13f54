import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '@warden/testing';
import type { TestDatabase } from '@warden/testing';
import { createAuditCheckpointer, listCheckpoints } from './audit-checkpoints.ts';
import type { CheckpointSigner } from './audit-checkpoints.ts';
import { GENESIS_HASH } from './audit-hash.ts';
import { runAuditMaintenance } from './audit-retention.ts';
import type { AuditRecordInput } from './audit.store.ts';
import { createAuditStore } from './audit.store.ts';
import { rechain } from './test-support/rechain.ts';
import { verifyChain } from './audit-verify.ts';

/** The port with real Ed25519, as the local key file signs: a key the database never sees. */
function ed25519Signer(keyId = 'test-ed25519:1'): CheckpointSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    async sign(message) {
      return { keyId, algorithm: 'ED25519', signature: sign(null, message, privateKey) };
    },
    async verify(message, signature) {
      if (signature.keyId !== keyId) return 'unknown_key';
      return verify(null, message, publicKey, signature.signature) ? 'valid' : 'invalid';
    },
  };
}

function record(overrides: Partial<AuditRecordInput> = {}): AuditRecordInput {
  return {
    kind: 'upstream_request',
    action: 'cloudflare.request',
    outcome: 'success',
    execution_id: 'exe_1',
    identifier: 'alice',
    caller: { type: 'api_key', id: 'key_1', client_name: null, client_version: null, ip: null },
    agent_run_id: null,
    tool_name: 'cloudflare_execute',
    connected_account_id: 'ca_1',
    upstream: { method: 'DELETE', path_template: null, path: '/zones/z1', status: 200, cf_ray: 'ray1' },
    error: null,
    duration_ms: 12,
    request_bytes: 0,
    response_bytes: 20,
    code_sha256: null,
    code: null,
    ...overrides,
  };
}

describe('signed audit checkpoints', () => {
  let t: TestDatabase;
  const signer = ed25519Signer();
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => {
    await t.drop();
  });

  async function chainWithCheckpoint(tenantId: string, records = 6) {
    const store = createAuditStore({ db: t.db.kysely });
    const checkpoints = createAuditCheckpointer({ db: t.db.kysely, signer });
    await store.append(
      tenantId,
      Array.from({ length: records - 2 }, () => record()),
      { retentionDays: 90 },
    );
    await checkpoints.run('interval');
    await store.append(
      tenantId,
      [
        record(),
        record({
          upstream: { method: 'GET', path_template: null, path: '/zones', status: 200, cf_ray: 'ray2' },
        }),
      ],
      {
        retentionDays: 90,
      },
    );
    await checkpoints.run('interval');
    return { store, checkpoints };
  }

  it('signs each chain head once it moves, links each checkpoint to the one before, and verifies', async () => {
    const { checkpoints } = await chainWithCheckpoint('ten_ok');
    // Nothing moved: no new checkpoint.
    expect((await checkpoints.run('interval')).signed).toBe(0);
    const list = await listCheckpoints(t.db.kysely, 'ten_ok');
    expect(list.map((c) => [c.number, c.seq])).toEqual([
      [1, 4],
      [2, 6],
    ]);
    expect(list[0]?.previous_digest).toBe(GENESIS_HASH);
    expect(list[1]?.previous_digest).toBe(list[0]?.digest);
    const report = await verifyChain(t.db.kysely, 'ten_ok', { signer, maxUnsealedMs: 60_000 });
    expect(report).toMatchObject({
      ok: true,
      checked: 6,
      checkpoints: { checked: 2, last_seq: 6, unsealed_records: 0 },
    });
  });

  it('a full re-chain with the project’s own hashEvent passes the hash chain but not the signed checkpoints', async () => {
    await chainWithCheckpoint('ten_rechain');
    // Turn the audited DELETE at seq 2 into a harmless GET /zones, everywhere consistent.
    await rechain(t.db.kysely, 'ten_rechain', 2, (e) => ({
      ...e,
      upstream: e.upstream ? { ...e.upstream, method: 'GET', path: '/zones' } : null,
    }));
    expect((await verifyChain(t.db.kysely, 'ten_rechain')).ok).toBe(true);
    const report = await verifyChain(t.db.kysely, 'ten_rechain', { signer });
    expect(report.ok).toBe(false);
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 4, kind: 'rewritten' }));
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 6, kind: 'rewritten' }));
  });

  it('finds an edited record and a deleted one, with or without checkpoints', async () => {
    await chainWithCheckpoint('ten_edit');
    await sql`update audit_events set upstream_method = 'GET' where tenant_id = 'ten_edit' and seq = 3`.execute(
      t.db.kysely,
    );
    await sql`delete from audit_events where tenant_id = 'ten_edit' and seq = 5`.execute(t.db.kysely);
    const report = await verifyChain(t.db.kysely, 'ten_edit', { signer });
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 3, kind: 'edited' }));
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 5, kind: 'missing' }));
  });

  it('reports an edited checkpoint, a removed one and a signature by a key it does not trust', async () => {
    await chainWithCheckpoint('ten_cp');
    const signed = await listCheckpoints(t.db.kysely, 'ten_cp');
    // Re-pointing the last checkpoint at a rewritten head needs a signature nobody can make.
    await sql`update audit_checkpoints set hash = ${'f'.repeat(64)} where tenant_id = 'ten_cp' and number = 2`.execute(
      t.db.kysely,
    );
    let report = await verifyChain(t.db.kysely, 'ten_cp', { signer });
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: 'checkpoint_signature' }));
    await sql`update audit_checkpoints set hash = ${signed[1]?.hash ?? ''} where tenant_id = 'ten_cp' and number = 2`.execute(
      t.db.kysely,
    );
    expect((await verifyChain(t.db.kysely, 'ten_cp', { signer })).ok).toBe(true);

    // Removing the first: the second no longer links to it.
    await sql`delete from audit_checkpoints where tenant_id = 'ten_cp' and number = 1`.execute(t.db.kysely);
    report = await verifyChain(t.db.kysely, 'ten_cp', { signer });
    expect(report.problems).toContainEqual(expect.objectContaining({ kind: 'checkpoint_missing' }));

    // A verifier holding another key trusts none of them.
    report = await verifyChain(t.db.kysely, 'ten_cp', { signer: ed25519Signer('test-ed25519:other') });
    expect(report.problems).toContainEqual(
      expect.objectContaining({
        kind: 'checkpoint_signature',
        detail: expect.stringContaining('does not trust'),
      }),
    );
  });

  it('a removed latest checkpoint shows as an unsigned tail older than the checkpoint interval', async () => {
    await chainWithCheckpoint('ten_tail');
    await sql`delete from audit_checkpoints where tenant_id = 'ten_tail' and number = 2`.execute(t.db.kysely);
    await rechain(t.db.kysely, 'ten_tail', 5, (e) => ({ ...e, action: 'cloudflare.verify' }));
    // Within the interval the tail is merely not signed yet.
    expect(await verifyChain(t.db.kysely, 'ten_tail', { signer, maxUnsealedMs: 3_600_000 })).toMatchObject({
      ok: true,
      checkpoints: { last_seq: 4, unsealed_records: 2 },
    });
    const later = new Date(Date.now() + 2 * 3_600_000);
    const report = await verifyChain(t.db.kysely, 'ten_tail', {
      signer,
      maxUnsealedMs: 3_600_000,
      now: later,
    });
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 5, kind: 'checkpoint_missing' }));
  });

  it('removing a whole tenant (records, head) leaves its checkpoints accusing', async () => {
    await chainWithCheckpoint('ten_gone');
    await sql`delete from audit_events where tenant_id = 'ten_gone'`.execute(t.db.kysely);
    await sql`delete from audit_chain_heads where tenant_id = 'ten_gone'`.execute(t.db.kysely);
    const report = await verifyChain(t.db.kysely, 'ten_gone', { signer });
    expect(report.problems).toContainEqual(expect.objectContaining({ seq: 6, kind: 'rewritten' }));
  });

  it('vouches at partition close for the anchors that replace dropped records; a forged anchor is reported', async () => {
    const store = createAuditStore({ db: t.db.kysely });
    const checkpoints = createAuditCheckpointer({ db: t.db.kysely, signer });
    const day = (offset: number) => new Date(Date.now() + offset * 86_400_000);
    // Records written a week ago with a 1-day retention: their partition has expired.
    await store.append(
      'ten_expiry',
      [record({ occurred_at: day(-7).toISOString() }), record({ occurred_at: day(-7).toISOString() })],
      {
        retentionDays: 1,
      },
    );
    await store.append('ten_expiry', [record(), record(), record()], { retentionDays: 90 });
    const report = await runAuditMaintenance(t.db.kysely, {
      now: new Date(),
      retentionDays: [1, 90],
      beforeDrop: async (_partition, anchors) => {
        await checkpoints.run('partition_close', anchors);
      },
    });
    expect(report.dropped.length).toBeGreaterThan(0);
    const [closing] = await listCheckpoints(t.db.kysely, 'ten_expiry');
    expect(closing).toMatchObject({
      reason: 'partition_close',
      anchors: [{ from_seq: 1, to_seq: 2, row_count: 2 }],
    });
    expect(await verifyChain(t.db.kysely, 'ten_expiry', { signer })).toMatchObject({
      ok: true,
      expired: 2,
      checked: 3,
    });

    // Deleting records 3..4 and passing them off as expired: the chain links, but no checkpoint vouches.
    const { rows } = await sql<{ seq: string; prev_hash: string; hash: string }>`
      select seq::text, prev_hash, hash from audit_events where tenant_id = 'ten_expiry' and seq in (3, 4) order by seq`.execute(
      t.db.kysely,
    );
    await sql`delete from audit_events where tenant_id = 'ten_expiry' and seq in (3, 4)`.execute(t.db.kysely);
    await sql`insert into audit_chain_anchors (tenant_id, from_seq, to_seq, row_count, first_prev_hash, last_hash, expires_on)
      values ('ten_expiry', 3, 4, 2, ${rows[0]?.prev_hash ?? ''}, ${rows[1]?.hash ?? ''}, current_date - 1)`.execute(
      t.db.kysely,
    );
    expect((await verifyChain(t.db.kysely, 'ten_expiry')).ok).toBe(true);
    const forged = await verifyChain(t.db.kysely, 'ten_expiry', { signer });
    expect(forged.problems).toContainEqual(expect.objectContaining({ seq: 3, kind: 'anchor_unsigned' }));
  });
});
