import { createHash } from 'node:crypto';
import type { Clock, Logger } from '@warden/core';
import { newId, noopLogger, systemClock } from '@warden/core';
import type { Database } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { GENESIS_HASH, canonicalJson } from './audit-hash.ts';
import type { AuditCheckpoint, CheckpointAnchor, CheckpointFields, CheckpointReason } from './audit-event.ts';
import { checkpointEvent } from './audit-records.ts';
import type { RetentionAnchor } from './audit-retention.ts';

/**
 * Signed checkpoints of the audit chains, in the manner of CloudTrail's digest files. The hash
 * chain alone proves nothing against whoever can write the database: edit a record, recompute
 * every hash after it with `hashEvent` and move the chain head, and the chain is consistent
 * again. A checkpoint signs a tenant's chain head (seq, hash, time) with a key the database
 * never holds (AWS KMS, or the local key file), so such a rewrite disagrees with a signature
 * nobody can forge. Checkpoints of a tenant are numbered and each names the digest of the one
 * before, so removing one shows; one made when retention drops a partition also vouches for
 * the anchors that replace the dropped records, so a deletion cannot pass for expiry.
 */
export const CHECKPOINT_FORMAT = 'warden-audit-checkpoint-v1';

/** What signs and checks checkpoints (`Signer` in `@warden/kms` is one). */
export interface CheckpointSigner {
  sign(message: Buffer): Promise<CheckpointSignature>;
  verify(message: Buffer, signature: CheckpointSignature): Promise<'valid' | 'invalid' | 'unknown_key'>;
}

export interface CheckpointSignature {
  readonly keyId: string;
  readonly algorithm: string;
  readonly signature: Buffer;
}

export function checkpointDigest(fields: CheckpointFields): string {
  const canonical = canonicalJson({
    format: CHECKPOINT_FORMAT,
    id: fields.id,
    tenant_id: fields.tenant_id,
    number: fields.number,
    seq: fields.seq,
    hash: fields.hash,
    head_at: fields.head_at,
    signed_at: fields.signed_at,
    reason: fields.reason,
    previous_digest: fields.previous_digest,
    anchors: fields.anchors.map((a) => ({
      from_seq: a.from_seq,
      to_seq: a.to_seq,
      row_count: a.row_count,
      first_prev_hash: a.first_prev_hash,
      last_hash: a.last_hash,
      expires_on: a.expires_on,
    })),
  });
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** The bytes signed: the format and the digest, so a signature cannot be replayed for anything else. */
export function checkpointMessage(digest: string): Buffer {
  return Buffer.from(`${CHECKPOINT_FORMAT}:${digest}`, 'utf8');
}

interface CheckpointRow {
  tenant_id: string;
  number: string;
  id: string;
  seq: string;
  hash: string;
  head_at: Date | null;
  signed_at: Date;
  reason: string;
  previous_digest: string;
  anchors: unknown;
  digest: string;
  key_id: string;
  algorithm: string;
  signature: string;
}

function toAnchors(value: unknown): CheckpointAnchor[] {
  return Array.isArray(value) ? (value as CheckpointAnchor[]) : [];
}

export function rowToCheckpoint(row: CheckpointRow): AuditCheckpoint {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    number: Number(row.number),
    seq: Number(row.seq),
    hash: row.hash,
    head_at: row.head_at ? row.head_at.toISOString() : null,
    signed_at: row.signed_at.toISOString(),
    reason: row.reason as CheckpointReason,
    previous_digest: row.previous_digest,
    anchors: toAnchors(row.anchors),
    digest: row.digest,
    key_id: row.key_id,
    algorithm: row.algorithm,
    signature: row.signature,
  };
}

/** A tenant's checkpoints, oldest first. */
export async function listCheckpoints(db: Kysely<Database>, tenantId: string): Promise<AuditCheckpoint[]> {
  const rows = await db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('number')
    .execute();
  return rows.map((row) => rowToCheckpoint(row as CheckpointRow));
}

export interface CheckpointRunReport {
  /** Checkpoints written by this pass. */
  readonly signed: number;
  /** Tenants whose chain had not moved since their last checkpoint. */
  readonly unchanged: number;
}

export interface AuditCheckpointer {
  /**
   * Signs a checkpoint of every chain whose head moved since its last one (and of every chain
   * named in `anchors`, which the checkpoints then vouch for), stores it and queues it for the
   * tenant's SIEM sinks. Throws `unavailable` when the key service cannot sign.
   */
  run(reason: CheckpointReason, anchors?: readonly RetentionAnchor[]): Promise<CheckpointRunReport>;
}

export interface AuditCheckpointerOptions {
  readonly db: Kysely<Database>;
  readonly signer: CheckpointSigner;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Signatures requested at once (KMS has request quotas). */
  readonly concurrency?: number;
}

interface DueHead {
  tenant_id: string;
  seq: string;
  hash: string;
  occurred_at: Date | null;
  last_number: string | null;
  last_digest: string | null;
}

export function createAuditCheckpointer(options: AuditCheckpointerOptions): AuditCheckpointer {
  const { db, signer } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? noopLogger;
  const concurrency = options.concurrency ?? 8;

  async function checkpoint(
    head: DueHead,
    reason: CheckpointReason,
    expiring: readonly RetentionAnchor[],
  ): Promise<boolean> {
    const number = Number(head.last_number ?? 0) + 1;
    let anchors: CheckpointAnchor[] = expiring.map(({ tenant_id: _tenant, ...anchor }) => anchor);
    if (number === 1) {
      // The first checkpoint vouches for the anchors retention made before checkpoints existed.
      const earlier = await db
        .selectFrom('audit_chain_anchors')
        .selectAll()
        .where('tenant_id', '=', head.tenant_id)
        .orderBy('from_seq')
        .execute();
      const known = new Set(anchors.map((a) => a.from_seq));
      anchors = [
        ...earlier
          .filter((a) => !known.has(Number(a.from_seq)))
          .map((a) => ({
            from_seq: Number(a.from_seq),
            to_seq: Number(a.to_seq),
            row_count: Number(a.row_count),
            first_prev_hash: a.first_prev_hash,
            last_hash: a.last_hash,
            expires_on: a.expires_on.toISOString().slice(0, 10),
          })),
        ...anchors,
      ];
    }
    const fields: CheckpointFields = {
      id: newId('chk'),
      tenant_id: head.tenant_id,
      number,
      seq: Number(head.seq),
      hash: head.hash,
      head_at: head.occurred_at ? head.occurred_at.toISOString() : null,
      signed_at: clock.now().toISOString(),
      reason,
      previous_digest: head.last_digest ?? GENESIS_HASH,
      anchors,
    };
    const digest = checkpointDigest(fields);
    const signed = await signer.sign(checkpointMessage(digest));
    const stored: AuditCheckpoint = {
      ...fields,
      digest,
      key_id: signed.keyId,
      algorithm: signed.algorithm,
      signature: signed.signature.toString('base64'),
    };
    // One statement stores the checkpoint and queues it for the tenant's SIEM sinks; another
    // writer that took this number first makes it write nothing.
    const { rows } = await sql<{ n: number }>`
      with stored as (
        insert into audit_checkpoints (tenant_id, number, id, seq, hash, head_at, signed_at, reason,
                                       previous_digest, anchors, digest, key_id, algorithm, signature)
        values (${stored.tenant_id}, ${stored.number}, ${stored.id}, ${stored.seq}, ${stored.hash},
                ${stored.head_at}::timestamptz, ${stored.signed_at}::timestamptz, ${stored.reason},
                ${stored.previous_digest}, ${JSON.stringify(stored.anchors)}::jsonb, ${stored.digest},
                ${stored.key_id}, ${stored.algorithm}, ${stored.signature})
        on conflict (tenant_id, number) do nothing
        returning 1
      ),
      outboxed as (
        insert into outbox (tenant_id, destination_type, destination_id, event_id, payload)
        select ${stored.tenant_id}, 'audit_sink', s.id, ${stored.id}, ${JSON.stringify(checkpointEvent(stored))}::jsonb
        from audit_sinks s
        where s.tenant_id = ${stored.tenant_id} and s.enabled and exists (select from stored)
      )
      select count(*)::int as n from stored`.execute(db);
    return rows[0]?.n === 1;
  }

  return {
    async run(reason, expiring = []) {
      const anchorTenants = [...new Set(expiring.map((a) => a.tenant_id))];
      const { rows: due } = await sql<DueHead & { moved: boolean }>`
        select h.tenant_id, h.seq::text as seq, h.hash, h.occurred_at,
               c.number::text as last_number, c.digest as last_digest,
               (c.number is null or c.seq <> h.seq or c.hash <> h.hash) as moved
        from audit_chain_heads h
        left join lateral (
          select number, digest, seq, hash from audit_checkpoints
          where tenant_id = h.tenant_id order by number desc limit 1
        ) c on true
        order by h.tenant_id`.execute(db);
      const todo = due.filter((h) => h.moved || anchorTenants.includes(h.tenant_id));
      let signed = 0;
      for (let i = 0; i < todo.length; i += concurrency) {
        const results = await Promise.all(
          todo.slice(i, i + concurrency).map((head) =>
            checkpoint(
              head,
              reason,
              expiring.filter((a) => a.tenant_id === head.tenant_id),
            ),
          ),
        );
        signed += results.filter(Boolean).length;
      }
      if (signed > 0) logger.info({ signed, reason }, 'audit checkpoints signed');
      return { signed, unchanged: due.length - todo.length };
    },
  };
}
