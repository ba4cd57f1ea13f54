import { rowToEvent } from '@warden/audit';
import type { AuditEvent } from '@warden/audit';
import type { Database } from '@warden/db';
import type { FakeRequestLogEntry } from '@warden/testing';
import type { Kysely } from 'kysely';

/** How far the fake's clock may be behind the database clock that stamps the trail (same host). */
const CLOCK_SKEW_MS = 1_000;

export interface UpstreamTrailReport {
  /** Requests the fake received whose intent and outcome (a real one) are in the trail. */
  readonly recorded: number;
  /** Requests whose outcome is recorded as `unknown` (sent, answer never recorded). */
  readonly unknown: number;
  /** Requests whose intent is in the trail but no outcome yet. */
  readonly withoutOutcome: ReadonlyArray<{ request: string; intentId: string }>;
  /** Requests the fake received with no intent in the trail: what must never happen. */
  readonly unrecorded: readonly string[];
  /** Outcomes that disagree with what the fake answered (status, cf-ray). */
  readonly mismatched: readonly string[];
}

/**
 * Compares the fake Cloudflare's request log with the audit trail, request by request. A request
 * is matched to an intent with the same method and path (tests give every request its own path,
 * so the match is exact) written no later than the fake received it; its outcome is the record
 * naming that intent. An outcome with a response carries the fake's `cf-ray` and status.
 */
export async function compareUpstreamWithTrail(
  db: Kysely<Database>,
  tenantId: string,
  requests: readonly FakeRequestLogEntry[],
): Promise<UpstreamTrailReport> {
  const rows = await db
    .selectFrom('audit_events')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('kind', '=', 'upstream_request')
    .orderBy('seq')
    .execute();
  const events = rows.map(rowToEvent);
  const intents = new Map<string, AuditEvent[]>();
  const outcomes = new Map<string, AuditEvent[]>();
  for (const event of events) {
    if (!event.upstream) continue;
    if (event.outcome === 'pending') {
      const key = `${event.upstream.method} ${event.upstream.path}`;
      intents.set(key, [...(intents.get(key) ?? []), event]);
    } else if (event.intent_id) {
      outcomes.set(event.intent_id, [...(outcomes.get(event.intent_id) ?? []), event]);
    }
  }
  let recorded = 0;
  let unknown = 0;
  const withoutOutcome: Array<{ request: string; intentId: string }> = [];
  const unrecorded: string[] = [];
  const mismatched: string[] = [];
  for (const request of [...requests].sort((a, b) => a.at.getTime() - b.at.getTime())) {
    const key = `${request.method} ${request.path}`;
    const candidates = intents.get(key) ?? [];
    const index = candidates.findIndex(
      (intent) => Date.parse(intent.occurred_at) <= request.at.getTime() + CLOCK_SKEW_MS,
    );
    const intent = index >= 0 ? candidates.splice(index, 1)[0] : undefined;
    if (!intent) {
      unrecorded.push(`${key} at ${request.at.toISOString()} (status ${request.status})`);
      continue;
    }
    const answers = outcomes.get(intent.id) ?? [];
    // A late answer can follow an `unknown` the sweeper wrote first: the answer is what happened.
    const answer = answers.find((o) => o.outcome !== 'unknown') ?? answers[0];
    if (!answer) {
      withoutOutcome.push({ request: key, intentId: intent.id });
    } else if (answer.outcome === 'unknown') {
      unknown++;
    } else if (answer.upstream?.cf_ray !== request.cfRay || answer.upstream?.status !== request.status) {
      mismatched.push(
        `${key}: trail says ${answer.upstream?.status} ${answer.upstream?.cf_ray}, Cloudflare answered ${request.status} ${request.cfRay}`,
      );
    } else {
      recorded++;
    }
  }
  return { recorded, unknown, withoutOutcome, unrecorded, mismatched };
}
