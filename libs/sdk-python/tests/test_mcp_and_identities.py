"""mcp.create_token and identities.offboard."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from warden_sdk import ConnectedAccount, McpToken, OffboardResult, WardenApiError, WardenClient

from .conftest import Settings


def test_mints_an_mcp_token_with_a_ready_cursor_config(
    client: WardenClient,
    connect: Callable[[str], ConnectedAccount],
    unique: str,
    settings: Settings,
    secrets: Callable[[str], str],
) -> None:
    identifier = f"{unique}-mcp"
    connect(identifier)
    minted = client.mcp.create_token(identifier=identifier, expiry="600s", connection_names=["cloudflare"])
    secrets(minted.token)
    assert isinstance(minted, McpToken)
    assert minted.token.startswith("wdn_mcp_") and minted.token_id
    assert minted.url == f"{settings.url}/mcp"
    expires = datetime.fromisoformat(minted.expires_at.replace("Z", "+00:00"))
    assert timedelta(seconds=500) < expires - datetime.now(timezone.utc) <= timedelta(seconds=600)
    server = minted.cursor_config.mcpServers["cloudflare"]
    assert (server.url, server.headers) == (minted.url, {"Authorization": f"Bearer {minted.token}"})
    # Shown once, and never by a repr.
    assert minted.token not in repr(minted)

    seconds = client.mcp.create_token(identifier=identifier, expiry=3600)
    secrets(seconds.token)
    with pytest.raises(WardenApiError) as unknown:
        client.mcp.create_token(identifier=identifier, connection_names=["nope"])
    assert (unknown.value.status, unknown.value.field) == (400, "connection_names")
    with pytest.raises(WardenApiError) as too_long:
        client.mcp.create_token(identifier=identifier, expiry="400d")
    assert (too_long.value.status, too_long.value.field) == (400, "expiry")


def test_offboards_an_identity(
    client: WardenClient,
    connect: Callable[[str], ConnectedAccount],
    unique: str,
    secrets: Callable[[str], str],
) -> None:
    identifier = f"{unique}/leaver@example.com"  # any identifier: it is a path segment
    first, second = connect(identifier), connect(identifier)
    secrets(client.mcp.create_token(identifier=identifier).token)
    bystander = connect(f"{unique}-stays")

    result = client.identities.offboard(identifier)
    assert isinstance(result, OffboardResult)
    assert sorted(a.id for a in result.revoked_connected_accounts) == sorted([first.id, second.id])
    assert all(a.upstream is None for a in result.revoked_connected_accounts)
    assert result.revoked_mcp_tokens == 1
    assert {client.connected_accounts.get(a.id).status for a in (first, second)} == {"REVOKED"}
    assert len(client.tools.list_scoped_tools(identifier)) == 0
    assert client.connected_accounts.get(bystander.id).status == "ACTIVE"

    again = client.identities.offboard(identifier)
    assert (again.revoked_connected_accounts, again.revoked_mcp_tokens) == ([], 0)


def test_offboarding_can_revoke_the_cloudflare_tokens_too(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-upstream"
    account = connect(identifier)
    result = client.identities.offboard(identifier, revoke_upstream=True)
    (revoked,) = result.revoked_connected_accounts
    assert revoked.id == account.id
    # The fake's tokens lack API Tokens Write: Cloudflare refuses, and Warden says why.
    assert revoked.upstream is not None and revoked.upstream.revoked is False
    assert "API Tokens Write" in revoked.upstream.detail
