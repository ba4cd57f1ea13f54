"""tools.list_scoped_tools / list_all_scoped_tools / execute_tool, and the provider tool shapes."""

from __future__ import annotations

import json
from collections.abc import Callable

from warden_sdk import (
    ConnectedAccount,
    ScopedTool,
    ToolError,
    WardenClient,
    to_anthropic_tool,
    to_anthropic_tools,
    to_openai_tool,
    to_openai_tools,
)

from .conftest import Settings


def test_the_call_shape_of_the_issue(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-user"
    connect(identifier)
    tools = client.tools.list_scoped_tools(
        identifier=identifier, filter={"connection_names": ["cloudflare"]}, page_size=100
    )
    result = client.tools.execute_tool(
        tool_name=tools[0].tool.definition.name,
        identifier=identifier,
        params={"code": "async () => Object.keys(spec.paths['/zones'])"},
    )
    assert tools[0].tool.definition.name == "cloudflare_search"
    assert "get" in result.data
    assert result.error is None
    assert result.execution_id.startswith("exe_")


def test_lists_scoped_tools_page_by_page(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-tools"
    account = connect(identifier)
    page = client.tools.list_scoped_tools(identifier)
    assert [t.tool.definition.name for t in page] == ["cloudflare_search", "cloudflare_execute"]
    assert len(page) == 2 and page.tools == list(page) and page.next_page_token is None
    assert all(isinstance(t, ScopedTool) for t in page)
    assert {(t.connection_name, t.connected_account_id) for t in page} == {("cloudflare", account.id)}
    execute = page[1].tool.definition
    assert execute.input_schema["type"] == "object" and "code" in execute.input_schema["required"]
    assert "cloudflare.request" in execute.description

    first = client.tools.list_scoped_tools(identifier, page_size=1)
    assert len(first) == 1 and first.next_page_token
    second = client.tools.list_scoped_tools(identifier, page_size=1, page_token=first.next_page_token)
    assert [t.tool.definition.name for t in second] == ["cloudflare_execute"]
    walked = client.tools.list_all_scoped_tools(identifier, page_size=1)
    assert [t.tool.definition.name for t in walked] == ["cloudflare_search", "cloudflare_execute"]
    assert [len(p) for p in walked.pages()] == [1, 1]

    # An empty filter is no filter; an unknown identifier has no tools.
    assert len(client.tools.list_scoped_tools(identifier, filter={"connection_names": []})) == 2
    nobody = client.tools.list_scoped_tools(f"{unique}-nobody")
    assert len(nobody) == 0 and not nobody and nobody.next_page_token is None


def test_executes_search_and_execute_and_returns_tool_failures(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str, settings: Settings
) -> None:
    identifier = f"{unique}-exec"
    connect(identifier)
    zones = client.tools.execute_tool(
        tool_name="cloudflare_execute",
        identifier=identifier,
        params={
            "code": "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result"
            ".map((z) => z.name)"
        },
        agent_run_id=f"{unique}-run",
    )
    assert zones.data == [settings.cloudflare["zone_name"]]
    assert zones.error is None

    with_account = client.tools.execute_tool(
        tool_name="cloudflare_execute",
        identifier=identifier,
        params={"code": "async () => accountId", "account_id": settings.cloudflare["account_id"]},
    )
    assert with_account.data == settings.cloudflare["account_id"]

    # A tool failure is a result, not an exception.
    failed = client.tools.execute_tool(
        tool_name="cloudflare_execute",
        identifier=identifier,
        params={"code": "async () => { throw new Error('boom') }"},
    )
    assert failed.data is None
    assert isinstance(failed.error, ToolError)
    assert "boom" in failed.error.message and failed.error.code
    assert failed.execution_id.startswith("exe_")


def test_converts_tool_definitions_for_anthropic_and_openai(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-shapes"
    connect(identifier)
    page = client.tools.list_scoped_tools(identifier)

    anthropic = to_anthropic_tools(page)
    assert [set(t) for t in anthropic] == [{"name", "description", "input_schema"}] * 2
    assert [t["name"] for t in anthropic] == ["cloudflare_search", "cloudflare_execute"]
    assert anthropic[0]["description"] == page[0].tool.definition.description
    assert anthropic[0]["input_schema"] == page[0].tool.definition.input_schema

    openai = to_openai_tools(page)
    assert [t["type"] for t in openai] == ["function", "function"]
    assert [set(t["function"]) for t in openai] == [{"name", "description", "parameters"}] * 2
    assert openai[1]["function"]["parameters"] == page[1].tool.definition.input_schema
    json.dumps([anthropic, openai])  # what the providers' SDKs send

    # One tool, from a scoped tool or a definition, optionally renamed.
    assert to_anthropic_tool(page[0])["name"] == "cloudflare_search"
    assert to_openai_tool(page[1].tool.definition, "cloudflare_execute__prod")["function"]["name"] == (
        "cloudflare_execute__prod"
    )
    # Converted schemas are copies: editing one leaves the page as Warden sent it.
    anthropic[0]["input_schema"]["type"] = "changed"
    assert page[0].tool.definition.input_schema["type"] == "object"
