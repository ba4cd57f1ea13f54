import { createHash } from 'node:crypto';
import type { AuditEvent } from './audit-event.ts';

/** The prev_hash of a tenant's first record. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * SHA-256 over every recorded field in a fixed order, plus the previous record's hash.
 * A changed field, a reordered or a removed record all break the chain.
 */
export function hashEvent(event: Omit<AuditEvent, 'hash'>): string {
  const u = event.upstream;
  const canonical = JSON.stringify([
    'warden-audit-v1',
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
    event.prev_hash,
  ]);
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}
