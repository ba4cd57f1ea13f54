/**
 * A domain proven by its DNS record stays proven only while the record is there. Each claim
 * proven by DNS is looked up again every `recheck.intervalMs`; a look-up that finds the record
 * missing starts the claim's grace (`sso.domain_proof_missing` in the tenant's trail, with the
 * time it lapses), the claim is then looked up at every run, and one still missing after
 * `recheck.lapseMs` lapses to pending (`sso.domain_lapsed`): it routes nobody, and whoever proves
 * the domain first holds it, as for a domain never claimed (a domain that changed hands goes to
 * its new owner). The record back in time ends the grace (`sso.domain_proof_restored`).
 *
 * Only an answer counts: a resolver that times out or fails (SERVFAIL) neither starts nor
 * advances the grace. Claims counted without a record (`before_proofs`, or listed where no
 * proof is asked) are not looked up. Times are the database's, as every replica sees them.
 */
import { SYSTEM_CALLER, lifecycleRecord } from '@warden/audit';
import type { AuditCaller } from '@warden/audit';
import { isWardenError, noopLogger } from '@warden/core';
import type { Logger } from '@warden/core';
import type { Database } from '@warden/db';
import type { Expression, ExpressionBuilder, Kysely, SqlBool } from 'kysely';
import { sql } from 'kysely';
import type { LifecycleAudit } from './lifecycle.ts';
import { domainProofRecord, lapseTime, lockClaims, lookUpProof, recheckOf } from './sso-domain-claims.ts';
import type { DomainProof } from './sso-domain-claims.ts';

const HOUR_MS = 3_600_000;
/** Claims looked up per batch; a run takes batches until none is due (or its time is up). */
const DEFAULT_BATCH = 100;
/** Look-ups in flight at once. */
const LOOK_UPS_AT_ONCE = 8;

/** How often the re-check runs: every hour, or more often if claims are due more often. */
export function recheckPeriodMs(recheck: NonNullable<DomainProof['recheck']>): number {
  return Math.min(recheck.intervalMs, HOUR_MS);
}

/**
 * The claim a look-up was made for: it applies only if the claim is still the one looked up,
 * and no other look-up was applied since it was read (`checkedAt`, its last check then).
 */
export interface CheckedClaim {
  readonly tenantId: string;
  readonly domain: string;
  readonly proofToken: string;
  readonly checkedAt: Date | null;
}

/**
 * The claim as it was looked up: still proven by its DNS record with the same token, and with no
 * look-up applied since it was read (a verify, another replica's run): that newer answer stands.
 */
function stillTheClaim(
  eb: ExpressionBuilder<Database, 'tenant_sso_domains'>,
  claim: CheckedClaim,
): Expression<SqlBool> {
  return eb.and([
    eb('tenant_id', '=', claim.tenantId),
    eb('domain', '=', claim.domain),
    eb('proof_token', '=', claim.proofToken),
    eb('proven_by', '=', 'dns'),
    eb('verified_at', 'is not', null),
    sql<boolean>`proof_checked_at is not distinct from ${claim.checkedAt}`,
  ]);
}

/** What a look-up changed: nothing (the claim changed meanwhile), or where the claim stands now. */
export type LookUpApplied = 'gone' | 'kept' | 'missing' | 'still_missing' | 'restored' | 'lapsed';

/**
 * Applies one look-up of a DNS-proven claim's record, in `trx` under the claims lock, recorded
 * in the tenant's trail by `actor` (Warden for the scheduled re-check, the tenant when it asks
 * to verify). Returns the claim's lapse time while its record is missing.
 */
export async function applyLookUp(
  trx: Kysely<Database>,
  audit: LifecycleAudit,
  claim: CheckedClaim,
  result: 'found' | 'missing',
  options: { readonly recheck: NonNullable<DomainProof['recheck']>; readonly actor: AuditCaller },
): Promise<{ applied: LookUpApplied; lapsesAt: Date | null }> {
  const { recheck } = options;
  await lockClaims(trx);
  const row = await trx
    .selectFrom('tenant_sso_domains')
    .select([
      'proof_missing_since',
      sql<boolean>`proof_missing_since <= now() - make_interval(secs => ${recheck.lapseMs / 1000})`.as(
        'lapse_due',
      ),
    ])
    .where((eb) => stillTheClaim(eb, claim))
    .forUpdate()
    .executeTakeFirst();
  // Released, re-claimed, lapsed, removed or looked up again meanwhile: this answer is stale.
  if (!row) return { applied: 'gone', lapsesAt: null };
  const update = (set: Record<string, unknown>) =>
    trx
      .updateTable('tenant_sso_domains')
      .set({ proof_checked_at: sql`now()`, ...set })
      .where('tenant_id', '=', claim.tenantId)
      .where('domain', '=', claim.domain)
      .returning('proof_missing_since')
      .executeTakeFirstOrThrow();
  const lapsesAt = (updated: { proof_missing_since: Date | null }) =>
    updated.proof_missing_since ? lapseTime(updated.proof_missing_since, recheck) : null;
  const record = (action: string, details: Record<string, unknown>) =>
    audit(trx, claim.tenantId, [lifecycleRecord({ caller: options.actor }, { action, details })]);
  const { name } = domainProofRecord(claim.domain, claim.proofToken);

  if (result === 'found') {
    await update({ proof_missing_since: null });
    if (!row.proof_missing_since) return { applied: 'kept', lapsesAt: null };
    await record('sso.domain_proof_restored', {
      domain: claim.domain,
      record: name,
      missing_since: row.proof_missing_since.toISOString(),
    });
    return { applied: 'restored', lapsesAt: null };
  }
  if (!row.proof_missing_since) {
    const lapses = lapsesAt(await update({ proof_missing_since: sql`now()` }));
    await record('sso.domain_proof_missing', {
      domain: claim.domain,
      record: name,
      lapses_at: lapses?.toISOString() ?? null,
    });
    return { applied: 'missing', lapsesAt: lapses };
  }
  if (!row.lapse_due) return { applied: 'still_missing', lapsesAt: lapsesAt(await update({})) };
  // Pending again, with the same token: the tenant can prove it again by publishing the record.
  await update({ verified_at: null, proven_by: null, proof_missing_since: null });
  await record('sso.domain_lapsed', {
    domain: claim.domain,
    record: name,
    missing_since: row.proof_missing_since.toISOString(),
  });
  return { applied: 'lapsed', lapsesAt: null };
}

export interface RecheckReport {
  /** Claims looked up. */
  readonly checked: number;
  /** What the look-ups that got an answer did, by outcome. */
  readonly applied: Readonly<Record<LookUpApplied, number>>;
  /** Look-ups DNS did not answer (tried again at the next interval). */
  readonly unanswered: number;
}

export interface SsoDomainRecheck {
  /** Looks up the claims due (at most a batch, the longest unchecked first) and applies what DNS says. */
  runOnce(): Promise<RecheckReport>;
}

export function createSsoDomainRecheck(deps: {
  db: Kysely<Database>;
  audit: LifecycleAudit;
  domainProof: DomainProof;
  logger?: Logger;
  batch?: number;
  /** How long one run may go on taking batches; default half the run period. */
  runBudgetMs?: number;
}): SsoDomainRecheck {
  const { db, audit, domainProof } = deps;
  const logger = deps.logger ?? noopLogger;
  const batch = deps.batch ?? DEFAULT_BATCH;

  /**
   * The claims due, most urgent first: those whose record is missing (longest missing first:
   * their lapse may be due), then the longest unchecked.
   */
  async function due(recheck: NonNullable<DomainProof['recheck']>): Promise<CheckedClaim[]> {
    const every = (ms: number) => sql<Date>`now() - make_interval(secs => ${ms / 1000})`;
    const rows = await db
      .selectFrom('tenant_sso_domains')
      .select(['tenant_id', 'domain', 'proof_token', 'proof_checked_at'])
      .where('proven_by', '=', 'dns')
      .where('verified_at', 'is not', null)
      .where('proof_token', 'is not', null)
      .where((eb) =>
        eb.or([
          eb('proof_checked_at', 'is', null),
          eb('proof_checked_at', '<=', every(recheck.intervalMs)),
          // A missing record is looked up at every run, so its return (or lapse) shows soon.
          eb.and([
            eb('proof_missing_since', 'is not', null),
            eb('proof_checked_at', '<=', every(recheckPeriodMs(recheck) / 2)),
          ]),
        ]),
      )
      .orderBy(sql`proof_missing_since asc nulls last`)
      .orderBy(sql`proof_checked_at asc nulls first`)
      .limit(batch)
      .execute();
    return rows.map((r) => ({
      tenantId: r.tenant_id,
      domain: r.domain,
      proofToken: r.proof_token ?? '',
      checkedAt: r.proof_checked_at,
    }));
  }

  async function check(
    claim: CheckedClaim,
    recheck: NonNullable<DomainProof['recheck']>,
  ): Promise<LookUpApplied | 'unanswered'> {
    let result: 'found' | 'missing';
    try {
      result = await lookUpProof(domainProof, claim.domain, claim.proofToken);
    } catch (error) {
      if (!isWardenError(error) || error.code !== 'unavailable') throw error;
      logger.warn({ domain: claim.domain, err: error.message }, 'SSO domain re-check: DNS did not answer');
      // Asked again at the next interval; the others in the queue go first meanwhile.
      await db
        .updateTable('tenant_sso_domains')
        .set({ proof_checked_at: sql`now()` })
        .where((eb) => stillTheClaim(eb, claim))
        .execute();
      return 'unanswered';
    }
    const { applied } = await db
      .transaction()
      .execute((trx) => applyLookUp(trx, audit, claim, result, { recheck, actor: SYSTEM_CALLER }));
    if (applied === 'missing' || applied === 'lapsed') {
      logger.warn(
        { tenantId: claim.tenantId, domain: claim.domain, applied },
        'SSO domain proof record missing',
      );
    }
    return applied;
  }

  return {
    async runOnce() {
      const applied: Record<LookUpApplied, number> = {
        gone: 0,
        kept: 0,
        missing: 0,
        still_missing: 0,
        restored: 0,
        lapsed: 0,
      };
      const recheck = recheckOf(domainProof);
      if (!recheck) return { checked: 0, applied, unanswered: 0 };
      // Batches until nothing is due: every claim looked up moves out of the due set (its check
      // time is now), so a deployment with many claims is not left further behind each run.
      const deadline = performance.now() + (deps.runBudgetMs ?? recheckPeriodMs(recheck) / 2);
      let checked = 0;
      let unanswered = 0;
      for (;;) {
        const claims = await due(recheck);
        if (claims.length === 0) break;
        let next = 0;
        const worker = async () => {
          while (next < claims.length) {
            const claim = claims[next++];
            if (!claim) break;
            const outcome = await check(claim, recheck);
            if (outcome === 'unanswered') unanswered++;
            else applied[outcome]++;
          }
        };
        await Promise.all(Array.from({ length: Math.min(LOOK_UPS_AT_ONCE, claims.length) }, worker));
        checked += claims.length;
        // Every answer so far was stale (claims changed meanwhile): asking again repeats it.
        if (applied.gone >= checked || performance.now() >= deadline) {
          if (performance.now() >= deadline) {
            logger.warn(
              { checked },
              'SSO domain re-check: claims still due when the run ended; the next run goes on',
            );
          }
          break;
        }
      }
      return { checked, applied, unanswered };
    },
  };
}
