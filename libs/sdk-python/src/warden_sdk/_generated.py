# Generated from Warden's /openapi.json by libs/sdk-python/codegen/generate_types.py.
# Do not edit: run `npm run sdk:generate:python` and commit the result.
# pyright: reportUnusedImport=false
"""Wire types of Warden's HTTP API (generated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict, Union

from ._model import WardenModel, WardenPage


GetAdminAuditExportQueryFormat: TypeAlias = Literal["ndjson", "ocsf", "cef"]


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAdminKeysResponse(WardenModel):
    """`GET /admin/v1/keys`: Key rotation status: the current key-encryption key and how many data keys each key wraps."""
    provider: str
    current_key_id: str
    data_keys_by_key: dict[str, float]
    legacy_format: float
    """Sealed secrets still bound in the first format (before kinds); `keys rotate` re-seals them."""


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAdminSpecResponseSandboxes(WardenModel):
    size: float
    alive: float
    ready: float


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAdminSpecResponse(WardenModel):
    """`GET /admin/v1/spec`: The Cloudflare OpenAPI document in use and the sandboxes serving it."""
    loaded: bool
    version: str | None
    source: str | None
    loaded_at: str | None
    operations: float
    sandboxes: GetAdminSpecResponseSandboxes | None
    """Sandbox child processes: configured, running, and running the current spec"""


@dataclass(frozen=True, kw_only=True, repr=False)
class PostAdminSpecReloadResponse(WardenModel):
    """`POST /admin/v1/spec/reload`: Read the Cloudflare OpenAPI document again and hand a changed one to every sandbox (no restart)."""
    version: str
    changed: bool


@dataclass(frozen=True, kw_only=True, repr=False)
class DeleteAdminSsoDomainsByDomainResponse(WardenModel):
    """`DELETE /admin/v1/sso/domains/{domain}`: Release an SSO email domain: every organization’s claim of it goes (each gets an sso.domain_released record), so it routes nobody until an organization proves it again."""
    domain: str
    released_from: list[str]
    """Tenants whose claim of the domain went."""


@dataclass(frozen=True, kw_only=True, repr=False)
class Tenant(WardenModel):
    id: str
    name: str
    created_at: str


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAdminTenantsResponse(WardenModel):
    """`GET /admin/v1/tenants`: List tenants."""
    tenants: list[Tenant]


@dataclass(frozen=True, kw_only=True, repr=False)
class PostAdminTenantsResponse(WardenModel):
    """`POST /admin/v1/tenants`: Create a tenant and its first API key (shown once)."""
    tenant: Tenant
    api_key: str
    api_key_id: str


class PostAdminTenantsBody(TypedDict):
    name: str


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAdminTenantsByIdResponse(WardenModel):
    """`GET /admin/v1/tenants/{id}`: Get a tenant."""
    tenant: Tenant


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAdminTenantsByIdApiKeysResponseApiKeysItem(WardenModel):
    id: str
    created_at: str
    revoked_at: str | None
    last_used_at: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAdminTenantsByIdApiKeysResponse(WardenModel):
    """`GET /admin/v1/tenants/{id}/api_keys`: A tenant's API keys, newest first (never the secret)."""
    api_keys: list[GetAdminTenantsByIdApiKeysResponseApiKeysItem]


@dataclass(frozen=True, kw_only=True, repr=False)
class PostAdminTenantsByIdApiKeysResponse(WardenModel):
    """`POST /admin/v1/tenants/{id}/api_keys`: Issue another API key for a tenant (shown once)."""
    api_key: str
    api_key_id: str


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalPlanItemOperation(WardenModel):
    path_template: str
    permissions: list[str]


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalPlanItem(WardenModel):
    seq: float
    method: str
    path: str
    query: dict[str, Any] | None
    body: Any
    body_encoding: Literal["json", "text"] | None
    """`json`: `body` is the JSON value sent (it may be a string); `text`: `body` is the raw text sent as is (with `content_type`); null: no body."""
    content_type: str | None = None
    operation: ApprovalPlanItemOperation | None
    rule: str
    """The policy rule that held the write."""


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalStepsItemSendsItemOperation(WardenModel):
    path_template: str
    permissions: list[str]


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalStepsItemSendsItem(WardenModel):
    seq: float
    method: str
    path: str
    query: dict[str, Any] | None
    body: Any
    body_encoding: Literal["json", "text"] | None
    """`json`: `body` is the JSON value sent (it may be a string); `text`: `body` is the raw text sent as is (with `content_type`); null: no body."""
    content_type: str | None = None
    operation: ApprovalStepsItemSendsItemOperation | None
    rule: str
    """The policy rule that held the write."""


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalStepsItemDecidedBy(WardenModel):
    type: str
    id: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalStepsItemResultsItemError(WardenModel):
    code: str
    message: str


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalStepsItemResultsItem(WardenModel):
    seq: float
    status: float | None
    success: bool
    error: ApprovalStepsItemResultsItemError | None
    result: Any = None


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalStepsItemError(WardenModel):
    code: str
    message: str


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalStepsItem(WardenModel):
    step: float
    status: Literal["pending", "approved", "rejected", "expired", "applied", "failed"]
    """`applied` for every step before the last; the last is where the approval stands."""
    execution_id: str | None
    """The run that planned it: the agent's execution, then each re-run of its code."""
    plan_sha256: str | None
    """SHA-256 of that run's whole plan."""
    sends: list[ApprovalStepsItemSendsItem]
    """What approving this step sends."""
    sends_sha256: str | None
    requested_at: str
    decided_by: ApprovalStepsItemDecidedBy | None
    decided_at: str | None
    comment: str | None
    results: list[ApprovalStepsItemResultsItem] | None
    error: ApprovalStepsItemError | None
    """Why the apply in steps stopped here (the re-run of the code failed or wrote something else)."""


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalRequestedBy(WardenModel):
    type: str
    id: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalDecidedBy(WardenModel):
    type: str
    id: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalResultsItemError(WardenModel):
    code: str
    message: str


@dataclass(frozen=True, kw_only=True, repr=False)
class ApprovalResultsItem(WardenModel):
    seq: float
    status: float | None
    success: bool
    error: ApprovalResultsItemError | None
    result: Any = None


@dataclass(frozen=True, kw_only=True, repr=False)
class Approval(WardenModel):
    id: str
    status: Literal["pending", "approved", "rejected", "expired", "applied", "failed"]
    url: str | None = None
    identifier: str
    connected_account_id: str
    execution_id: str
    """The execution that planned the writes."""
    plan: list[ApprovalPlanItem]
    """The writes held, in order (an apply in steps: those the latest run of the code made)."""
    plan_sha256: str
    """SHA-256 of the plan, also on the audit trail."""
    dependent: bool
    """A later write uses a value only an earlier one would produce: it cannot be applied as recorded, only in steps (`apply_in_steps`)."""
    apply_in_steps: bool
    """A dependent plan whose agent code the tenant keeps: each approval sends one step, then the code runs again with the real results and its next write(s) wait for approval as the next step."""
    steps: list[ApprovalStepsItem] | None
    """The steps of an apply in steps, oldest first; null for a plan applied at once."""
    requested_by: ApprovalRequestedBy
    created_at: str
    expires_at: str
    decided_by: ApprovalDecidedBy | None
    decided_at: str | None
    comment: str | None
    results: list[ApprovalResultsItem] | None
    """Per applied write (of every step so far): what Cloudflare answered; the apply stops at the first failure."""


@dataclass(frozen=True, kw_only=True, repr=False)
class GetApprovalsResponse(WardenPage["Approval"], items_field="approvals"):
    """`GET /api/v1/approvals`: Plans of writes held for approval, newest first."""
    approvals: list[Approval]
    next_page_token: str | None


GetApprovalsQueryStatus: TypeAlias = Literal["pending", "approved", "rejected", "expired", "applied", "failed"]


@dataclass(frozen=True, kw_only=True, repr=False)
class GetApprovalsByIdResponse(WardenModel):
    """`GET /api/v1/approvals/{id}`: One approval: its plan, decision and per-step results."""
    approval: Approval


@dataclass(frozen=True, kw_only=True, repr=False)
class PostApprovalsByIdApproveResponse(WardenModel):
    """`POST /api/v1/approvals/{id}/approve`: Approve a pending plan (or its current step): Warden sends exactly its writes, in order, and reports each."""
    approval: Approval


class PostApprovalsByIdApproveBody(TypedDict, total=False):
    comment: str
    step: int


@dataclass(frozen=True, kw_only=True, repr=False)
class PostApprovalsByIdRejectResponse(WardenModel):
    """`POST /api/v1/approvals/{id}/reject`: Reject a pending plan: nothing of it is ever sent."""
    approval: Approval


class PostApprovalsByIdRejectBody(TypedDict, total=False):
    comment: str
    step: int


@dataclass(frozen=True, kw_only=True, repr=False)
class AuditEventCaller(WardenModel):
    type: str
    id: str | None
    client_name: str | None
    client_version: str | None
    ip: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class AuditEventUpstream(WardenModel):
    method: str
    path_template: str | None
    path: str
    status: float | None
    cf_ray: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class AuditEventError(WardenModel):
    code: str
    message: str


@dataclass(frozen=True, kw_only=True, repr=False)
class AuditEvent(WardenModel):
    id: str
    tenant_id: str
    seq: float
    occurred_at: str
    kind: str
    action: str
    outcome: str
    execution_id: str | None
    identifier: str | None
    caller: AuditEventCaller
    agent_run_id: str | None
    tool_name: str | None
    connected_account_id: str | None
    upstream: AuditEventUpstream | None
    error: AuditEventError | None
    duration_ms: float | None
    request_bytes: float | None
    response_bytes: float | None
    code_sha256: str | None
    code: str | None
    intent_id: str | None = None
    """On an upstream request's outcome: the id of its intent (committed before the request was sent)."""
    body_sha256: str | None = None
    """SHA-256 of an upstream request's body, on its intent."""
    details: dict[str, Any] | None = None
    """Event specifics: a lifecycle change's before and after, an upstream request's query."""
    prev_hash: str
    hash: str


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAuditEventsResponse(WardenPage["AuditEvent"], items_field="events"):
    """`GET /api/v1/audit/events`: Audit events of the tenant, oldest first."""
    events: list[AuditEvent]
    next_page_token: str | None


GetAuditEventsQueryOutcome: TypeAlias = Literal["success", "error", "refused", "rate_limited", "timeout", "pending", "unknown"]


GetAuditEventsQueryKind: TypeAlias = Literal["tool_call", "upstream_request", "offboarding", "connected_account", "lifecycle", "mcp_oauth"]


GetAuditExportQueryFormat: TypeAlias = Literal["ndjson", "ocsf", "cef"]


@dataclass(frozen=True, kw_only=True, repr=False)
class AuditSink(WardenModel):
    id: str
    type: str
    name: str
    config: dict[str, Any]
    """The configuration without its secret."""
    enabled: bool
    created_at: str


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAuditSinksResponse(WardenModel):
    """`GET /api/v1/audit/sinks`: SIEM sinks of the tenant."""
    sinks: list[AuditSink]


@dataclass(frozen=True, kw_only=True, repr=False)
class PostAuditSinksResponse(WardenModel):
    """`POST /api/v1/audit/sinks`: Add a SIEM sink: HTTPS webhook (HMAC-signed), Splunk HEC, or syslog RFC 5424 over TCP/TLS."""
    sink: AuditSink


class _PostAuditSinksBodyRequired(TypedDict):
    config: dict[str, Any]


class _PostAuditSinksBodyOptional(TypedDict, total=False):
    name: str


class PostAuditSinksBody(_PostAuditSinksBodyRequired, _PostAuditSinksBodyOptional):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class Delivery(WardenModel):
    id: str
    event_id: str
    status: Literal["pending", "sending", "delivered", "failed"]
    attempts: float
    last_error: str | None
    next_attempt_at: str
    created_at: str
    delivered_at: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAuditSinksByIdDeliveriesResponse(WardenModel):
    """`GET /api/v1/audit/sinks/{id}/deliveries`: Deliveries to a sink, newest first (status=failed lists what was given up)."""
    deliveries: list[Delivery]


GetAuditSinksByIdDeliveriesQueryStatus: TypeAlias = Literal["pending", "sending", "delivered", "failed"]


@dataclass(frozen=True, kw_only=True, repr=False)
class PostAuditSinksByIdDeliveriesRetryResponse(WardenModel):
    """`POST /api/v1/audit/sinks/{id}/deliveries/retry`: Send failed deliveries to a sink again (all of them, or the ones named)."""
    retried: float
    """Failed deliveries put back in the queue"""


class PostAuditSinksByIdDeliveriesRetryBody(TypedDict, total=False):
    delivery_ids: list[str]


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAuditVerifyResponseProblemsItem(WardenModel):
    seq: float
    kind: str
    detail: str


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAuditVerifyResponseIntentsWithoutOutcomeItem(WardenModel):
    seq: float
    id: str
    occurred_at: str


@dataclass(frozen=True, kw_only=True, repr=False)
class GetAuditVerifyResponse(WardenModel):
    """`GET /api/v1/audit/verify`: Check the tenant's audit hash chain (what `warden audit verify --tenant` reports)."""
    ok: bool
    checked: float
    expired: float
    """Records accounted for by retention anchors (dropped partitions)"""
    problems: list[GetAuditVerifyResponseProblemsItem]
    intents_without_outcome: list[GetAuditVerifyResponseIntentsWithoutOutcomeItem]
    unknown_outcomes: float


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectedAccountCloudflareAccountsItem(WardenModel):
    id: str
    name: str


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectedAccountCloudflare(WardenModel):
    user_id: str | None
    account_ids: list[str]
    accounts: list[ConnectedAccountCloudflareAccountsItem]
    token_id: str | None
    token_status: str
    expires_on: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectedAccountR2AccessKey(WardenModel):
    access_key_id: str
    created_at: str


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectedAccountRateBudgetCloudflare(WardenModel):
    remaining: float
    reset_at: str


@dataclass(frozen=True, kw_only=True, repr=False)
class RateBudgetCloudflare(WardenModel):
    remaining: float
    reset_at: str


@dataclass(frozen=True, kw_only=True, repr=False)
class RateBudget(WardenModel):
    remaining: float
    """Requests Warden would send now: its own window's figure, or Cloudflare's when lower; 0 while blocked"""
    capacity: float
    """Requests allowed in any window"""
    window_seconds: float
    next_refill_at: str | None
    """When the oldest request in the window leaves it, allowing one more; null for an empty window"""
    blocked_until: str | None
    """Set while Cloudflare asked to back off (429 Retry-After)"""
    cloudflare_binding: bool
    """True while Cloudflare's count is the lower figure: its Ratelimit headers reported requests that are not Warden's (the dashboard, other tools use the same quota) or a lower quota"""
    cloudflare: RateBudgetCloudflare | None
    """What Cloudflare's count allows (its quota less Warden's requests and the others it reported) while that matters, until reset_at; null when Warden's window alone decides"""


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectedAccountRateBudget(WardenModel):
    remaining: float
    """Requests Warden would send now: its own window's figure, or Cloudflare's when lower; 0 while blocked"""
    capacity: float
    """Requests allowed in any window"""
    window_seconds: float
    next_refill_at: str | None
    """When the oldest request in the window leaves it, allowing one more; null for an empty window"""
    blocked_until: str | None
    """Set while Cloudflare asked to back off (429 Retry-After)"""
    cloudflare_binding: bool
    """True while Cloudflare's count is the lower figure: its Ratelimit headers reported requests that are not Warden's (the dashboard, other tools use the same quota) or a lower quota"""
    cloudflare: ConnectedAccountRateBudgetCloudflare | None
    """What Cloudflare's count allows (its quota less Warden's requests and the others it reported) while that matters, until reset_at; null when Warden's window alone decides"""
    principal: str
    """cf:user:<id> or cf:account:<id>: whom Cloudflare counts these requests against; cf:token:<id> for a user token that may not read its user (User Details Read), whose budget is then its own"""
    graphql: RateBudget
    """GraphQL queries, limited apart from REST"""
    r2: RateBudget
    """R2 object requests (r2.<op> in cloudflare_execute, CLOUDFLARE_R2_BUDGET), limited apart from the API"""


@dataclass(frozen=True, kw_only=True, repr=False)
class ConnectedAccount(WardenModel):
    id: str
    identifier: str
    connection_name: str
    status: Literal["ACTIVE", "INVALID", "REVOKED"]
    authorization_type: Literal["api_token", "global_api_key"]
    token_kind: Literal["user", "account"]
    cloudflare: ConnectedAccountCloudflare
    r2_access_key: ConnectedAccountR2AccessKey | None
    """The R2 access key pair vaulted beside the credential (PUT …/r2_access_key), by its id only; R2 requests sign with it when present"""
    created_at: str
    updated_at: str
    last_used_at: str | None
    rate_budget: ConnectedAccountRateBudget | None
    """The upstream budget left now (REST fields at the top level); null when revoked or when the budget store is unreachable"""


@dataclass(frozen=True, kw_only=True, repr=False)
class GetConnectedAccountsResponse(WardenPage["ConnectedAccount"], items_field="connected_accounts"):
    """`GET /api/v1/connected_accounts`: List connected accounts (credentials are never returned)."""
    connected_accounts: list[ConnectedAccount]
    next_page_token: str | None


GetConnectedAccountsQueryStatus: TypeAlias = Literal["ACTIVE", "INVALID", "REVOKED"]


@dataclass(frozen=True, kw_only=True, repr=False)
class PostConnectedAccountsResponse(WardenModel):
    """`POST /api/v1/connected_accounts`: Vault an end user's Cloudflare credential (verified against Cloudflare first)."""
    connected_account: ConnectedAccount


class AuthorizationInputApiToken(TypedDict):
    type: Literal["api_token"]
    api_token: str


class AuthorizationInputGlobalApiKey(TypedDict):
    type: Literal["global_api_key"]
    email: str
    api_key: str


AuthorizationInput: TypeAlias = Union["AuthorizationInputApiToken", "AuthorizationInputGlobalApiKey"]


class _PostConnectedAccountsBodyRequired(TypedDict):
    identifier: str
    authorization: AuthorizationInput


class _PostConnectedAccountsBodyOptional(TypedDict, total=False):
    connection_name: str


class PostConnectedAccountsBody(_PostConnectedAccountsBodyRequired, _PostConnectedAccountsBodyOptional):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class GetConnectedAccountsByIdResponse(WardenModel):
    """`GET /api/v1/connected_accounts/{id}`: Get a connected account."""
    connected_account: ConnectedAccount


@dataclass(frozen=True, kw_only=True, repr=False)
class PutConnectedAccountsByIdResponse(WardenModel):
    """`PUT /api/v1/connected_accounts/{id}`: Rotate the credential (the new one is verified first)."""
    connected_account: ConnectedAccount


class PutConnectedAccountsByIdBody(TypedDict):
    authorization: AuthorizationInput


@dataclass(frozen=True, kw_only=True, repr=False)
class PutConnectedAccountsByIdR2AccessKeyResponse(WardenModel):
    """`PUT /api/v1/connected_accounts/{id}/r2_access_key`: Vault an R2 access key pair on the account (R2 requests sign with it instead of the token)."""
    connected_account: ConnectedAccount


class PutConnectedAccountsByIdR2AccessKeyBody(TypedDict):
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True, kw_only=True, repr=False)
class DeleteConnectedAccountsByIdR2AccessKeyResponse(WardenModel):
    """`DELETE /api/v1/connected_accounts/{id}/r2_access_key`: Delete the account's R2 access key pair (R2 requests go back to the token's S3 credentials)."""
    connected_account: ConnectedAccount


@dataclass(frozen=True, kw_only=True, repr=False)
class PostExecuteToolResponseError(WardenModel):
    code: str
    message: str


@dataclass(frozen=True, kw_only=True, repr=False)
class PostExecuteToolResponseTruncated(WardenModel):
    """Set when the result was cut to fit the result budget (about 6,000 tokens): data then holds the beginning of it, with "…[N more items]" (or characters, keys) marks where things were left out; return less to see the rest."""
    original_chars: float
    original_tokens: float
    kept_chars: float


@dataclass(frozen=True, kw_only=True, repr=False)
class PostExecuteToolResponse(WardenModel):
    """`POST /api/v1/execute_tool`: Run cloudflare_search or cloudflare_execute for an identifier (execute_tool)."""
    data: Any
    error: PostExecuteToolResponseError | None = None
    logs: list[str] | None = None
    """console.log lines of the code, when it wrote any; the last says so when some were cut."""
    truncated: PostExecuteToolResponseTruncated | None = None
    """Set when the result was cut to fit the result budget (about 6,000 tokens): data then holds the beginning of it, with "…[N more items]" (or characters, keys) marks where things were left out; return less to see the rest."""
    execution_id: str
    approval: dict[str, Any] | None = None
    """Writes an approve policy rule held: {id, url, status, expires_at, plan, …}; a person approves them at POST /api/v1/approvals/{id}/approve. Also the answer to params {approval_id}."""


class _PostExecuteToolBodyRequired(TypedDict):
    tool_name: str
    identifier: str
    params: dict[str, Any]


class _PostExecuteToolBodyOptional(TypedDict, total=False):
    connection_name: str
    connected_account_id: str
    agent_run_id: str


class PostExecuteToolBody(_PostExecuteToolBodyRequired, _PostExecuteToolBodyOptional):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class PostIdentitiesByIdentifierOffboardResponseRevokedConnectedAccountsItemUpstream(WardenModel):
    revoked: bool
    detail: str


@dataclass(frozen=True, kw_only=True, repr=False)
class PostIdentitiesByIdentifierOffboardResponseRevokedConnectedAccountsItem(WardenModel):
    id: str
    upstream: PostIdentitiesByIdentifierOffboardResponseRevokedConnectedAccountsItemUpstream | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class PostIdentitiesByIdentifierOffboardResponse(WardenModel):
    """`POST /api/v1/identities/{identifier}/offboard`: Offboard an identity: revoke its connected accounts (crypto-shredded) and MCP tokens, close its MCP sessions everywhere; optionally delete its Cloudflare tokens."""
    revoked_connected_accounts: list[PostIdentitiesByIdentifierOffboardResponseRevokedConnectedAccountsItem]
    revoked_mcp_tokens: float


class PostIdentitiesByIdentifierOffboardBody(TypedDict, total=False):
    revoke_upstream: bool


@dataclass(frozen=True, kw_only=True, repr=False)
class PolicyRulesItem(WardenModel):
    effect: Literal["allow", "deny", "approve"]
    methods: list[str]
    """GET, POST, PUT, PATCH, DELETE or "*" """
    path: str
    """Pattern: * or {name} = one segment, ** = any number, e.g. /zones/*/dns_records/**, or r2://bucket/** for R2 objects (execute's r2 calls) in every account, r2://account:<account_id>/bucket/** in one, r2://[account:<account_id>/]jurisdiction:eu/bucket/** in one jurisdiction; at most 32 segments and 4 **. Deny and approve rules match fixed names in any case, allow rules exactly; approve holds writes no allow rule matches for a person's approval."""
    name: str | None = None


@dataclass(frozen=True, kw_only=True, repr=False)
class PolicyCredentialOperations(WardenModel):
    """Tenant-wide policy only."""
    allow: list[Literal["api_tokens", "api_keys", "r2_temporary_credentials", "access_service_tokens", "tunnel_tokens", "stream_signing_keys", "calls_secrets", "images_signing_keys", "certificates", "account_members", "service_secrets"]] | None = None
    """Credential operations agents may run (all are refused by default)."""
    reveal_secrets: list[Literal["api_tokens", "api_keys", "r2_temporary_credentials", "access_service_tokens", "tunnel_tokens", "stream_signing_keys", "calls_secrets", "images_signing_keys", "certificates", "account_members", "service_secrets"]] | None = None
    """Kinds whose secrets (token values, keys, and the secrets open answers show, such as an Access identity provider's client secret) agents may see in responses; each must be in allow."""


@dataclass(frozen=True, kw_only=True, repr=False)
class Policy(WardenModel):
    read_only: bool | None = None
    """Only GET requests and GraphQL queries."""
    deny_writes_by_default: bool | None = None
    """Writes need a matching allow rule."""
    rules: list[PolicyRulesItem] | None = None
    credential_operations: PolicyCredentialOperations | None = None
    """Tenant-wide policy only."""


@dataclass(frozen=True, kw_only=True, repr=False)
class GetIdentitiesByIdentifierPolicyResponse(WardenModel):
    """`GET /api/v1/identities/{identifier}/policy`: An identifier's own policy (applied in addition to the tenant's)."""
    policy: Policy


@dataclass(frozen=True, kw_only=True, repr=False)
class PutIdentitiesByIdentifierPolicyResponse(WardenModel):
    """`PUT /api/v1/identities/{identifier}/policy`: Replace an identifier's policy."""
    policy: Policy


class _PolicyInputRulesItemRequired(TypedDict):
    effect: Literal["allow", "deny", "approve"]
    methods: list[str]
    path: str


class _PolicyInputRulesItemOptional(TypedDict, total=False):
    name: str


class PolicyInputRulesItem(_PolicyInputRulesItemRequired, _PolicyInputRulesItemOptional):
    pass


class PolicyInputCredentialOperations(TypedDict, total=False):
    """Tenant-wide policy only."""
    allow: list[Literal["api_tokens", "api_keys", "r2_temporary_credentials", "access_service_tokens", "tunnel_tokens", "stream_signing_keys", "calls_secrets", "images_signing_keys", "certificates", "account_members", "service_secrets"]]
    reveal_secrets: list[Literal["api_tokens", "api_keys", "r2_temporary_credentials", "access_service_tokens", "tunnel_tokens", "stream_signing_keys", "calls_secrets", "images_signing_keys", "certificates", "account_members", "service_secrets"]]


class PolicyInput(TypedDict, total=False):
    read_only: bool
    deny_writes_by_default: bool
    rules: list[PolicyInputRulesItem]
    credential_operations: PolicyInputCredentialOperations


PutIdentitiesByIdentifierPolicyBody: TypeAlias = "PolicyInput"


@dataclass(frozen=True, kw_only=True, repr=False)
class McpConsent(WardenModel):
    id: str
    """`oag_…`: the grant; MCP tool calls made under it carry it as caller id."""
    identifier: str
    client_id: str
    client_name: str | None
    redirect_host: str | None
    created_at: str
    expires_at: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class GetMcpConsentsResponse(WardenModel):
    """`GET /api/v1/mcp/consents`: Consents engineers gave MCP clients (OAuth grants), newest first."""
    consents: list[McpConsent]


@dataclass(frozen=True, kw_only=True, repr=False)
class PostMcpLoginLinksResponse(WardenModel):
    """`POST /api/v1/mcp/login_links`: A one-time, short-lived link that signs an identifier in to the MCP OAuth flow."""
    url: str
    expires_at: str


class PostMcpLoginLinksBody(TypedDict):
    identifier: str


@dataclass(frozen=True, kw_only=True, repr=False)
class McpSsoDomainsItemTxtRecord(WardenModel):
    type: Literal["TXT"]
    name: str
    value: str


@dataclass(frozen=True, kw_only=True, repr=False)
class McpSsoDomainsItem(WardenModel):
    domain: str
    status: Literal["verified", "pending", "held_elsewhere"]
    """`verified`: engineers of this domain are sent to this provider (one proven by DNS stays verified while its `txt_record` stays published: see `proof_missing_since`). `pending`: publish `txt_record`, then POST …/sso/domains/{domain}/verify (with `txt_record` null, nobody holds the domain now: verify claims it again, and under the DNS proof gives it a record). `held_elsewhere`: another organization proved it first."""
    txt_record: McpSsoDomainsItemTxtRecord | None
    """The DNS record that proves a pending domain, and that keeps a domain verified by it proven (Warden looks it up again every SSO_DOMAIN_RECHECK_HOURS); null when there is none to publish (verified without a record, held elsewhere, or pending with no claim yet)."""
    proof_missing_since: str | None
    """A verified domain whose `txt_record` a re-check found missing: since when (it is in the trail as sso.domain_proof_missing); null otherwise. Publish the record again and POST …/verify to end it at once."""
    lapses_at: str | None
    """When such a domain lapses to pending (engineers of it are no longer sent here, and another organization may prove it) unless its record is back; null otherwise."""


@dataclass(frozen=True, kw_only=True, repr=False)
class McpSso(WardenModel):
    issuer: str
    client_id: str
    identifier_claim: str
    allowed_email_domains: list[str]
    domains: list[McpSsoDomainsItem]
    """Where each allowed domain stands: only verified ones route and sign engineers in."""
    console_admins: list[str]
    """Identifiers that may sign in to the admin console with this provider (none by default)."""
    redirect_uri: str
    """Register this redirect URI for Warden’s client at your provider."""
    created_at: str
    updated_at: str


@dataclass(frozen=True, kw_only=True, repr=False)
class GetMcpSsoResponse(WardenModel):
    """`GET /api/v1/mcp/sso`: The tenant’s SSO configuration for MCP sign-in (never the secret)."""
    sso: McpSso


@dataclass(frozen=True, kw_only=True, repr=False)
class PutMcpSsoResponse(WardenModel):
    """`PUT /api/v1/mcp/sso`: Configure the OpenID Connect provider engineers sign in with (the client secret is sealed)."""
    sso: McpSso


class _PutMcpSsoBodyRequired(TypedDict):
    issuer: str
    client_id: str
    client_secret: str
    allowed_email_domains: list[str]


class _PutMcpSsoBodyOptional(TypedDict, total=False):
    identifier_claim: str
    console_admins: list[str]


class PutMcpSsoBody(_PutMcpSsoBodyRequired, _PutMcpSsoBodyOptional):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class PostMcpSsoDomainsByDomainVerifyResponse(WardenModel):
    """`POST /api/v1/mcp/sso/domains/{domain}/verify`: Prove an allowed email domain by its DNS TXT record (`domains[].txt_record`; a listed domain nobody holds is claimed again first); the first organization to prove a domain keeps it."""
    sso: McpSso


@dataclass(frozen=True, kw_only=True, repr=False)
class McpTokenClient(WardenModel):
    name: str
    version: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class McpToken(WardenModel):
    id: str
    identifier: str
    connection_names: list[str] | None
    """Connections the token may use; null = all of the identifier’s."""
    status: Literal["active", "expired", "revoked"]
    created_at: str
    expires_at: str
    revoked_at: str | None
    last_used_at: str | None
    """Updated at most once a minute."""
    client: McpTokenClient | None
    """clientInfo of the last MCP initialize made with the token."""


@dataclass(frozen=True, kw_only=True, repr=False)
class GetMcpTokensResponse(WardenPage["McpToken"], items_field="mcp_tokens"):
    """`GET /api/v1/mcp/tokens`: An identity's MCP tokens, oldest first, live or not (never the secret)."""
    mcp_tokens: list[McpToken]
    next_page_token: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class PostMcpTokensResponseCursorConfigMcpServersValue(WardenModel):
    url: str
    headers: dict[str, str]


@dataclass(frozen=True, kw_only=True, repr=False)
class PostMcpTokensResponseCursorConfig(WardenModel):
    mcpServers: dict[str, PostMcpTokensResponseCursorConfigMcpServersValue]


@dataclass(frozen=True, kw_only=True, repr=False)
class PostMcpTokensResponse(WardenModel):
    """`POST /api/v1/mcp/tokens`: Mint a per-user MCP session token (shown once) and a ready ~/.cursor/mcp.json fragment."""
    token: str
    token_id: str
    url: str
    expires_at: str
    cursor_config: PostMcpTokensResponseCursorConfig


class _PostMcpTokensBodyRequired(TypedDict):
    identifier: str


class _PostMcpTokensBodyOptional(TypedDict, total=False):
    connection_names: list[str]
    expiry: str | float


class PostMcpTokensBody(_PostMcpTokensBodyRequired, _PostMcpTokensBodyOptional):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class GetPolicyResponse(WardenModel):
    """`GET /api/v1/policy`: The tenant-wide policy."""
    policy: Policy


@dataclass(frozen=True, kw_only=True, repr=False)
class PutPolicyResponse(WardenModel):
    """`PUT /api/v1/policy`: Replace the tenant-wide policy (applies to every identifier, on every upstream request)."""
    policy: Policy


PutPolicyBody: TypeAlias = "PolicyInput"


@dataclass(frozen=True, kw_only=True, repr=False)
class PostPolicyEvaluateResponse(WardenModel):
    """`POST /api/v1/policy/evaluate`: Would this upstream request be allowed for an identifier now? The decision and the rule that decides."""
    allowed: bool
    path: str
    """The canonical path the policy was evaluated on"""
    rule: str | None
    """The deciding rule; null when nothing matched (default allow)"""
    scope: Literal["tenant", "identity"] | None
    reason: str


class _PostPolicyEvaluateBodyRequired(TypedDict):
    identifier: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str


class _PostPolicyEvaluateBodyOptional(TypedDict, total=False):
    graphql_query: bool


class PostPolicyEvaluateBody(_PostPolicyEvaluateBodyRequired, _PostPolicyEvaluateBodyOptional):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class TenantSettingsAudit(WardenModel):
    retention_days: int
    """1 to 400; applies to new records."""
    capture_code: bool
    """Store submitted code in the audit trail (its SHA-256 is always stored)."""


@dataclass(frozen=True, kw_only=True, repr=False)
class TenantSettingsApprovals(WardenModel):
    approver_api_key_ids: list[str] | None
    """The API keys that may approve or reject write approvals; null: any key of the tenant (never the key that planned the writes)."""


@dataclass(frozen=True, kw_only=True, repr=False)
class TenantSettings(WardenModel):
    budget: str
    """Upstream requests per seconds for each Cloudflare user, e.g. "1000/300"."""
    audit: TenantSettingsAudit
    approvals: TenantSettingsApprovals


@dataclass(frozen=True, kw_only=True, repr=False)
class GetSettingsResponse(WardenModel):
    """`GET /api/v1/settings`: Effective tenant settings."""
    settings: TenantSettings


@dataclass(frozen=True, kw_only=True, repr=False)
class PatchSettingsResponse(WardenModel):
    """`PATCH /api/v1/settings`: Change the rate budget or audit settings of the tenant (null returns a setting to the default)."""
    settings: TenantSettings


class PatchSettingsBodyAudit(TypedDict, total=False):
    retention_days: int | None
    capture_code: bool | None


class PatchSettingsBodyApprovals(TypedDict, total=False):
    approver_api_key_ids: list[str] | None


class PatchSettingsBody(TypedDict, total=False):
    budget: str | None
    audit: PatchSettingsBodyAudit
    approvals: PatchSettingsBodyApprovals


@dataclass(frozen=True, kw_only=True, repr=False)
class ToolDefinition(WardenModel):
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, kw_only=True, repr=False)
class GetToolsScopedResponseToolsItemTool(WardenModel):
    definition: ToolDefinition


@dataclass(frozen=True, kw_only=True, repr=False)
class GetToolsScopedResponseToolsItem(WardenModel):
    connection_name: str
    connected_account_id: str
    tool: GetToolsScopedResponseToolsItemTool


@dataclass(frozen=True, kw_only=True, repr=False)
class GetToolsScopedResponse(WardenPage["GetToolsScopedResponseToolsItem"], items_field="tools"):
    """`GET /api/v1/tools/scoped`: Tools the identifier may use now (list_scoped_tools)."""
    tools: list[GetToolsScopedResponseToolsItem]
    next_page_token: str | None


@dataclass(frozen=True, kw_only=True, repr=False)
class Webhook(WardenModel):
    id: str
    url: str
    enabled: bool


@dataclass(frozen=True, kw_only=True, repr=False)
class GetWebhooksResponse(WardenModel):
    """`GET /api/v1/webhooks`: The tenant webhook."""
    webhook: Webhook


@dataclass(frozen=True, kw_only=True, repr=False)
class PutWebhooksResponse(WardenModel):
    """`PUT /api/v1/webhooks`: Set the tenant webhook for connected_account.created/.updated/.status_updated/.deleted (the signing secret is shown once)."""
    webhook: Webhook
    secret: str


class _PutWebhooksBodyRequired(TypedDict):
    url: str


class _PutWebhooksBodyOptional(TypedDict, total=False):
    secret: str


class PutWebhooksBody(_PutWebhooksBodyRequired, _PutWebhooksBodyOptional):
    pass


@dataclass(frozen=True, kw_only=True, repr=False)
class GetWebhooksDeliveriesResponse(WardenModel):
    """`GET /api/v1/webhooks/deliveries`: Deliveries of webhook events, newest first."""
    deliveries: list[Delivery]


GetWebhooksDeliveriesQueryStatus: TypeAlias = Literal["pending", "sending", "delivered", "failed"]


@dataclass(frozen=True, kw_only=True, repr=False)
class GetHealthzResponse(WardenModel):
    """`GET /healthz`: Process is alive."""
    status: Literal["ok"]


@dataclass(frozen=True, kw_only=True, repr=False)
class GetReadyzResponse(WardenModel):
    """`GET /readyz`: Dependencies (database, KMS, Redis, spec) can serve."""
    status: Literal["ready", "unavailable"]
    checks: dict[str, Literal["ok", "degraded", "unavailable"]]
    problems: dict[str, str] | None = None
