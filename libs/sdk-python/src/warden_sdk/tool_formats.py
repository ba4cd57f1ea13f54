"""Warden's tool definitions in the shapes model providers take, one call each."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from .types import AnthropicTool, OpenAiFunctionTool, ScopedTool, ToolDefinition


def _definition(tool: ScopedTool | ToolDefinition) -> ToolDefinition:
    return tool.tool.definition if isinstance(tool, ScopedTool) else tool


def to_anthropic_tool(tool: ScopedTool | ToolDefinition, name: str | None = None) -> AnthropicTool:
    """`{"name", "description", "input_schema"}` (Anthropic Messages API). `name` overrides the
    tool's own, e.g. to keep names unique across connections."""
    definition = _definition(tool)
    return {
        "name": name or definition.name,
        "description": definition.description,
        "input_schema": copy.deepcopy(definition.input_schema),
    }


def to_openai_tool(tool: ScopedTool | ToolDefinition, name: str | None = None) -> OpenAiFunctionTool:
    """`{"type": "function", "function": {"name", "description", "parameters"}}` (OpenAI)."""
    definition = _definition(tool)
    return {
        "type": "function",
        "function": {
            "name": name or definition.name,
            "description": definition.description,
            "parameters": copy.deepcopy(definition.input_schema),
        },
    }


def to_anthropic_tools(tools: Iterable[ScopedTool | ToolDefinition]) -> list[AnthropicTool]:
    """A `list_scoped_tools` page (or any scoped tools) as Anthropic's `tools=`."""
    return [to_anthropic_tool(tool) for tool in tools]


def to_openai_tools(tools: Iterable[ScopedTool | ToolDefinition]) -> list[OpenAiFunctionTool]:
    """A `list_scoped_tools` page (or any scoped tools) as OpenAI's `tools=`."""
    return [to_openai_tool(tool) for tool in tools]
