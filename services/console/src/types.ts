export interface Session {
  readonly kind: 'tenant' | 'operator';
  readonly tenant: { id: string; name: string } | null;
  /** Set when a tenant admin signed in through the tenant's SSO. */
  readonly sso_identifier: string | null;
  readonly expires_at: string;
  readonly csrf_token: string;
  readonly admin_api: boolean;
}

export interface ConnectedAccount {
  readonly id: string;
  readonly identifier: string;
  readonly connection_name: string;
  readonly status: 'ACTIVE' | 'INVALID' | 'REVOKED';
  readonly authorization_type: 'api_token' | 'global_api_key';
  readonly token_kind: 'user' | 'account';
  readonly cloudflare: {
    user_id: string | null;
    account_ids: string[];
    accounts: Array<{ id: string; name: string }>;
    token_id: string | null;
    token_status: string;
    expires_on: string | null;
  };
  readonly created_at: string;
  readonly updated_at: string;
  readonly last_used_at: string | null;
  readonly rate_budget: {
    principal: string;
    remaining: number;
    capacity: number;
    window_seconds: number;
    blocked_until: string | null;
  } | null;
}

export interface AuditEvent {
  readonly id: string;
  readonly seq: number;
  readonly occurred_at: string;
  readonly kind: string;
  readonly action: string;
  readonly outcome: string;
  readonly execution_id: string | null;
  readonly identifier: string | null;
  readonly caller: { type: string; id: string | null; client_name: string | null; ip: string | null };
  readonly agent_run_id: string | null;
  readonly tool_name: string | null;
  readonly upstream: {
    method: string;
    path_template: string | null;
    path: string;
    status: number | null;
    cf_ray: string | null;
  } | null;
  readonly error: { code: string; message: string } | null;
  readonly duration_ms: number | null;
  readonly code: string | null;
  readonly code_sha256: string | null;
  readonly intent_id?: string | null;
  readonly details?: Record<string, unknown> | null;
  readonly hash: string;
}

/** The explorer's rows, as the server's read model defines them (a type import: nothing is bundled). */
export type { ExplorerRow } from '../../connector/src/console/console-queries.ts';

export interface PolicyRule {
  effect: 'allow' | 'deny' | 'approve';
  methods: string[];
  path: string;
  name?: string;
}

export interface Policy {
  read_only?: boolean;
  deny_writes_by_default?: boolean;
  rules?: PolicyRule[];
  credential_operations?: { allow?: string[]; reveal_secrets?: string[] };
}

export interface Sink {
  readonly id: string;
  readonly type: string;
  readonly name: string;
  readonly config: Record<string, unknown>;
  readonly enabled: boolean;
  readonly created_at: string;
}

export interface SinkHealth {
  readonly sink_id: string;
  readonly pending: number;
  readonly failed: number;
  readonly delivered: number;
  readonly last_error: string | null;
  readonly last_delivered_at: string | null;
}

export interface Approval {
  readonly id: string;
  readonly status: string;
  readonly identifier: string;
  readonly plan: unknown[];
  /** An apply in steps: the steps so far, the last one the one waiting for a decision. */
  readonly steps?: ReadonlyArray<{ readonly step: number; readonly sends: unknown[] }> | null;
  readonly created_at: string;
  readonly expires_at: string;
  readonly decided_by?: string | null;
  readonly results?: unknown;
}
