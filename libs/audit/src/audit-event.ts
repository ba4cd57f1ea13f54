/**
 * One audit record, as the API, exports and SIEM sinks see it. Records are written for every
 * tool call (REST and MCP), every upstream request (twice: its intent, committed before it is
 * sent, then its outcome) and every lifecycle change (tenants, keys, accounts, tokens, policy,
 * settings, sinks, spec, offboarding). Never credentials, never response bodies.
 */
export type AuditKind =
  | 'tool_call'
  | 'upstream_request'
  | 'offboarding'
  | 'connected_account'
  | 'lifecycle'
  /** MCP sign-in: sign-ins, consents, token issuance and revocation. */
  | 'mcp_oauth'
  /**
   * A signed checkpoint of the tenant's chain, delivered to SIEM sinks beside the records (it is
   * not itself a record of the chain): `seq` is the chain position it covers, `hash` its digest,
   * `prev_hash` the previous checkpoint's digest, `details.checkpoint` the signed fields.
   */
  | 'audit_checkpoint';

/**
 * `pending`: the intent of an upstream request, committed before it was sent; its outcome
 * follows as a record whose `intent_id` names it. `unknown`: the outcome of an intent whose
 * answer was never recorded (the replica died or the store failed after sending).
 */
export type AuditOutcome =
  'success' | 'error' | 'refused' | 'rate_limited' | 'timeout' | 'pending' | 'unknown';

export const AUDIT_OUTCOMES: readonly AuditOutcome[] = [
  'success',
  'error',
  'refused',
  'rate_limited',
  'timeout',
  'pending',
  'unknown',
];

/** `sso`: a tenant admin signed in to the console through the tenant's SSO (`id`: their identifier). */
export type CallerType = 'api_key' | 'mcp_token' | 'sso' | 'admin' | 'system';

/** Deployment-wide events (spec reloads, key rotations) are chained under this tenant id. */
export const SYSTEM_TENANT_ID = 'system';

export interface AuditCaller {
  readonly type: CallerType;
  /** Tenant API key id (`key_…`), MCP token id (`mcp_…`) or an SSO admin's identifier; never a secret. */
  readonly id: string | null;
  /** MCP clientInfo, when the call came over MCP. */
  readonly client_name: string | null;
  readonly client_version: string | null;
  /** Remote address as seen by the service (after trusted proxies). */
  readonly ip: string | null;
}

export interface AuditUpstream {
  readonly method: string;
  /** The OpenAPI path template of the operation (`/zones/{zone_id}/dns_records`), when known. */
  readonly path_template: string | null;
  /** The actual path requested, without query string. */
  readonly path: string;
  /** HTTP status from Cloudflare; null when the request never reached it (refused, rate limited). */
  readonly status: number | null;
  /** Cloudflare's `cf-ray` id of the response. */
  readonly cf_ray: string | null;
}

export interface AuditEvent {
  /** Stable id (`aud_…`): SIEM sinks de-duplicate on it. */
  readonly id: string;
  readonly tenant_id: string;
  /** Position in the tenant's hash chain (1, 2, 3, …). */
  readonly seq: number;
  readonly occurred_at: string;
  readonly kind: AuditKind;
  /** e.g. `tool.execute`, `cloudflare.request`, `identity.offboard`, `connected_account.deleted`. */
  readonly action: string;
  readonly outcome: AuditOutcome;
  /** Links the upstream requests of one tool call to it (`exe_…`). */
  readonly execution_id: string | null;
  readonly identifier: string | null;
  readonly caller: AuditCaller;
  readonly agent_run_id: string | null;
  readonly tool_name: string | null;
  readonly connected_account_id: string | null;
  readonly upstream: AuditUpstream | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly duration_ms: number | null;
  readonly request_bytes: number | null;
  readonly response_bytes: number | null;
  /** SHA-256 (hex) of the submitted code. */
  readonly code_sha256: string | null;
  /** The submitted code itself, unless the tenant turned code capture off. */
  readonly code: string | null;
  /** On an upstream outcome: the id of its intent record. */
  readonly intent_id?: string | null;
  /** SHA-256 (hex) of an upstream request's body, on its intent. */
  readonly body_sha256?: string | null;
  /** Event specifics: a lifecycle change's old and new values, an upstream request's query. */
  readonly details?: Readonly<Record<string, unknown>> | null;
  /** Hex SHA-256 chaining this record to the previous one of the same tenant. */
  readonly prev_hash: string;
  readonly hash: string;
}

export type CheckpointReason = 'interval' | 'partition_close' | 'shutdown' | 'manual';

/** What retention keeps of one chain run in a dropped partition: its seq range and end hashes. */
export interface CheckpointAnchor {
  readonly from_seq: number;
  readonly to_seq: number;
  readonly row_count: number;
  readonly first_prev_hash: string;
  readonly last_hash: string;
  /** The dropped partition's day. */
  readonly expires_on: string;
}

/** The fields a signed checkpoint's digest covers (see `audit-checkpoints.ts`). */
export interface CheckpointFields {
  readonly id: string;
  readonly tenant_id: string;
  /** 1, 2, 3… per tenant. */
  readonly number: number;
  /** The chain position signed, and the hash of the record there. */
  readonly seq: number;
  readonly hash: string;
  /** Time of that record. */
  readonly head_at: string | null;
  readonly signed_at: string;
  readonly reason: CheckpointReason;
  /** The digest of checkpoint `number - 1` (64 zeros for the first). */
  readonly previous_digest: string;
  /** Retention anchors this checkpoint vouches for (the first one also lists those made before it). */
  readonly anchors: readonly CheckpointAnchor[];
}

export interface AuditCheckpoint extends CheckpointFields {
  /** SHA-256 (hex) of the canonical JSON of the fields (`checkpointDigest`). */
  readonly digest: string;
  /** The signing key: `local-ed25519:<fingerprint>` or a KMS key ARN. */
  readonly key_id: string;
  readonly algorithm: string;
  /** Base64 signature of `warden-audit-checkpoint-v1:<digest>` (UTF-8). */
  readonly signature: string;
}
