"""The committed wire types match Warden's OpenAPI document, and parse leniently."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType

from warden_sdk import ConnectedAccount, ExecuteToolResult, JsonObject, McpToken, ScopedToolsPage
from warden_sdk.types import OffboardResult

from .conftest import SDK_ROOT, load_module

GENERATED = SDK_ROOT / "src/warden_sdk/_generated.py"


def load_generator() -> ModuleType:
    return load_module(SDK_ROOT / "codegen/generate_types.py")


def test_the_committed_types_match_the_document_the_service_serves() -> None:
    # The document `npm run sdk:generate:python` reads: services/connector/src/openapi-dump.ts.
    document = json.loads(Path(os.environ["WARDEN_OPENAPI_JSON"]).read_text(encoding="utf-8"))
    fresh: str = load_generator().generate(document)
    committed = GENERATED.read_text(encoding="utf-8")
    if fresh == committed:
        return
    committed_lines, fresh_lines = committed.splitlines(), fresh.splitlines()
    at = next(
        (i for i, (a, b) in enumerate(zip(committed_lines, fresh_lines)) if a != b),
        min(len(committed_lines), len(fresh_lines)),
    )
    committed_line = committed_lines[at] if at < len(committed_lines) else "<end>"
    fresh_line = fresh_lines[at] if at < len(fresh_lines) else "<end>"
    raise AssertionError(
        "libs/sdk-python/src/warden_sdk/_generated.py is stale: run `npm run sdk:generate:python` and commit "
        f"the result (first difference at line {at + 1}: committed {committed_line!r}, served {fresh_line!r})"
    )


def test_the_generator_names_and_shapes() -> None:
    generator = load_generator()
    assert generator.operation_name("get", "/api/v1/tools/scoped") == "GetToolsScoped"
    assert generator.operation_name("post", "/api/v1/identities/{identifier}/offboard") == (
        "PostIdentitiesByIdentifierOffboard"
    )
    assert generator.operation_name("delete", "/admin/v1/tenants/{id}/api_keys/{key_id}") == (
        "DeleteAdminTenantsByIdApiKeysByKeyId"
    )
    assert generator.attribute_name("from") == "from_" and generator.attribute_name("x-y") == "x_y"
    document = {
        "paths": {
            "/api/v1/things": {
                "get": {
                    "summary": "Things",
                    "parameters": [{"in": "query", "name": "from", "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "things": {"type": "array", "items": {"type": "object", "properties": {"class": {"type": "string"}}, "required": ["class"]}},
                                            "next_page_token": {"type": ["string", "null"]},
                                        },
                                        "required": ["things", "next_page_token"],
                                    }
                                }
                            }
                        }
                    },
                },
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"from": {"type": "string"}, "n": {"type": "integer"}}, "required": ["n"]}
                            }
                        }
                    },
                    "responses": {"204": {"description": "none"}},
                },
            }
        }
    }
    source: str = generator.generate(document)
    assert 'class GetThingsResponse(WardenPage["GetThingsResponseThingsItem"], items_field="things"):' in source
    assert "    class_: str = field(metadata={'json': 'class'})\n" in source
    assert 'TypedDict("_PostThingsBodyOptional", {"from": "str"}, total=False)' in source
    # The models resolve their annotations in their module, as `warden_sdk._generated` does.
    module = ModuleType("generated_things")
    sys.modules[module.__name__] = module
    try:
        exec(compile(source.replace("from ._model import", "from warden_sdk._model import"), "things", "exec"), vars(module))
        page = module.GetThingsResponse.from_json({"things": [{"class": "a"}], "next_page_token": None})
    finally:
        del sys.modules[module.__name__]
    assert page[0].class_ == "a" and page[0].to_dict() == {"class": "a"} and page.next_page_token is None


def test_results_keep_fields_this_sdk_does_not_know() -> None:
    # What a newer `execute_tool` may return: a field this SDK's types do not name yet.
    raw = {
        "data": None,
        "execution_id": "exe_1",
        "logs": ["planning", "waiting for approval"],
        "review": {"id": "rev_1", "status": "pending", "plan": [{"method": "DELETE"}], "token": "apv_secret"},
    }
    result = ExecuteToolResult.from_json(raw)
    assert result.data is None and result.error is None and result.execution_id == "exe_1"
    assert result.logs == ["planning", "waiting for approval"]
    assert isinstance(result.review, JsonObject)
    assert (result.review.status, result.review.plan[0].method, result.review["id"]) == ("pending", "DELETE", "rev_1")
    assert set(result.extra_fields()) == {"review"}
    assert result.to_dict() == raw
    assert "apv_secret" not in repr(result) and "waiting for approval" in repr(result)


def test_unknown_values_and_shapes_are_kept_not_rejected() -> None:
    account = ConnectedAccount.from_json(
        {
            "id": "ca_1",
            "identifier": "u",
            "connection_name": "cloudflare",
            "status": "SUSPENDED",  # an enum value this SDK does not know
            "authorization_type": "api_token",
            "token_kind": "user",
            "cloudflare": {"user_id": None, "account_ids": [], "accounts": [], "token_id": None, "token_status": "active", "expires_on": None},
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "last_used_at": None,
            "rate_budget": "unlimited",  # a shape this SDK does not know
        }
    )
    assert account.status == "SUSPENDED" and account.rate_budget == "unlimited"
    assert account.cloudflare.account_ids == []

    page = ScopedToolsPage.from_json({"tools": [], "next_page_token": None})
    assert list(page) == [] and len(page) == 0
    offboarded = OffboardResult.from_json({"revoked_connected_accounts": [{"id": "ca_1"}], "revoked_mcp_tokens": 0})
    assert offboarded.revoked_connected_accounts[0].upstream is None

    token = McpToken.from_json(
        {
            "token": "wdn_mcp_secret",
            "token_id": "mcp_1",
            "url": "https://w/mcp",
            "expires_at": "2026-01-01T00:00:00Z",
            "cursor_config": {"mcpServers": {"cloudflare": {"url": "https://w/mcp", "headers": {"Authorization": "Bearer wdn_mcp_secret"}}}},
        }
    )
    assert token.cursor_config.mcpServers["cloudflare"].headers["Authorization"] == "Bearer wdn_mcp_secret"
    assert "wdn_mcp_secret" not in repr(token)
