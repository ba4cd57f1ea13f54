"""Retries on 429 and 503, through HAProxy in front of the live Warden.

Warden itself answers every rate refusal inside an execution (HTTP 200, `error.code
rate_limited`), so the 429s here come from the gateway's real rate limit: a request is refused
with `Retry-After: window + 1` while the previous request from the same address is younger
than the window. The 503s come from a gateway frontend whose backend has no replica up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from warden_sdk import ConnectedAccount, WardenApiError, WardenClient

from .conftest import Settings


def retries_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "warden_sdk"]


def gateway_client(settings: Settings, max_retries: int, max_retry_wait: float = 30) -> WardenClient:
    return WardenClient(
        settings.rate_limited_url, settings.api_key, max_retries=max_retries, max_retry_wait=max_retry_wait
    )


def open_window(settings: Settings, identifier: str) -> None:
    """One request through the gateway, retried as long as needed, so that the next request
    within the window is refused whatever earlier tests sent."""
    gateway_client(settings, max_retries=3, max_retry_wait=60).tools.list_scoped_tools(identifier)


def test_a_429_is_retried_after_its_retry_after(
    settings: Settings, connect: Callable[[str], ConnectedAccount], unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    identifier = f"{unique}-limited"
    connect(identifier)
    patient = gateway_client(settings, max_retries=2, max_retry_wait=60)
    open_window(settings, identifier)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="warden_sdk"):
        page = patient.tools.list_scoped_tools(identifier)
    assert [t.tool.definition.name for t in page] == ["cloudflare_search", "cloudflare_execute"]
    wait = settings.gateway_window_seconds + 1
    assert retries_logged(caplog) == [f"GET /api/v1/tools/scoped answered 429 http_429; retry 1 of 2 in {wait:.2f} s"]
    assert settings.api_key not in caplog.text


def test_a_429_is_raised_when_retries_are_used_up(
    settings: Settings, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    identifier = f"{unique}-impatient"
    open_window(settings, identifier)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="warden_sdk"), pytest.raises(WardenApiError) as caught:
        gateway_client(settings, max_retries=0).tools.list_scoped_tools(identifier)
    error = caught.value
    # Not Warden's envelope: the status, the gateway's own text, and its Retry-After.
    assert (error.status, error.code, error.field) == (429, "http_429", None)
    assert "rate limited by the gateway" in error.message
    assert error.retry_after == settings.gateway_window_seconds + 1
    assert retries_logged(caplog) == []


def test_a_retry_after_longer_than_max_retry_wait_is_not_waited_for(
    settings: Settings, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    identifier = f"{unique}-hurried"
    open_window(settings, identifier)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="warden_sdk"), pytest.raises(WardenApiError) as caught:
        gateway_client(settings, max_retries=5, max_retry_wait=1).tools.list_scoped_tools(identifier)
    assert caught.value.status == 429 and caught.value.retry_after == settings.gateway_window_seconds + 1
    assert retries_logged(caplog) == []


def test_a_503_is_retried_with_backoff_then_raised(
    settings: Settings, caplog: pytest.LogCaptureFixture, unique: str
) -> None:
    down = WardenClient(settings.unavailable_url, settings.api_key, max_retries=2, backoff=0.05, max_retry_wait=1)
    with caplog.at_level(logging.WARNING, logger="warden_sdk"), pytest.raises(WardenApiError) as caught:
        down.connected_accounts.list(identifier=f"{unique}-down")
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, "http_503", None)
    logged = retries_logged(caplog)
    assert [line.split(" in ")[0] for line in logged] == [
        "GET /api/v1/connected_accounts answered 503 http_503; retry 1 of 2",
        "GET /api/v1/connected_accounts answered 503 http_503; retry 2 of 2",
    ]
    # Backoff: 0.05 s doubled per retry, times a jitter in [0.5, 1] (logged to 0.01 s).
    waits = [float(line.split(" in ")[1].removesuffix(" s")) for line in logged]
    assert 0.02 <= waits[0] <= 0.05 and 0.05 <= waits[1] <= 0.10
    assert settings.api_key not in caplog.text


def test_a_503_of_cloudflare_execute_is_not_repeated(
    settings: Settings, caplog: pytest.LogCaptureFixture, unique: str
) -> None:
    down = WardenClient(settings.unavailable_url, settings.api_key, max_retries=2, backoff=0.01)
    code = {"code": "async () => 1"}
    with caplog.at_level(logging.WARNING, logger="warden_sdk"):
        with pytest.raises(WardenApiError) as execute:
            down.tools.execute_tool(tool_name="cloudflare_execute", identifier=f"{unique}-x", params=code)
        assert execute.value.status == 503
        # An execute may have reached Cloudflare before its result was withheld: never run twice.
        assert retries_logged(caplog) == []
        with pytest.raises(WardenApiError) as search:
            down.tools.execute_tool(tool_name="cloudflare_search", identifier=f"{unique}-x", params=code)
        assert search.value.status == 503
        assert len(retries_logged(caplog)) == 2


def test_caller_errors_are_not_retried(client: WardenClient, caplog: pytest.LogCaptureFixture, unique: str) -> None:
    with caplog.at_level(logging.WARNING, logger="warden_sdk"), pytest.raises(WardenApiError) as caught:
        client.tools.list_scoped_tools(f"{unique}-bad", page_size=0)
    assert caught.value.status == 400
    assert retries_logged(caplog) == []
