import type { ColumnType, Insertable, Selectable, Updateable } from 'kysely';

/** A timestamp column: read as Date, written as Date (or an ISO string), defaulted by the database. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
/** jsonb: objects are written as JSON text so both pg and PGlite bind them the same way. */
type Json<T> = ColumnType<T, string, string>;

export interface TenantSettings {
  /** Upstream request budget as `requests/seconds`, e.g. `1000/300`; unset = service default. */
  budget?: string;
  [key: string]: unknown;
}

export interface TenantsTable {
  id: string;
  name: string;
  settings: Json<TenantSettings>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface TenantApiKeysTable {
  id: string;
  tenant_id: string;
  /** SHA-256 of the secret part of the key, hex. The key itself is never stored. */
  secret_hash: string;
  created_at: Timestamp;
  revoked_at: NullableTimestamp;
  last_used_at: NullableTimestamp;
}

export interface ConnectionsTable {
  id: string;
  tenant_id: string;
  name: string;
  provider: string;
  created_at: Timestamp;
}

export type ConnectedAccountStatus = 'ACTIVE' | 'INVALID' | 'REVOKED';
export type AuthorizationType = 'api_token' | 'global_api_key';
export type TokenKind = 'user' | 'account';

export interface CloudflareAccountRef {
  id: string;
  name: string;
}

export interface ConnectedAccountsTable {
  id: string;
  tenant_id: string;
  connection_id: string;
  identifier: string;
  status: ConnectedAccountStatus;
  authorization_type: AuthorizationType;
  token_kind: TokenKind;
  cf_user_id: string | null;
  cf_accounts: Json<CloudflareAccountRef[]>;
  cf_token_id: string | null;
  token_status: string;
  expires_on: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
  last_used_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
}

/** The columns of one envelope-sealed secret (libs/vault `sealedColumns`). */
export interface SealedColumnsTable {
  /** `local` or `aws`. */
  key_provider: string;
  /** The wrapping key: `local:v3` or a KMS key ARN. */
  key_id: string;
  wrapped_key: Uint8Array;
  iv: Uint8Array;
  /** AES-256-GCM ciphertext followed by its 16-byte tag. */
  ciphertext: Uint8Array;
  /**
   * How the secret is bound to its row: 1 = the first format (every kind named as a connected
   * account), 2 = by kind and id. Written by the envelope's columns helper; `keys rotate` re-seals 1.
   */
  seal_format: ColumnType<number, number | undefined, number>;
}

export interface SealedCredentialsTable extends SealedColumnsTable {
  connected_account_id: string;
  tenant_id: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** An R2 access key pair vaulted on a connected account (sealed whole, kind `r2_access_key`). */
export interface R2AccessKeysTable extends SealedColumnsTable {
  connected_account_id: string;
  tenant_id: string;
  /** Shown to say which key is vaulted; the sealed pair is what signs. */
  access_key_id: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface McpTokensTable {
  id: string;
  tenant_id: string;
  identifier: string;
  /** Connections the token may use; null = all of the identifier's. */
  connection_names: ColumnType<string[] | null, string | null, string | null>;
  secret_hash: string;
  /** The MCP endpoint URL the token is bound to. */
  audience: string;
  /** Tenant API key id that minted it. */
  created_by: string | null;
  expires_at: ColumnType<Date, Date | string, Date | string>;
  created_at: Timestamp;
  revoked_at: NullableTimestamp;
  last_used_at: NullableTimestamp;
  client_name: string | null;
  client_version: string | null;
}

export interface IdentityPoliciesTable {
  tenant_id: string;
  identifier: string;
  policy: Json<Record<string, unknown>>;
  updated_at: Timestamp;
}

export interface AuditEventsTable {
  id: string;
  tenant_id: string;
  seq: ColumnType<string, number | string, never>;
  occurred_at: ColumnType<Date, Date | string, never>;
  expires_on: ColumnType<Date, string, never>;
  kind: string;
  action: string;
  outcome: string;
  execution_id: string | null;
  identifier: string | null;
  caller_type: string;
  caller_id: string | null;
  client_name: string | null;
  client_version: string | null;
  caller_ip: string | null;
  agent_run_id: string | null;
  tool_name: string | null;
  connected_account_id: string | null;
  upstream_method: string | null;
  upstream_path_template: string | null;
  upstream_path: string | null;
  upstream_status: number | null;
  cf_ray: string | null;
  error_code: string | null;
  error_message: string | null;
  duration_ms: number | null;
  request_bytes: number | null;
  response_bytes: number | null;
  code_sha256: string | null;
  code: string | null;
  intent_id: string | null;
  body_sha256: string | null;
  details: ColumnType<Record<string, unknown> | null, string | null, never>;
  prev_hash: string;
  hash: string;
}

export interface AuditChainHeadsTable {
  tenant_id: string;
  seq: ColumnType<string, number | string, number | string>;
  hash: string;
  occurred_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface AuditSweepsTable {
  name: string;
  swept_until: ColumnType<Date, Date | string, Date | string>;
}

export interface AuditChainAnchorsTable {
  tenant_id: string;
  from_seq: ColumnType<string, number | string, never>;
  to_seq: ColumnType<string, number | string, never>;
  row_count: ColumnType<string, number | string, never>;
  first_prev_hash: string;
  last_hash: string;
  expires_on: ColumnType<Date, string, never>;
  dropped_at: Timestamp;
}

export interface AuditCheckpointsTable {
  tenant_id: string;
  number: ColumnType<string, number | string, never>;
  id: string;
  seq: ColumnType<string, number | string, never>;
  hash: string;
  head_at: ColumnType<Date | null, Date | string | null, never>;
  signed_at: ColumnType<Date, Date | string, never>;
  reason: string;
  previous_digest: string;
  anchors: ColumnType<unknown[], string, never>;
  digest: string;
  key_id: string;
  algorithm: string;
  signature: string;
}

interface SealedColumns {
  key_provider: string | null;
  key_id: string | null;
  wrapped_key: Uint8Array | null;
  iv: Uint8Array | null;
  ciphertext: Uint8Array | null;
  /**
   * How the secret is bound to its row: 1 = the first format (every kind named as a connected
   * account), 2 = by kind and id. Written by the envelope's columns helper; `keys rotate` re-seals 1.
   */
  seal_format: ColumnType<number, number | undefined, number>;
}

export interface AuditSinksTable extends SealedColumns {
  id: string;
  tenant_id: string;
  type: string;
  name: string;
  config: Json<Record<string, unknown>>;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface TenantWebhooksTable extends SealedColumns {
  tenant_id: string;
  id: string;
  url: string;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export type OutboxStatus = 'pending' | 'sending' | 'delivered' | 'failed';

export interface OutboxTable {
  id: ColumnType<string, never, never>;
  tenant_id: string;
  destination_type: 'audit_sink' | 'tenant_webhook';
  destination_id: string;
  event_id: string;
  payload: Json<Record<string, unknown>>;
  status: ColumnType<OutboxStatus, OutboxStatus | undefined, OutboxStatus>;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: Timestamp;
  delivery_id: string | null;
  last_error: string | null;
  created_at: Timestamp;
  delivered_at: NullableTimestamp;
}

/** State of the MCP OAuth authorization server (oidc-provider models and Warden's sign-ins). */
export interface OAuthArtifactsTable {
  model: string;
  /** SHA-256 of bearer values (tokens, codes, cookie ids); client and grant ids as they are. */
  id: string;
  payload: Json<Record<string, unknown>>;
  grant_id: string | null;
  uid: string | null;
  tenant_id: string | null;
  identifier: string | null;
  client_id: string | null;
  expires_at: NullableTimestamp;
  consumed_at: NullableTimestamp;
  created_at: Timestamp;
}

interface RequiredSealedColumns {
  key_provider: string;
  key_id: string;
  wrapped_key: Uint8Array;
  iv: Uint8Array;
  ciphertext: Uint8Array;
  /**
   * How the secret is bound to its row: 1 = the first format (every kind named as a connected
   * account), 2 = by kind and id. Written by the envelope's columns helper; `keys rotate` re-seals 1.
   */
  seal_format: ColumnType<number, number | undefined, number>;
}

export interface OAuthServerKeysTable extends RequiredSealedColumns {
  id: string;
  created_at: Timestamp;
}

export interface TenantSsoConfigsTable extends RequiredSealedColumns {
  tenant_id: string;
  /** Row id, bound into the sealed client secret. */
  id: string;
  issuer: string;
  client_id: string;
  /** The ID token claim that becomes the MCP identifier. */
  identifier_claim: string;
  allowed_email_domains: Json<string[]>;
  /** Identifiers (values of the identifier claim) that may sign in to the admin console; none by default. */
  console_admins: ColumnType<string[], string | undefined, string>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** How a routing SSO domain claim was proven (see `tenant_sso_domains.proven_by`). */
export type SsoProvenBy = 'dns' | 'listing' | 'before_proofs';

/**
 * Which tenant's SSO an email domain signs in to: one tenant per domain (the sign-in page picks
 * the identity provider by the engineer's email domain). Mirrors each configuration's
 * `allowed_email_domains`; goes with the configuration.
 */
export interface TenantSsoDomainsTable {
  domain: string;
  tenant_id: string;
  created_at: Timestamp;
  /**
   * When the claim came to count (proven by DNS TXT, or listed where no proof is asked: see
   * `proven_by`); null: claimed, not proven, routes nowhere.
   */
  verified_at: NullableTimestamp;
  /** The value the tenant's TXT record must carry; null for claims proven without one. */
  proof_token: ColumnType<string | null, string | null | undefined, string | null>;
  /**
   * How a routing claim was proven: its DNS record, listed where the deployment asked no proof
   * (`SSO_DOMAIN_PROOF=none`), or claimed before there were proofs; null while pending (and on
   * rows a release before this column wrote, which then count only under `none`).
   */
  proven_by: ColumnType<SsoProvenBy | null, SsoProvenBy | null | undefined, SsoProvenBy | null>;
  /** The last look-up of a DNS-proven claim's record that got an answer (its proof, or a re-check). */
  proof_checked_at: NullableTimestamp;
  /** When a re-check first found the record of a DNS-proven claim missing; null while it is there. */
  proof_missing_since: NullableTimestamp;
}

/** An admin console sign-in (see migrations/…_console-sessions.ts). */
export interface ConsoleSessionsTable {
  id: string;
  /** SHA-256 of the cookie's session secret, hex. */
  secret_hash: string;
  kind: 'tenant' | 'operator';
  tenant_id: string | null;
  /** The tenant API key a tenant session was signed in with. */
  api_key_id: string | null;
  /** SHA-256 of the admin token an operator session was signed in with. */
  admin_fingerprint: string | null;
  /** The identifier a tenant session signed in through the tenant's SSO acts as (else null). */
  sso_identifier: ColumnType<string | null, string | null | undefined, string | null>;
  /** The SSO configuration's `updated_at` at that sign-in: a later change ends the session. */
  sso_config_updated_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  csrf_secret: string;
  ip: string | null;
  user_agent: string | null;
  created_at: Timestamp;
  last_seen_at: Timestamp;
  expires_at: ColumnType<Date, Date | string, Date | string>;
  revoked_at: NullableTimestamp;
}

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'expired' | 'applied' | 'failed';

/** A plan of held writes waiting for, or past, a person's decision (see migrations/…_approvals.ts). */
export interface ApprovalsTable {
  id: string;
  tenant_id: string;
  identifier: string;
  connected_account_id: string;
  execution_id: string;
  status: ApprovalStatus;
  plan: Json<unknown[]>;
  plan_sha256: string;
  dependent: ColumnType<boolean, boolean | undefined, boolean>;
  /** The audit caller that ran the planning execution. */
  requested_by: Json<Record<string, unknown>>;
  created_at: Timestamp;
  expires_at: ColumnType<Date, Date | string, Date | string>;
  decided_by: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  decided_at: NullableTimestamp;
  comment: ColumnType<string | null, string | null | undefined, string | null>;
  results: ColumnType<unknown[] | null, string | null | undefined, string | null>;
  finished_at: NullableTimestamp;
  /** The apply's lease: renewed by the replica applying the plan (see migrations/…_approval-apply-lease.ts). */
  apply_heartbeat_at: NullableTimestamp;
  /**
   * A dependent plan's agent code and the account id it ran with, to apply it in steps (null when
   * the plan is not dependent or the tenant does not capture code; see migrations/…_approval-steps.ts).
   */
  replay_code: ColumnType<string | null, string | null | undefined, string | null>;
  replay_account_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** The steps of an apply in steps, oldest first (null for a plan applied at once). */
  steps: ColumnType<unknown[] | null, string | null | undefined, string | null>;
}

export interface Database {
  tenants: TenantsTable;
  tenant_api_keys: TenantApiKeysTable;
  connections: ConnectionsTable;
  connected_accounts: ConnectedAccountsTable;
  sealed_credentials: SealedCredentialsTable;
  r2_access_keys: R2AccessKeysTable;
  mcp_tokens: McpTokensTable;
  identity_policies: IdentityPoliciesTable;
  audit_events: AuditEventsTable;
  audit_chain_heads: AuditChainHeadsTable;
  audit_chain_anchors: AuditChainAnchorsTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_sweeps: AuditSweepsTable;
  audit_sinks: AuditSinksTable;
  tenant_webhooks: TenantWebhooksTable;
  outbox: OutboxTable;
  oauth_artifacts: OAuthArtifactsTable;
  oauth_server_keys: OAuthServerKeysTable;
  tenant_sso_configs: TenantSsoConfigsTable;
  tenant_sso_domains: TenantSsoDomainsTable;
  console_sessions: ConsoleSessionsTable;
  approvals: ApprovalsTable;
}

export type Tenant = Selectable<TenantsTable>;
export type TenantApiKey = Selectable<TenantApiKeysTable>;
export type Connection = Selectable<ConnectionsTable>;
export type ConnectedAccountRow = Selectable<ConnectedAccountsTable>;
export type NewConnectedAccountRow = Insertable<ConnectedAccountsTable>;
export type ConnectedAccountUpdate = Updateable<ConnectedAccountsTable>;
export type McpTokenRow = Selectable<McpTokensTable>;
export type AuditEventRow = Selectable<AuditEventsTable>;
export type SealedCredentialRow = Selectable<SealedCredentialsTable>;
export type NewSealedCredentialRow = Insertable<SealedCredentialsTable>;
