"""Python SDK for Warden, the credential vault and agent connector for the Cloudflare API.

    from warden_sdk import WardenClient

    client = WardenClient("https://warden.example.com", api_key)
    tools = client.tools.list_scoped_tools(identifier="user_123", page_size=100)
    result = client.tools.execute_tool(
        tool_name=tools[0].tool.definition.name, identifier="user_123", params={"code": "async () => 1"}
    )
    print(result.data)

Standard library only. See README.md for the agent loop.
"""

from ._model import JsonObject, WardenModel, WardenPage
from .agent import (
    AgentLoopResult,
    AgentMessage,
    AgentModel,
    AgentToolExecution,
    AssistantMessage,
    ModelTurn,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    run_agent_loop,
)
from .client import ExportStream, TimeLike, WardenClient
from .errors import AgentLoopError, WardenApiError, WardenConnectionError, WardenError
from .pagination import Paginator
from .tool_formats import to_anthropic_tool, to_anthropic_tools, to_openai_tool, to_openai_tools
from .types import (
    AnthropicTool,
    ApiTokenAuthorization,
    AuditEvent,
    AuditEventKind,
    AuditEventsPage,
    AuditExportFormat,
    AuditOutcome,
    CloudflareAuthorization,
    ConnectedAccount,
    ConnectedAccountsPage,
    ConnectedAccountStatus,
    ExecuteToolResult,
    GlobalApiKeyAuthorization,
    McpToken,
    OffboardResult,
    OpenAiFunctionTool,
    ScopedTool,
    ScopedToolsFilter,
    ScopedToolsPage,
    ToolDefinition,
    ToolError,
)

__all__ = [
    "AgentLoopError",
    "AgentLoopResult",
    "AgentMessage",
    "AgentModel",
    "AgentToolExecution",
    "AnthropicTool",
    "ApiTokenAuthorization",
    "AssistantMessage",
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
    "ExportStream",
    "GlobalApiKeyAuthorization",
    "JsonObject",
    "McpToken",
    "ModelTurn",
    "OffboardResult",
    "OpenAiFunctionTool",
    "Paginator",
    "ScopedTool",
    "ScopedToolsFilter",
    "ScopedToolsPage",
    "SystemMessage",
    "TimeLike",
    "ToolCall",
    "ToolDefinition",
    "ToolError",
    "ToolMessage",
    "UserMessage",
    "WardenApiError",
    "WardenClient",
    "WardenConnectionError",
    "WardenError",
    "WardenModel",
    "WardenPage",
    "run_agent_loop",
    "to_anthropic_tool",
    "to_anthropic_tools",
    "to_openai_tool",
    "to_openai_tools",
]
