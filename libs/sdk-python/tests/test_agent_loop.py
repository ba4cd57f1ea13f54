"""run_agent_loop with scripted models against the live Warden."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from warden_sdk import (
    AgentLoopError,
    AgentMessage,
    AgentToolExecution,
    AssistantMessage,
    ConnectedAccount,
    ModelTurn,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    WardenClient,
    run_agent_loop,
    to_openai_tool,
)

from .conftest import Settings


def last_tool_result(messages: Sequence[AgentMessage]) -> dict[str, Any]:
    last = messages[-1]
    assert isinstance(last, ToolMessage), "the loop did not feed the tool result back"
    return json.loads(last.content)


def test_search_execute_answer_with_both_calls_audited(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str, settings: Settings
) -> None:
    identifier = f"{unique}-agent"
    connect(identifier)
    seen: list[tuple[list[AgentMessage], list[Any]]] = []

    def model(messages: Sequence[AgentMessage], tools: Sequence[Any]) -> ModelTurn:
        """Stands in for an LLM: each turn depends on what the previous tool call returned."""
        seen.append((list(messages), list(tools)))
        if len(seen) == 1:
            code = "async () => Object.keys(spec.paths).filter((p) => p === '/zones')"
            return ModelTurn(tool_calls=[ToolCall("call_1", "cloudflare_search", json.dumps({"code": code}))])
        if len(seen) == 2:
            (path,) = last_tool_result(messages)["data"]
            code = f"async () => (await cloudflare.request({{ method: 'GET', path: '{path}' }})).result"
            code += ".map((z) => z.name)"
            call = ToolCall("call_2", "cloudflare_execute", {"code": code})
            return ModelTurn(text="Listing the zones.", tool_calls=[call])
        names = last_tool_result(messages)["data"]
        return ModelTurn(text=f"You have {len(names)} zone: {', '.join(names)}.")

    progress: list[AgentToolExecution] = []
    result = run_agent_loop(
        client=client,
        identifier=identifier,
        model=model,
        input="Which zones do I have?",
        system="You operate Cloudflare for the user.",
        to_tool=to_openai_tool,
        on_tool_result=progress.append,
    )

    assert result.text == f"You have 1 zone: {settings.cloudflare['zone_name']}."
    assert result.turns == 3
    first_messages, first_tools = seen[0]
    assert [t["function"]["name"] for t in first_tools] == ["cloudflare_search", "cloudflare_execute"]
    assert first_tools[0]["type"] == "function" and first_tools[0]["function"]["parameters"]["type"] == "object"
    assert first_messages == [
        SystemMessage("You operate Cloudflare for the user."),
        UserMessage("Which zones do I have?"),
    ]
    roles = [m.role for m in result.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert isinstance(result.messages[4], AssistantMessage) and result.messages[4].content == "Listing the zones."
    assert [(e.tool_name, e.result.error if e.result else "none") for e in result.executions] == [
        ("cloudflare_search", None),
        ("cloudflare_execute", None),
    ]
    assert progress == result.executions

    calls = list(client.audit.events(identifier=identifier, kind="tool_call"))
    of_run = [e for e in calls if e.agent_run_id == result.agent_run_id]
    assert [(e.tool_name, e.outcome) for e in of_run] == [
        ("cloudflare_search", "success"),
        ("cloudflare_execute", "success"),
    ]
    assert [e.execution_id for e in of_run] == [e.result.execution_id for e in result.executions if e.result]


def test_mistakes_go_back_to_the_model(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-clumsy"
    connect(identifier)
    feedback: list[dict[str, Any]] = []

    def model(messages: Sequence[AgentMessage], tools: Sequence[Any]) -> ModelTurn:
        if isinstance(messages[-1], ToolMessage):
            feedback.extend(json.loads(m.content) for m in messages[-4:] if isinstance(m, ToolMessage))
            return ModelTurn(text="Sorry.")
        return ModelTurn(
            tool_calls=[
                ToolCall("c1", "cloudflare_delete", "{}"),  # no such tool
                ToolCall("c2", "cloudflare_search", "{not json"),  # malformed arguments
                ToolCall("c3", "cloudflare_search", {}),  # Warden's 400: params.code is required
                ToolCall("c4", "cloudflare_execute", {"code": "async () => { throw new Error('boom') }"}),
            ]
        )

    result = run_agent_loop(client=client, identifier=identifier, model=model, input="Do something.")
    assert result.text == "Sorry." and result.turns == 2
    assert [f["error"]["code"] for f in feedback] == [
        "unknown_tool",
        "invalid_arguments",
        "invalid_request",
        "execution_error",
    ]
    assert "cloudflare_search, cloudflare_execute" in feedback[0]["error"]["message"]
    assert "code" in feedback[2]["error"]["message"]
    assert "boom" in feedback[3]["error"]["message"]
    tool_names = [e.tool_name for e in result.executions]
    assert tool_names == [None, "cloudflare_search", "cloudflare_search", "cloudflare_execute"]
    # Only the last call reached a tool: it has Warden's result (a tool failure).
    assert [e.result is not None for e in result.executions] == [False, False, False, True]


def test_the_loop_stops_when_it_cannot_go_on(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    def never_answers(messages: Sequence[AgentMessage], tools: Sequence[Any]) -> ModelTurn:
        return ModelTurn(tool_calls=[ToolCall(f"c{len(messages)}", "cloudflare_search", {"code": "async () => 1"})])

    with pytest.raises(AgentLoopError) as no_tools:
        run_agent_loop(client=client, identifier=f"{unique}-nobody", model=never_answers, input="Hi")
    assert no_tools.value.code == "no_tools"

    identifier = f"{unique}-looping"
    connect(identifier)
    with pytest.raises(AgentLoopError) as max_turns:
        run_agent_loop(client=client, identifier=identifier, model=never_answers, input="Hi", max_turns=2)
    assert max_turns.value.code == "max_turns"


def test_a_conversation_continues_and_every_account_gets_its_own_tools(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-twice"
    first, second = connect(identifier), connect(identifier)  # two accounts of one connection
    seen_tools: list[list[str]] = []

    def model(messages: Sequence[AgentMessage], tools: Sequence[Any]) -> ModelTurn:
        seen_tools.append([t["name"] for t in tools])
        if isinstance(messages[-1], ToolMessage):
            return ModelTurn(text=f"{len(messages)} messages so far")
        return ModelTurn(tool_calls=[ToolCall("c1", f"cloudflare_search__{second.id}", {"code": "async () => 2"})])

    history: list[AgentMessage] = [UserMessage("Hello"), AssistantMessage("Hi"), UserMessage("Again")]
    result = run_agent_loop(
        client=client, identifier=identifier, model=model, input=history, agent_run_id=f"{unique}-run"
    )
    assert result.text == "5 messages so far" and result.agent_run_id == f"{unique}-run"
    assert result.messages[:3] == history
    # The same tools twice: the model sees names unique per account, each routed to its account.
    assert sorted(seen_tools[0]) == sorted(
        f"cloudflare_{tool}__{account.id}" for tool in ("search", "execute") for account in (first, second)
    )
    (call,) = [
        e for e in client.audit.events(identifier=identifier, kind="tool_call") if e.agent_run_id == f"{unique}-run"
    ]
    assert call.connected_account_id == second.id and result.executions[0].result is not None
    assert result.executions[0].result.data == 2
