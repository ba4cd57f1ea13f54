import type { AuditCaller, AuditCheckpoint, AuditEvent, AuditKind } from './audit-event.ts';
import type { AuditRecordInput } from './audit.store.ts';

/**
 * The one place audit records are built. Every record names who acted (`caller`: a tenant
 * API key, an MCP token, a console admin signed in through the tenant's SSO, the operator or
 * Warden itself) and, where there is one, the
 * identity, execution and connected account it concerns.
 */
export interface AuditSubject {
  readonly caller: AuditCaller;
  readonly identifier?: string | null;
  readonly executionId?: string | null;
  readonly agentRunId?: string | null;
  readonly toolName?: string | null;
  readonly connectedAccountId?: string | null;
}

export const SYSTEM_CALLER: AuditCaller = Object.freeze({
  type: 'system',
  id: null,
  client_name: null,
  client_version: null,
  ip: null,
});

export const ADMIN_CALLER: AuditCaller = Object.freeze({
  type: 'admin',
  id: null,
  client_name: null,
  client_version: null,
  ip: null,
});

type Outcome = AuditEvent['outcome'];
type ErrorField = AuditEvent['error'];

function base(subject: AuditSubject) {
  return {
    execution_id: subject.executionId ?? null,
    identifier: subject.identifier ?? null,
    caller: subject.caller,
    agent_run_id: subject.agentRunId ?? null,
    tool_name: subject.toolName ?? null,
    connected_account_id: subject.connectedAccountId ?? null,
  };
}

/** Maps a refusal or failure code to the outcome the trail records. */
export function outcomeOf(code: string): Outcome {
  if (code === 'policy_denied' || code === 'approval_required') return 'refused';
  if (code === 'rate_limited') return 'rate_limited';
  if (code === 'timeout' || code === 'upstream_timeout') return 'timeout';
  return 'error';
}

export interface ToolCallFacts {
  readonly outcome: Outcome;
  readonly error: ErrorField;
  readonly durationMs: number;
  readonly code: string;
  readonly codeSha256: string;
  readonly captureCode: boolean;
  readonly responseBytes: number | null;
}

/** The record of a tool call, written when it ends (its `duration_ms` says when it started). */
export function toolCallRecord(subject: AuditSubject, facts: ToolCallFacts): AuditRecordInput {
  return {
    ...base(subject),
    kind: 'tool_call',
    action: subject.toolName === 'cloudflare_search' ? 'tool.search' : 'tool.execute',
    outcome: facts.outcome,
    upstream: null,
    error: facts.error,
    duration_ms: facts.durationMs,
    request_bytes: Buffer.byteLength(facts.code),
    response_bytes: facts.responseBytes,
    code_sha256: facts.codeSha256,
    code: facts.captureCode ? facts.code : null,
  };
}

export interface UpstreamFacts {
  readonly method: string;
  readonly path: string;
  readonly pathTemplate: string | null;
  /** What kind of request: `cloudflare.request` from agent code, `cloudflare.verify`… from Warden. */
  readonly action: string;
  readonly query?: Readonly<Record<string, unknown>> | null;
  readonly bodySha256: string | null;
  readonly requestBytes: number;
}

/** The intent of an upstream request: committed before the request may leave Warden. */
export function upstreamIntentRecord(subject: AuditSubject, facts: UpstreamFacts): AuditRecordInput {
  return {
    ...base(subject),
    kind: 'upstream_request',
    action: facts.action,
    outcome: 'pending',
    upstream: {
      method: facts.method,
      path_template: facts.pathTemplate,
      path: facts.path,
      status: null,
      cf_ray: null,
    },
    error: null,
    duration_ms: null,
    request_bytes: facts.requestBytes,
    response_bytes: null,
    code_sha256: null,
    code: null,
    body_sha256: facts.bodySha256,
    details: facts.query && Object.keys(facts.query).length > 0 ? { query: facts.query } : null,
  };
}

export interface UpstreamResult {
  readonly outcome: Outcome;
  readonly error: ErrorField;
  readonly status: number | null;
  readonly cfRay: string | null;
  readonly durationMs: number | null;
  readonly responseBytes: number | null;
  /** What the request carried that the columns do not (a tail session: its events, how it ended). */
  readonly details?: Readonly<Record<string, unknown>> | null;
}

/**
 * A request's outcome, naming its intent. A request refused before it was sent (policy,
 * budget, revoked account) has no intent: its record is an outcome with no `intent_id`.
 */
export function upstreamOutcomeRecord(
  subject: AuditSubject,
  facts: Omit<UpstreamFacts, 'bodySha256' | 'requestBytes' | 'query'> & { readonly requestBytes?: number },
  intentId: string | null,
  result: UpstreamResult,
): AuditRecordInput {
  return {
    ...base(subject),
    kind: 'upstream_request',
    action: facts.action,
    outcome: result.outcome,
    upstream: {
      method: facts.method,
      path_template: facts.pathTemplate,
      path: facts.path,
      status: result.status,
      cf_ray: result.cfRay,
    },
    error: result.error,
    duration_ms: result.durationMs,
    request_bytes: intentId === null ? (facts.requestBytes ?? null) : null,
    response_bytes: result.responseBytes,
    code_sha256: null,
    code: null,
    intent_id: intentId,
    ...(result.details ? { details: result.details } : {}),
  };
}

/**
 * The outcome of a request that got no answer from upstream: refused before it was sent (no
 * intent), not sent after its intent, or failed on the way. No Cloudflare ray, no response.
 */
export function upstreamFailureRecord(
  subject: AuditSubject,
  facts: Parameters<typeof upstreamOutcomeRecord>[1],
  intentId: string | null,
  failure: {
    readonly error: { readonly code: string; readonly message: string };
    readonly durationMs: number;
    readonly status?: number | null;
  },
): AuditRecordInput {
  const { code, message } = failure.error;
  return upstreamOutcomeRecord(subject, facts, intentId, {
    outcome: outcomeOf(code),
    error: { code, message },
    status: failure.status ?? null,
    cfRay: null,
    durationMs: failure.durationMs,
    responseBytes: null,
  });
}

/**
 * The `unknown` outcome of an intent whose answer was never recorded, written by the sweeper
 * (the replica died, or the store failed after the request was sent).
 */
export function unknownOutcomeRecord(intent: AuditEvent, reason: string): AuditRecordInput {
  return {
    execution_id: intent.execution_id,
    identifier: intent.identifier,
    caller: SYSTEM_CALLER,
    agent_run_id: intent.agent_run_id,
    tool_name: intent.tool_name,
    connected_account_id: intent.connected_account_id,
    kind: 'upstream_request',
    action: intent.action,
    outcome: 'unknown',
    upstream: intent.upstream ? { ...intent.upstream, status: null, cf_ray: null } : null,
    error: { code: 'outcome_unknown', message: reason },
    duration_ms: null,
    request_bytes: null,
    response_bytes: null,
    code_sha256: null,
    code: null,
    intent_id: intent.id,
  };
}

export interface LifecycleFacts {
  readonly kind?: Extract<AuditKind, 'connected_account' | 'offboarding' | 'lifecycle'>;
  /** e.g. `tenant.created`, `api_key.revoked`, `policy.changed`, `spec.reloaded`. */
  readonly action: string;
  readonly outcome?: Outcome;
  readonly error?: ErrorField;
  readonly durationMs?: number | null;
  /** What changed: `{before, after}` for settings and policy, ids for keys and tokens. */
  readonly details?: Readonly<Record<string, unknown>> | null;
}

/** A change to the deployment's or a tenant's state, with who made it. */
export function lifecycleRecord(subject: AuditSubject, facts: LifecycleFacts): AuditRecordInput {
  return {
    ...base(subject),
    kind: facts.kind ?? 'lifecycle',
    action: facts.action,
    outcome: facts.outcome ?? 'success',
    upstream: null,
    error: facts.error ?? null,
    duration_ms: facts.durationMs ?? null,
    request_bytes: null,
    response_bytes: null,
    code_sha256: null,
    code: null,
    details: facts.details ?? null,
  };
}

export interface McpOAuthFacts {
  /** `mcp_oauth.sign_in`, `mcp_oauth.consent`, `mcp_oauth.token_issued`, `mcp_oauth.token_revoked`, `mcp_oauth.refresh_reuse`… */
  readonly action: string;
  readonly outcome: Outcome;
  readonly error?: ErrorField;
}

/**
 * An MCP sign-in event (sign-in, consent, token issuance, refresh token reuse) for the engineer
 * `subject.identifier`, done by `subject.caller` (the browser or MCP client, or the tenant).
 */
export function mcpOAuthRecord(subject: AuditSubject, facts: McpOAuthFacts): AuditRecordInput {
  return {
    ...base(subject),
    kind: 'mcp_oauth',
    action: facts.action,
    outcome: facts.outcome,
    upstream: null,
    error: facts.error ?? null,
    duration_ms: null,
    request_bytes: null,
    response_bytes: null,
    code_sha256: null,
    code: null,
  };
}

/**
 * A signed checkpoint as SIEM sinks receive it, beside the records: not a record of the chain
 * (it has its own id, `chk_…`), but in the same shape, with the signed fields in `details`.
 */
export function checkpointEvent(checkpoint: AuditCheckpoint): AuditEvent {
  return {
    id: checkpoint.id,
    tenant_id: checkpoint.tenant_id,
    seq: checkpoint.seq,
    occurred_at: checkpoint.signed_at,
    kind: 'audit_checkpoint',
    action: 'audit.checkpoint',
    outcome: 'success',
    execution_id: null,
    identifier: null,
    caller: SYSTEM_CALLER,
    agent_run_id: null,
    tool_name: null,
    connected_account_id: null,
    upstream: null,
    error: null,
    duration_ms: null,
    request_bytes: null,
    response_bytes: null,
    code_sha256: null,
    code: null,
    details: { checkpoint: { ...checkpoint } },
    prev_hash: checkpoint.previous_digest,
    hash: checkpoint.digest,
  };
}
