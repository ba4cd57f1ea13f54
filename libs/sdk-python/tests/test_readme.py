"""The README's examples, run as written against the live Warden."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from warden_sdk import ConnectedAccount, WardenClient

from .conftest import SDK_ROOT, Settings


def readme_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (SDK_ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


def test_the_quick_start_runs(connect: Callable[[str], ConnectedAccount]) -> None:
    # The README's identifier; only this test vaults an account for it.
    connect("user_123")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_block("print(result.data)"), "README.md", "exec"), {})
    paths = ast.literal_eval(printed.getvalue())  # what print() wrote: a list of paths
    assert len(paths) == 3 and all(p.startswith("/zones/") for p in paths)


@dataclass
class Block:
    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict[str, Any])


@dataclass
class Reply:
    content: list[Block]


class ScriptedClaude:
    """Stands in for `anthropic.Anthropic()`: each turn depends on the tool result before it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.messages = self

    def create(self, **request: Any) -> Reply:
        self.calls.append(json.loads(json.dumps(request, default=lambda block: block.__dict__)))
        turn = len(self.calls)
        if turn == 1:
            code = "async () => Object.keys(spec.paths).filter((p) => p === '/zones')"
            return Reply([Block("tool_use", id="toolu_1", name="cloudflare_search", input={"code": code})])
        last = json.loads(request["messages"][-1]["content"][0]["content"])
        if turn == 2:
            (path,) = last["data"]
            code = f"async () => (await cloudflare.request({{ method: 'GET', path: '{path}' }})).result"
            code += ".map((z) => z.name)"
            return Reply(
                [
                    Block("text", text="Listing your zones."),
                    Block("tool_use", id="toolu_2", name="cloudflare_execute", input={"code": code}),
                ]
            )
        return Reply([Block("text", text=f"You have {len(last['data'])} zone: {', '.join(last['data'])}.")])


def test_the_agent_loop_runs_with_a_scripted_model(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str, settings: Settings
) -> None:
    identifier = f"{unique}-claude"
    connect(identifier)
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("def answer_with_claude("), "README.md", "exec"), namespace)
    claude = ScriptedClaude()

    answer = namespace["answer_with_claude"](claude, client, identifier, "Which zones do I have?")

    assert answer == f"You have 1 zone: {settings.cloudflare['zone_name']}."
    assert len(claude.calls) == 3
    first = claude.calls[0]
    assert [t["name"] for t in first["tools"]] == ["cloudflare_search", "cloudflare_execute"]
    assert set(first["tools"][0]) == {"name", "description", "input_schema"}
    assert first["messages"] == [{"role": "user", "content": "Which zones do I have?"}]
    results = [m for m in claude.calls[2]["messages"] if m["role"] == "user" and isinstance(m["content"], list)]
    assert [r["content"][0]["tool_use_id"] for r in results] == ["toolu_1", "toolu_2"]
    assert [r["content"][0]["is_error"] for r in results] == [False, False]
