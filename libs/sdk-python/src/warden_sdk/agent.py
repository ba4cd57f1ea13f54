"""A provider-agnostic tool-calling loop, the same as `runAgentLoop` of the TypeScript SDK.

Warden's scoped tools go to a model, the model's tool calls go to `execute_tool`, the results
go back, until the model answers with text. Messages are a neutral shape; your `model`
function maps them to its provider's (Anthropic Messages, OpenAI chat completions, ...) and
its answer back to a `ModelTurn`. See the README for a complete Anthropic loop.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .client import WardenClient
from .errors import AgentLoopError, WardenApiError
from .tool_formats import to_anthropic_tool
from .types import ExecuteToolResult, ScopedTool, ToolDefinition


@dataclass(frozen=True)
class ToolCall:
    """A tool call as the model made it. `arguments` is a JSON string (OpenAI) or an object
    (Anthropic's `tool_use.input`)."""

    id: str
    name: str
    arguments: str | Mapping[str, Any]


@dataclass(frozen=True)
class ModelTurn:
    """What one model call produced: tool calls (optionally with text), or, without tool calls,
    the final answer `text`."""

    text: str | None = None
    tool_calls: Sequence[ToolCall] = ()


@dataclass(frozen=True)
class SystemMessage:
    content: str
    role: Literal["system"] = field(default="system", init=False)


@dataclass(frozen=True)
class UserMessage:
    content: str
    role: Literal["user"] = field(default="user", init=False)


@dataclass(frozen=True)
class AssistantMessage:
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = field(default="assistant", init=False)


@dataclass(frozen=True)
class ToolMessage:
    tool_call_id: str
    name: str
    content: str
    """JSON: `{"data": ...}` or `{"error": {"code", "message"}}`."""
    role: Literal["tool"] = field(default="tool", init=False)


AgentMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage
AgentModel = Callable[[Sequence[AgentMessage], Sequence[Any]], ModelTurn]
"""`model(messages, tools) -> ModelTurn`; `tools` are what `to_tool` made of Warden's tools."""


@dataclass(frozen=True)
class AgentToolExecution:
    tool_call_id: str
    name: str
    """The name the model used."""
    tool_name: str | None
    """The Warden tool it ran; None when the call never reached Warden (unknown name, bad JSON)."""
    connection_name: str | None
    params: dict[str, Any] | None
    result: ExecuteToolResult | None
    """Warden's answer; None when the call never reached Warden or Warden refused it (400)."""
    content: str
    """What was fed back to the model."""


@dataclass(frozen=True)
class AgentLoopResult:
    text: str
    messages: list[AgentMessage]
    executions: list[AgentToolExecution]
    turns: int
    agent_run_id: str
    """Recorded with every tool call in Warden's audit trail."""


@dataclass(frozen=True)
class _Route:
    tool_name: str
    connection_name: str
    connected_account_id: str


def _model_tool_names(scoped: Sequence[ScopedTool]) -> list[str]:
    """Model-facing names, unique and matching `^[A-Za-z0-9_-]{1,64}$` as most providers want:
    the tool's own name; with the connection's when several connections have the tool; with the
    connected account's id when one connection has several accounts of the identifier."""
    by_name = Counter(t.tool.definition.name for t in scoped)
    by_connection = Counter((t.tool.definition.name, t.connection_name) for t in scoped)
    names: list[str] = []
    for tool in scoped:
        base = tool.tool.definition.name
        if by_name[base] == 1:
            names.append(base)
        elif by_connection[(base, tool.connection_name)] == 1:
            names.append(f"{base}__{re.sub(r'[^A-Za-z0-9_-]+', '_', tool.connection_name)}"[:64])
        else:
            names.append(f"{base}__{tool.connected_account_id}"[:64])
    return names


def _parse_arguments(raw: str | Mapping[str, Any]) -> dict[str, Any] | str:
    """The arguments as an object, or why they are not one (fed back to the model)."""
    if not isinstance(raw, str):
        return dict(raw)
    try:
        parsed = json.loads(raw or "{}")
    except ValueError as error:
        return f"the arguments are not valid JSON: {error}"
    if isinstance(parsed, dict):
        return dict(parsed)  # pyright: ignore[reportUnknownArgumentType]
    return "the arguments must be a JSON object"


def _feedback_error(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


def run_agent_loop(
    *,
    client: WardenClient,
    identifier: str,
    model: AgentModel,
    input: str | Sequence[AgentMessage],
    system: str | None = None,
    to_tool: Callable[[ToolDefinition, str], Any] = to_anthropic_tool,
    connection_names: Sequence[str] | None = None,
    max_turns: int = 10,
    agent_run_id: str | None = None,
    on_tool_result: Callable[[AgentToolExecution], None] | None = None,
) -> AgentLoopResult:
    """Runs the loop for the end user `identifier`.

    Tool calls of one turn run one after another, in the model's order (an execute may change
    what the next one sees), all with one `agent_run_id`. Tool failures, unknown tool names,
    malformed arguments and Warden 400s (whose message names the field and the fix, e.g. which
    `account_id` to pass) are fed back for the model to correct; other Warden errors raise.
    Raises `AgentLoopError` with code `no_tools` when the identifier has no ACTIVE connected
    account, `max_turns` when the model has not answered after `max_turns` calls.
    """
    run_id = agent_run_id or str(uuid.uuid4())
    scoped = list(
        client.tools.list_all_scoped_tools(
            identifier, filter={"connection_names": list(connection_names)} if connection_names else None
        )
    )
    if not scoped:
        connections = " for those connections" if connection_names else ""
        raise AgentLoopError(
            "no_tools", f"no tools for identifier {identifier!r}: it has no ACTIVE connected account{connections}"
        )
    routes: dict[str, _Route] = {}
    tools: list[Any] = []
    for tool, name in zip(scoped, _model_tool_names(scoped)):
        routes[name] = _Route(tool.tool.definition.name, tool.connection_name, tool.connected_account_id)
        tools.append(to_tool(tool.tool.definition, name))

    messages: list[AgentMessage] = (
        [*([SystemMessage(system)] if system else []), UserMessage(input)]
        if isinstance(input, str)
        else list(input)
    )
    executions: list[AgentToolExecution] = []

    def execute(call: ToolCall) -> AgentToolExecution:
        route = routes.get(call.name)
        if route is None:
            content = _feedback_error("unknown_tool", f"no tool {call.name!r}; available: {', '.join(routes)}")
            return AgentToolExecution(call.id, call.name, None, None, None, None, content)
        params = _parse_arguments(call.arguments)
        if isinstance(params, str):
            content = _feedback_error("invalid_arguments", params)
            return AgentToolExecution(call.id, call.name, route.tool_name, route.connection_name, None, None, content)
        try:
            result = client.tools.execute_tool(
                tool_name=route.tool_name,
                identifier=identifier,
                params=params,
                connection_name=route.connection_name,
                connected_account_id=route.connected_account_id,
                agent_run_id=run_id,
            )
        except WardenApiError as error:
            if error.status != 400:
                raise
            # Warden's 400 messages already name the field and the fix.
            content = _feedback_error(error.code, error.message)
            return AgentToolExecution(call.id, call.name, route.tool_name, route.connection_name, params, None, content)
        if result.error is not None:
            content = _feedback_error(result.error.code, result.error.message)
        else:
            content = json.dumps({"data": result.data})
        return AgentToolExecution(call.id, call.name, route.tool_name, route.connection_name, params, result, content)

    for turn in range(1, max_turns + 1):
        answer = model(list(messages), list(tools))
        if not answer.tool_calls:
            text = answer.text or ""
            messages.append(AssistantMessage(text))
            return AgentLoopResult(text, messages, executions, turn, run_id)
        messages.append(AssistantMessage(answer.text, tuple(answer.tool_calls)))
        for call in answer.tool_calls:
            execution = execute(call)
            executions.append(execution)
            messages.append(ToolMessage(call.id, call.name, execution.content))
            if on_tool_result is not None:
                on_tool_result(execution)
    raise AgentLoopError("max_turns", f"the model did not answer within {max_turns} turns")
