import { createHash } from 'node:crypto';
import type { AuditEvent } from './audit-event.ts';

/** The prev_hash of a tenant's first record. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * JSON with object keys sorted at every depth: `details` goes through jsonb, which does not
 * keep key order, and must hash the same after the round trip.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/**
 * SHA-256 over every recorded field in a fixed order, plus the previous record's hash.
 * A changed field, a reordered or a removed record all break the chain. Records that use a
 * field added later (`intent_id`, `body_sha256`, `details`) hash as `v2`, with those fields;
 * the others keep the `v1` form, so old chains still verify. Setting or clearing one of the
 * newer fields changes the form and breaks the hash either way.
 */
export function hashEvent(event: Omit<AuditEvent, 'hash'>): string {
  const u = event.upstream;
  const v2 =
    (event.intent_id ?? null) !== null ||
    (event.body_sha256 ?? null) !== null ||
    (event.details ?? null) !== null;
  const canonical = JSON.stringify([
    v2 ? 'warden-audit-v2' : 'warden-audit-v1',
    event.id,
    event.tenant_id,
    event.seq,
    event.occurred_at,
    event.kind,
    event.action,
    event.outcome,
    event.execution_id,
    event.identifier,
    event.caller.type,
    event.caller.id,
    event.caller.client_name,
    event.caller.client_version,
    event.caller.ip,
    event.agent_run_id,
    event.tool_name,
    event.connected_account_id,
    u ? [u.method, u.path_template, u.path, u.status, u.cf_ray] : null,
    event.error ? [event.error.code, event.error.message] : null,
    event.duration_ms,
    event.request_bytes,
    event.response_bytes,
    event.code_sha256,
    event.code,
    ...(v2 ? [event.intent_id ?? null, event.body_sha256 ?? null, canonicalJson(event.details ?? null)] : []),
    event.prev_hash,
  ]);
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}
