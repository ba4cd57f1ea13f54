"""Public names of the wire types the client uses, given once to the generated types.

A change of Warden's OpenAPI document that removes or renames one of these (after
`npm run sdk:generate:python`) fails here, at import, rather than in a user's code.
Results keep the API's snake_case field names: they are the documented JSON.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, TypedDict

from ._generated import (
    AuditEvent,
    AuthorizationInput,
    AuthorizationInputApiToken,
    AuthorizationInputGlobalApiKey,
    ConnectedAccount,
    GetAuditEventsQueryKind,
    GetAuditEventsQueryOutcome,
    GetAuditEventsResponse,
    GetAuditExportQueryFormat,
    GetConnectedAccountsQueryStatus,
    GetConnectedAccountsResponse,
    GetToolsScopedResponse,
    GetToolsScopedResponseToolsItem,
    PostExecuteToolResponse,
    PostExecuteToolResponseError,
    PostIdentitiesByIdentifierOffboardResponse,
    PostMcpTokensResponse,
    ToolDefinition,
)

ScopedToolsPage: TypeAlias = GetToolsScopedResponse
"""One page of `list_scoped_tools`: a sequence of `ScopedTool` (`page[0]`), plus `next_page_token`."""
ScopedTool: TypeAlias = GetToolsScopedResponseToolsItem
"""`connection_name`, `connected_account_id` and `tool.definition` (a `ToolDefinition`)."""
ExecuteToolResult: TypeAlias = PostExecuteToolResponse
"""`data` and `execution_id`; a tool failure is `data` None with `error`, not an exception."""
ToolError: TypeAlias = PostExecuteToolResponseError
ConnectedAccountsPage: TypeAlias = GetConnectedAccountsResponse
ConnectedAccountStatus: TypeAlias = GetConnectedAccountsQueryStatus
CloudflareAuthorization: TypeAlias = AuthorizationInput
"""`{"type": "api_token", "api_token": ...}` or `{"type": "global_api_key", "email": ..., "api_key": ...}`."""
ApiTokenAuthorization: TypeAlias = AuthorizationInputApiToken
GlobalApiKeyAuthorization: TypeAlias = AuthorizationInputGlobalApiKey
McpToken: TypeAlias = PostMcpTokensResponse
OffboardResult: TypeAlias = PostIdentitiesByIdentifierOffboardResponse
AuditEventsPage: TypeAlias = GetAuditEventsResponse
AuditOutcome: TypeAlias = GetAuditEventsQueryOutcome
AuditEventKind: TypeAlias = GetAuditEventsQueryKind
AuditExportFormat: TypeAlias = GetAuditExportQueryFormat


class ScopedToolsFilter(TypedDict, total=False):
    """`list_scoped_tools(filter=...)`: only tools of these connections (`cloudflare` is the
    default one). An empty list means no filter."""

    connection_names: list[str]


class AnthropicTool(TypedDict):
    """An entry of Anthropic's Messages API `tools`."""

    name: str
    description: str
    input_schema: dict[str, Any]


class OpenAiFunction(TypedDict):
    name: str
    description: str
    parameters: dict[str, Any]


class OpenAiFunctionTool(TypedDict):
    """An entry of OpenAI's chat completions `tools`."""

    type: Literal["function"]
    function: OpenAiFunction


__all__ = [
    "AnthropicTool",
    "ApiTokenAuthorization",
    "AuditEvent",
    "AuditEventKind",
    "AuditEventsPage",
    "AuditExportFormat",
    "AuditOutcome",
    "CloudflareAuthorization",
    "ConnectedAccount",
    "ConnectedAccountStatus",
    "ConnectedAccountsPage",
    "ExecuteToolResult",
    "GlobalApiKeyAuthorization",
    "McpToken",
    "OffboardResult",
    "OpenAiFunction",
    "OpenAiFunctionTool",
    "ScopedTool",
    "ScopedToolsFilter",
    "ScopedToolsPage",
    "ToolDefinition",
    "ToolError",
]
