"""Error mapping: Warden's envelope becomes WardenApiError; the API key is never in an error."""

from __future__ import annotations

import pickle
import secrets as random_secrets
import socket
import traceback
from collections.abc import Callable

import pytest

from warden_sdk import ConnectedAccount, WardenApiError, WardenClient, WardenConnectionError, WardenError

from .conftest import Settings


def everything_said_about(error: BaseException) -> str:
    return " ".join([str(error), repr(error), "".join(traceback.format_exception(error)), repr(vars(error))])


def test_unauthenticated_with_request_id_and_without_the_key(settings: Settings, secrets: Callable[[str], str]) -> None:
    # One character off the real key: a key in an error would show either of them.
    wrong_key = secrets(settings.api_key[:-4] + "beef")
    stranger = WardenClient(settings.url, wrong_key)
    with pytest.raises(WardenApiError) as caught:
        stranger.tools.list_scoped_tools("anyone")
    error = caught.value
    assert isinstance(error, WardenError)
    assert (error.status, error.code) == (401, "unauthenticated")
    assert error.request_id
    assert error.retry_after is None
    said = everything_said_about(error)
    assert wrong_key not in said and settings.api_key not in said
    assert error.__cause__ is None and error.__context__ is None


def test_bad_input_names_the_field(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-input"
    connect(identifier)
    with pytest.raises(WardenApiError) as page_size:
        client.tools.list_scoped_tools(identifier, page_size=1000)
    error = page_size.value
    assert (error.status, error.code, error.field) == (400, "invalid_request", "page_size")
    assert "page_size" in str(error)

    with pytest.raises(WardenApiError) as params:
        client.tools.execute_tool(tool_name="cloudflare_search", identifier=identifier, params={})
    assert params.value.status == 400 and "code" in (params.value.field or "")

    with pytest.raises(WardenApiError) as tool:
        client.tools.execute_tool(tool_name="cloudflare_delete_everything", identifier=identifier, params={"code": "1"})
    assert (tool.value.status, tool.value.field) == (400, "tool_name")

    with pytest.raises(WardenApiError) as unknown_identifier:
        client.tools.execute_tool(
            tool_name="cloudflare_search", identifier=f"{unique}-nobody", params={"code": "async () => 1"}
        )
    assert unknown_identifier.value.status in (400, 404)


def test_a_refused_credential_is_a_400_and_nothing_is_stored(
    client: WardenClient, unique: str, secrets: Callable[[str], str]
) -> None:
    identifier = f"{unique}-mallory"
    with pytest.raises(WardenApiError) as malformed:
        client.connected_accounts.create(
            identifier=identifier, authorization={"type": "api_token", "api_token": "not a token"}
        )
    assert (malformed.value.status, malformed.value.field) == (400, "authorization.api_token")

    # Well-formed but unknown to Cloudflare: refused after verification.
    unknown = secrets(random_secrets.token_urlsafe(30))
    with pytest.raises(WardenApiError) as refused:
        client.connected_accounts.create(
            identifier=identifier, authorization={"type": "api_token", "api_token": unknown}
        )
    assert (refused.value.status, refused.value.code) == (400, "invalid_credential")
    assert unknown not in everything_said_about(refused.value)
    assert len(client.connected_accounts.list(identifier=identifier)) == 0


def test_unknown_id_is_not_found(client: WardenClient) -> None:
    with pytest.raises(WardenApiError) as caught:
        client.connected_accounts.get("ca_missing")
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    # Path segments are escaped: this is an id, not a path.
    with pytest.raises(WardenApiError) as traversal:
        client.connected_accounts.get("../tools/scoped")
    assert traversal.value.status == 404


def test_an_unreachable_warden_is_a_connection_error(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the socket is closed
    unreachable = WardenClient(f"http://127.0.0.1:{port}", settings.api_key, timeout=5)
    with pytest.raises(WardenConnectionError) as caught:
        unreachable.connected_accounts.list()
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert settings.api_key not in everything_said_about(caught.value)


def test_the_client_keeps_its_key_to_itself(settings: Settings) -> None:
    client = WardenClient(settings.url + "/", settings.api_key)
    assert repr(client) == f"WardenClient(base_url={settings.url!r})"
    assert settings.api_key not in repr(client) + str(client) + repr(client.tools) + repr(vars(client))
    with pytest.raises(TypeError):
        pickle.dumps(client)
    with pytest.raises(ValueError, match="api_key"):
        WardenClient(settings.url, " ")
    # A key read from a file keeps its newline: it still works, and a broken one is not echoed.
    assert WardenClient(settings.url, f"{settings.api_key}\n").tools.list_scoped_tools("anyone").tools == []
    with pytest.raises(ValueError) as broken:
        WardenClient(settings.url, f"{settings.api_key}\r\nX-Injected: 1")
    assert settings.api_key not in str(broken.value)
    with pytest.raises(ValueError, match="base_url"):
        WardenClient("warden.example.com", settings.api_key)
