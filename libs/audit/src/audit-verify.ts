import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';
import type { AuditCheckpoint } from './audit-event.ts';
import { checkpointDigest, checkpointMessage, listCheckpoints } from './audit-checkpoints.ts';
import type { CheckpointSigner } from './audit-checkpoints.ts';
import { GENESIS_HASH, hashEvent } from './audit-hash.ts';
import { rowToEvent } from './audit.store.ts';

export interface ChainProblem {
  readonly seq: number;
  readonly kind:
    | 'edited'
    | 'missing'
    | 'broken_link'
    | 'truncated'
    | 'out_of_order'
    /** The chain disagrees with a signed checkpoint: history was rewritten (and re-hashed). */
    | 'rewritten'
    /** A checkpoint whose signature does not hold, or made by a key this verifier does not trust. */
    | 'checkpoint_signature'
    /** A checkpoint was removed, or records that should have one have none. */
    | 'checkpoint_missing'
    /** A retention anchor no signed checkpoint vouches for: records deleted and passed off as expired. */
    | 'anchor_unsigned';
  readonly detail: string;
}

export interface CheckpointSummary {
  /** Checkpoints whose signature was checked. */
  readonly checked: number;
  readonly last_seq: number | null;
  readonly last_signed_at: string | null;
  /** Records after the last checkpoint (not yet signed). */
  readonly unsealed_records: number;
}

export interface ChainReport {
  readonly tenant_id: string;
  readonly checked: number;
  /** Records accounted for by retention anchors (dropped partitions). */
  readonly expired: number;
  /** The chain is intact: nothing edited, removed, reordered, truncated or rewritten. */
  readonly ok: boolean;
  readonly problems: ChainProblem[];
  /**
   * Upstream requests whose intent was recorded but whose outcome never was (yet): in flight,
   * or sent by a replica that died before recording the answer. The sweeper closes them as
   * `unknown` after a grace period.
   */
  readonly intents_without_outcome: ReadonlyArray<{ seq: number; id: string; occurred_at: string }>;
  /** Outcomes recorded as `unknown`: requests that were sent but whose answer was never recorded. */
  readonly unknown_outcomes: number;
  /** What the signed checkpoints say; null when they were not checked (no signer given). */
  readonly checkpoints: CheckpointSummary | null;
}

export interface VerifyOptions {
  /** Checks the chain against its signed checkpoints (the key must be the one that signs them). */
  readonly signer?: CheckpointSigner;
  /**
   * Records older than this (ms before `now`) must be covered by a checkpoint: checkpoints are
   * made at a fixed interval, so an older unsigned tail means one was removed (or checkpoints
   * stopped). Without it the tail is only counted.
   */
  readonly maxUnsealedMs?: number;
  readonly now?: Date;
  readonly batchSize?: number;
}

const MAX_PROBLEMS = 100;

interface CheckedCheckpoint {
  readonly checkpoint: AuditCheckpoint;
  /** Its digest recomputed from its fields. */
  readonly digest: string;
  readonly signed: boolean;
}

/**
 * Verifies a tenant's checkpoints among themselves: every signature, the numbering, and each
 * one's link to the previous one's digest (recomputed, never taken from the row).
 */
async function checkCheckpoints(
  checkpoints: readonly AuditCheckpoint[],
  signer: CheckpointSigner,
  note: (p: ChainProblem) => void,
): Promise<CheckedCheckpoint[]> {
  const checked: CheckedCheckpoint[] = [];
  let previous: CheckedCheckpoint | null = null;
  for (const checkpoint of checkpoints) {
    const digest = checkpointDigest(checkpoint);
    const result = await signer.verify(checkpointMessage(digest), {
      keyId: checkpoint.key_id,
      algorithm: checkpoint.algorithm,
      signature: Buffer.from(checkpoint.signature, 'base64'),
    });
    if (result !== 'valid') {
      note({
        seq: checkpoint.seq,
        kind: 'checkpoint_signature',
        detail:
          result === 'invalid'
            ? `checkpoint ${checkpoint.number} does not match its signature (edited after signing)`
            : `checkpoint ${checkpoint.number} is signed by ${checkpoint.key_id}, a key this verifier does not trust`,
      });
    }
    const expectedNumber = (previous?.checkpoint.number ?? 0) + 1;
    if (checkpoint.number !== expectedNumber) {
      note({
        seq: checkpoint.seq,
        kind: 'checkpoint_missing',
        detail: `checkpoints ${expectedNumber}..${checkpoint.number - 1} are missing`,
      });
    } else if (checkpoint.previous_digest !== (previous?.digest ?? GENESIS_HASH)) {
      note({
        seq: checkpoint.seq,
        kind: 'checkpoint_missing',
        detail: `checkpoint ${checkpoint.number} does not name the digest of the checkpoint before it`,
      });
    }
    if (previous && checkpoint.seq < previous.checkpoint.seq) {
      note({
        seq: checkpoint.seq,
        kind: 'rewritten',
        detail: `checkpoint ${checkpoint.number} signs seq ${checkpoint.seq}, behind checkpoint ${previous.checkpoint.number} (seq ${previous.checkpoint.seq})`,
      });
    }
    const entry = { checkpoint, digest, signed: result === 'valid' };
    checked.push(entry);
    previous = entry;
  }
  return checked;
}

/**
 * Walks a tenant's chain in seq order: recomputes every hash, checks each link, and accepts a
 * gap only where a retention anchor covers exactly that range. With a signer it also checks the
 * chain against its signed checkpoints: each must verify, name the one before it, and agree with
 * the record it signs; every anchor must be vouched for by one; and (with `maxUnsealedMs`) no
 * record older than that may be left unsigned.
 */
export async function verifyChain(
  db: Kysely<Database>,
  tenantId: string,
  options: VerifyOptions = {},
): Promise<ChainReport> {
  const batchSize = options.batchSize ?? 2000;
  const anchors = new Map(
    (await db.selectFrom('audit_chain_anchors').selectAll().where('tenant_id', '=', tenantId).execute()).map(
      (a) => [Number(a.from_seq), a],
    ),
  );
  const problems: ChainProblem[] = [];
  const note = (p: ChainProblem) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };

  const checkpoints = options.signer
    ? await checkCheckpoints(await listCheckpoints(db, tenantId), options.signer, note)
    : [];
  /** Signed checkpoints by the seq they sign; only what verified can be held against the chain. */
  const bySeq = new Map<number, AuditCheckpoint[]>();
  for (const { checkpoint, signed } of checkpoints) {
    if (!signed) continue;
    bySeq.set(checkpoint.seq, [...(bySeq.get(checkpoint.seq) ?? []), checkpoint]);
  }
  const against = (seq: number, hash: string, what: string) => {
    for (const checkpoint of bySeq.get(seq) ?? []) {
      if (checkpoint.hash !== hash) {
        note({
          seq,
          kind: 'rewritten',
          detail: `${what} at seq ${seq} has another hash than signed checkpoint ${checkpoint.number} (signed ${checkpoint.signed_at}): history was rewritten`,
        });
      }
    }
    bySeq.delete(seq);
  };

  let expectedSeq = 1;
  let expectedPrev = GENESIS_HASH;
  let checked = 0;
  let expired = 0;
  let unknownOutcomes = 0;
  let lastTime = '';
  const openIntents = new Map<string, { seq: number; id: string; occurred_at: string }>();
  const lastSigned = checkpoints.filter((c) => c.signed).at(-1)?.checkpoint ?? null;
  let unsealed = 0;
  let oldestUnsealed: string | null = null;

  // Consume anchors that start exactly where the chain is.
  const skipAnchors = (upTo: number) => {
    let anchor = anchors.get(expectedSeq);
    while (anchor && expectedSeq < upTo) {
      if (anchor.first_prev_hash !== expectedPrev) {
        note({
          seq: expectedSeq,
          kind: 'broken_link',
          detail: 'retention anchor does not link to the previous record',
        });
      }
      expired += Number(anchor.row_count);
      expectedPrev = anchor.last_hash;
      expectedSeq = Number(anchor.to_seq) + 1;
      against(Number(anchor.to_seq), anchor.last_hash, 'the retention anchor');
      anchor = anchors.get(expectedSeq);
    }
  };

  let after = 0;
  for (;;) {
    const rows = await db
      .selectFrom('audit_events')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('seq', '>', String(after))
      .orderBy('seq')
      .limit(batchSize)
      .execute();
    for (const row of rows) {
      const event = rowToEvent(row);
      skipAnchors(event.seq);
      if (event.seq > expectedSeq) {
        note({
          seq: expectedSeq,
          kind: 'missing',
          detail: `records ${expectedSeq}..${event.seq - 1} are missing and were not expired by retention`,
        });
      }
      if (event.prev_hash !== expectedPrev && event.seq >= expectedSeq) {
        note({ seq: event.seq, kind: 'broken_link', detail: 'prev_hash does not match the previous record' });
      }
      const { hash, ...unsigned } = event;
      if (hashEvent(unsigned) !== hash) {
        note({
          seq: event.seq,
          kind: 'edited',
          detail: 'the record does not match its hash (edited after writing)',
        });
      }
      if (event.occurred_at < lastTime) {
        note({
          seq: event.seq,
          kind: 'out_of_order',
          detail: `recorded at ${event.occurred_at}, before the record ahead of it (${lastTime})`,
        });
      }
      against(event.seq, event.hash, 'the record');
      if (!lastSigned || event.seq > lastSigned.seq) {
        unsealed++;
        oldestUnsealed ??= event.occurred_at;
      }
      lastTime = event.occurred_at;
      if (event.outcome === 'pending') {
        openIntents.set(event.id, { seq: event.seq, id: event.id, occurred_at: event.occurred_at });
      } else if (event.intent_id) {
        openIntents.delete(event.intent_id);
      }
      if (event.outcome === 'unknown') unknownOutcomes++;
      expectedSeq = event.seq + 1;
      expectedPrev = event.hash;
      checked++;
    }
    const last = rows[rows.length - 1];
    if (!last || rows.length < batchSize) break;
    after = Number(last.seq);
  }

  const head = await db
    .selectFrom('audit_chain_heads')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  if (head) {
    skipAnchors(Number(head.seq) + 1);
    if (Number(head.seq) !== expectedSeq - 1 || head.hash !== expectedPrev) {
      note({
        seq: expectedSeq,
        kind: 'truncated',
        detail: `the chain head is at ${head.seq} but the records end at ${expectedSeq - 1}`,
      });
    }
  }

  if (options.signer) {
    // Signed positions the walk never reached: the records were removed (or the tenant's whole
    // chain, head included), or they sit inside an expired range no anchor ends at.
    for (const [seq, list] of bySeq) {
      const inExpiredRange = [...anchors.values()].some(
        (a) => seq >= Number(a.from_seq) && seq <= Number(a.to_seq),
      );
      if (inExpiredRange) continue;
      for (const checkpoint of list) {
        note({
          seq,
          kind: 'rewritten',
          detail: `signed checkpoint ${checkpoint.number} covers seq ${seq}, but the chain ends at ${expectedSeq - 1}`,
        });
      }
    }
    const vouched = new Set(
      checkpoints
        .filter((c) => c.signed)
        .flatMap(({ checkpoint }) =>
          checkpoint.anchors.map((a) => `${a.from_seq}:${a.to_seq}:${a.first_prev_hash}:${a.last_hash}`),
        ),
    );
    for (const anchor of anchors.values()) {
      if (!vouched.has(`${anchor.from_seq}:${anchor.to_seq}:${anchor.first_prev_hash}:${anchor.last_hash}`)) {
        note({
          seq: Number(anchor.from_seq),
          kind: 'anchor_unsigned',
          detail: `records ${anchor.from_seq}..${anchor.to_seq} are said to have expired, but no signed checkpoint vouches for it`,
        });
      }
    }
    const now = options.now ?? new Date();
    if (
      options.maxUnsealedMs !== undefined &&
      oldestUnsealed !== null &&
      Date.parse(oldestUnsealed) < now.getTime() - options.maxUnsealedMs
    ) {
      note({
        seq: (lastSigned?.seq ?? 0) + 1,
        kind: 'checkpoint_missing',
        detail: `${unsealed} record(s) from ${oldestUnsealed} on have no signed checkpoint, though checkpoints are made every interval: one was removed, or checkpoints are not being made`,
      });
    }
  }

  return {
    tenant_id: tenantId,
    checked,
    expired,
    ok: problems.length === 0,
    problems,
    intents_without_outcome: [...openIntents.values()].slice(0, MAX_PROBLEMS),
    unknown_outcomes: unknownOutcomes,
    checkpoints: options.signer
      ? {
          checked: checkpoints.length,
          last_seq: lastSigned?.seq ?? null,
          last_signed_at: lastSigned?.signed_at ?? null,
          unsealed_records: unsealed,
        }
      : null,
  };
}

/**
 * Every chain: those with a head and, with a signer, those that only have checkpoints left (a
 * tenant's records and head removed together).
 */
export async function verifyAllChains(
  db: Kysely<Database>,
  options: VerifyOptions = {},
): Promise<ChainReport[]> {
  const heads = await db.selectFrom('audit_chain_heads').select('tenant_id').execute();
  const signed = options.signer
    ? await db.selectFrom('audit_checkpoints').select('tenant_id').distinct().execute()
    : [];
  const tenants = [...new Set([...heads, ...signed].map((t) => t.tenant_id))].sort();
  const reports: ChainReport[] = [];
  for (const tenantId of tenants) reports.push(await verifyChain(db, tenantId, options));
  return reports;
}
