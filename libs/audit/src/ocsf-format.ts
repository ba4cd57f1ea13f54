import type { AuditEvent } from './audit-event.ts';
import { canonicalJson } from './audit-hash.ts';
import { DEFAULT_PRODUCT_VERSION, severityOf, toJsonLine, withCodeCapped } from './format-common.ts';
import type { FormatOptions } from './format-common.ts';

/** The OCSF release these events validate against (schema.ocsf.io/1.3.0/classes/api_activity). */
export const OCSF_SCHEMA_VERSION = '1.3.0';

const CATEGORY_UID = 6;
const CLASS_UID = 6003;

export type OcsfActivityId = 1 | 2 | 3 | 4 | 99;

export interface OcsfActivity {
  readonly id: OcsfActivityId;
  readonly name: string;
}

const CREATE: OcsfActivity = { id: 1, name: 'Create' };
const READ: OcsfActivity = { id: 2, name: 'Read' };
const UPDATE: OcsfActivity = { id: 3, name: 'Update' };
const DELETE: OcsfActivity = { id: 4, name: 'Delete' };

/** API Activity as Warden emits it: the attributes below, nothing else. */
export interface OcsfApiActivityEvent {
  readonly category_uid: 6;
  readonly category_name: 'Application Activity';
  readonly class_uid: 6003;
  readonly class_name: 'API Activity';
  readonly activity_id: OcsfActivityId;
  readonly activity_name: string;
  readonly type_uid: number;
  readonly type_name: string;
  readonly severity_id: 1 | 2 | 3;
  readonly severity: string;
  readonly status_id: 0 | 1 | 2;
  readonly status: 'Success' | 'Failure' | 'Unknown';
  readonly status_detail: string;
  readonly status_code?: string;
  readonly time: number;
  readonly duration?: number;
  readonly message: string;
  readonly metadata: {
    readonly version: string;
    readonly product: { readonly name: 'Warden'; readonly vendor_name: 'Warden'; readonly version: string };
    readonly uid: string;
    readonly correlation_uid?: string;
    readonly sequence: number;
    readonly tenant_uid: string;
    readonly log_name: 'audit';
  };
  readonly actor: {
    readonly user?: { readonly uid: string };
    readonly session?: { readonly credential_uid: string };
    readonly app_name?: string;
  };
  readonly api: {
    readonly operation: string;
    readonly service: { readonly name: string };
    readonly request: { readonly uid: string };
    readonly response?: { readonly code?: number; readonly error?: string; readonly error_message?: string };
  };
  readonly http_request?: {
    readonly http_method: string;
    readonly url: { readonly path: string };
    readonly length?: number;
  };
  readonly http_response?: { readonly code: number; readonly length?: number };
  readonly src_endpoint: { readonly ip?: string; readonly svc_name?: string };
  readonly cloud: { readonly provider: 'Cloudflare' };
  readonly resources?: ReadonlyArray<{ readonly uid: string; readonly type: string }>;
  readonly unmapped: Readonly<Record<string, string | number>>;
}

function methodActivity(method: string): OcsfActivity {
  switch (method.toUpperCase()) {
    case 'GET':
    case 'HEAD':
      return READ;
    case 'POST':
      return CREATE;
    case 'PUT':
    case 'PATCH':
      return UPDATE;
    case 'DELETE':
      return DELETE;
    default:
      return { id: 99, name: method.toUpperCase() };
  }
}

/**
 * Upstream requests map from the HTTP method (a Cloudflare POST is usually a create; the
 * few RPC-style POSTs such as cache purges still count as Create, the closest CRUD verb).
 * A search tool call only reads the spec. An execute tool call may do anything: Other,
 * and each upstream request it made carries its own precise activity.
 */
export function ocsfActivity(event: AuditEvent): OcsfActivity {
  switch (event.kind) {
    case 'upstream_request':
      return event.upstream ? methodActivity(event.upstream.method) : { id: 99, name: event.action };
    case 'tool_call':
      if (event.tool_name === 'cloudflare_search') return READ;
      if (event.tool_name === 'cloudflare_execute') return { id: 99, name: 'Execute' };
      return { id: 99, name: event.tool_name ?? event.action };
    case 'offboarding':
      // Offboarding destroys the identity's credentials and tokens.
      return DELETE;
    case 'connected_account':
    case 'lifecycle': {
      const verb = event.action.slice(event.action.lastIndexOf('.') + 1);
      if (verb === 'created' || verb === 'minted' || verb === 'issued') return CREATE;
      if (verb === 'updated' || verb === 'rotated' || verb === 'changed' || verb === 'status_updated')
        return UPDATE;
      if (verb === 'deleted' || verb === 'revoked' || verb === 'retired') return DELETE;
      return { id: 99, name: event.action };
    }
    case 'audit_checkpoint':
      return { id: 99, name: 'Checkpoint' };
    case 'mcp_oauth':
      if (event.action === 'mcp_oauth.token_issued' || event.action === 'mcp_oauth.consent') return CREATE;
      if (
        event.action === 'mcp_oauth.consent_revoked' ||
        event.action === 'mcp_oauth.token_revoked' ||
        event.action === 'mcp_oauth.refresh_reuse'
      ) {
        return DELETE;
      }
      return { id: 99, name: event.action };
  }
}

function present<T>(value: T | null): T | undefined {
  return value === null ? undefined : value;
}

function operation(event: AuditEvent): string {
  if (event.upstream) {
    return `${event.upstream.method.toUpperCase()} ${event.upstream.path_template ?? event.upstream.path}`;
  }
  return event.tool_name ?? event.action;
}

/**
 * The identifier is the person an agent acts for, so it is the actor of tool calls and their
 * upstream requests. Offboarding and connected-account changes are done by the tenant's
 * backend or an operator *to* an identifier: there it is a resource, not the actor. An MCP
 * sign-in is the engineer's own act, unless the tenant's backend revoked their consent.
 */
function identifierIsActor(event: AuditEvent): boolean {
  if (event.kind === 'mcp_oauth') return event.caller.type === 'mcp_token';
  return event.kind === 'tool_call' || event.kind === 'upstream_request';
}

function actor(event: AuditEvent): OcsfApiActivityEvent['actor'] {
  const user = identifierIsActor(event) && event.identifier !== null ? { uid: event.identifier } : undefined;
  const session = event.caller.id !== null ? { credential_uid: event.caller.id } : undefined;
  // OCSF needs at least one actor attribute; system and operator events have no other.
  const appName = event.caller.client_name ?? (user || session ? undefined : `warden:${event.caller.type}`);
  return { user, session, app_name: appName };
}

function resources(event: AuditEvent): OcsfApiActivityEvent['resources'] {
  const list: Array<{ uid: string; type: string }> = [];
  if (!identifierIsActor(event) && event.identifier !== null) {
    list.push({ uid: event.identifier, type: 'identity' });
  }
  if (event.connected_account_id !== null) {
    list.push({ uid: event.connected_account_id, type: 'connected_account' });
  }
  return list.length > 0 ? list : undefined;
}

function unmapped(event: AuditEvent): OcsfApiActivityEvent['unmapped'] {
  const fields: Record<string, string | number | null> = {
    kind: event.kind,
    action: event.action,
    outcome: event.outcome,
    caller_type: event.caller.type,
    client_version: event.caller.client_version,
    tool_name: event.tool_name,
    agent_run_id: event.agent_run_id,
    connected_account_id: event.connected_account_id,
    path_template: event.upstream?.path_template ?? null,
    cf_ray: event.upstream?.cf_ray ?? null,
    request_bytes: event.request_bytes,
    response_bytes: event.response_bytes,
    code_sha256: event.code_sha256,
    code: event.code,
    seq: event.seq,
    prev_hash: event.prev_hash,
    hash: event.hash,
    // What a SIEM needs to check a checkpoint's signature on its own.
    checkpoint:
      event.kind === 'audit_checkpoint' && event.details ? canonicalJson(event.details.checkpoint) : null,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== null)) as Record<
    string,
    string | number
  >;
}

export function toOcsfEvent(event: AuditEvent, options: FormatOptions = {}): OcsfApiActivityEvent {
  const source = withCodeCapped(event, options.maxCodeChars);
  const activity = ocsfActivity(source);
  const severity = severityOf(source.outcome);
  const success = source.outcome === 'success';
  // OCSF status 0 (Unknown): an intent not yet answered, or an answer that was never recorded.
  const undecided = source.outcome === 'pending' || source.outcome === 'unknown';
  const upstream = source.upstream;
  const status = upstream?.status ?? null;
  const error = source.error;
  const response =
    status !== null || error
      ? { code: present(status), error: error?.code, error_message: error?.message }
      : undefined;
  return {
    category_uid: CATEGORY_UID,
    category_name: 'Application Activity',
    class_uid: CLASS_UID,
    class_name: 'API Activity',
    activity_id: activity.id,
    activity_name: activity.name,
    type_uid: CLASS_UID * 100 + activity.id,
    type_name: `API Activity: ${activity.name}`,
    severity_id: severity.ocsfId,
    severity: severity.ocsfName,
    status_id: success ? 1 : undecided ? 0 : 2,
    status: success ? 'Success' : undecided ? 'Unknown' : 'Failure',
    status_detail: source.outcome,
    status_code: error?.code,
    time: Date.parse(source.occurred_at),
    duration: present(source.duration_ms),
    message: `${source.action} ${source.outcome}${error ? ` (${error.code})` : ''}`,
    metadata: {
      version: OCSF_SCHEMA_VERSION,
      product: {
        name: 'Warden',
        vendor_name: 'Warden',
        version: options.productVersion ?? DEFAULT_PRODUCT_VERSION,
      },
      uid: source.id,
      correlation_uid: present(source.execution_id),
      sequence: source.seq,
      tenant_uid: source.tenant_id,
      log_name: 'audit',
    },
    actor: actor(source),
    api: {
      operation: operation(source),
      service: { name: source.kind === 'upstream_request' ? 'Cloudflare API' : 'Warden' },
      request: { uid: source.id },
      response,
    },
    http_request: upstream
      ? {
          http_method: upstream.method.toUpperCase(),
          url: { path: upstream.path },
          length: present(source.request_bytes),
        }
      : undefined,
    http_response: status !== null ? { code: status, length: present(source.response_bytes) } : undefined,
    src_endpoint: source.caller.ip !== null ? { ip: source.caller.ip } : { svc_name: 'warden' },
    cloud: { provider: 'Cloudflare' },
    resources: resources(source),
    unmapped: unmapped(source),
  };
}

/** One OCSF API Activity event as a single JSON line. */
export function toOcsfLine(event: AuditEvent, options: FormatOptions = {}): string {
  return toJsonLine(toOcsfEvent(event, options));
}
