import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';
import { GENESIS_HASH, hashEvent } from './audit-hash.ts';
import { rowToEvent } from './audit.store.ts';

export interface ChainProblem {
  readonly seq: number;
  readonly kind: 'edited' | 'missing' | 'broken_link' | 'truncated' | 'out_of_order';
  readonly detail: string;
}

export interface ChainReport {
  readonly tenant_id: string;
  readonly checked: number;
  /** Records accounted for by retention anchors (dropped partitions). */
  readonly expired: number;
  /** The chain is intact: nothing edited, removed, reordered or truncated. */
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
}

const MAX_PROBLEMS = 100;

/**
 * Walks a tenant's chain in seq order: recomputes every hash, checks each link, and
 * accepts a gap only where a retention anchor covers exactly that range.
 */
export async function verifyChain(
  db: Kysely<Database>,
  tenantId: string,
  batchSize = 2000,
): Promise<ChainReport> {
  const anchors = new Map(
    (await db.selectFrom('audit_chain_anchors').selectAll().where('tenant_id', '=', tenantId).execute()).map(
      (a) => [Number(a.from_seq), a],
    ),
  );
  const problems: ChainProblem[] = [];
  const note = (p: ChainProblem) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  let expectedSeq = 1;
  let expectedPrev = GENESIS_HASH;
  let checked = 0;
  let expired = 0;
  let unknownOutcomes = 0;
  let lastTime = '';
  const openIntents = new Map<string, { seq: number; id: string; occurred_at: string }>();

  // Consume anchors that start exactly where the chain is; returns whether any did.
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
  return {
    tenant_id: tenantId,
    checked,
    expired,
    ok: problems.length === 0,
    problems,
    intents_without_outcome: [...openIntents.values()].slice(0, MAX_PROBLEMS),
    unknown_outcomes: unknownOutcomes,
  };
}

export async function verifyAllChains(db: Kysely<Database>): Promise<ChainReport[]> {
  const tenants = await db.selectFrom('audit_chain_heads').select('tenant_id').orderBy('tenant_id').execute();
  const reports: ChainReport[] = [];
  for (const t of tenants) reports.push(await verifyChain(db, t.tenant_id));
  return reports;
}
