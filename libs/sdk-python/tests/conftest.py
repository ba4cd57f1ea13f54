"""Fixtures for the SDK's tests, which run against a live Warden.

The run is started by `libs/sdk-python/sdk-python.integration.test.ts` (part of `npm test`):
it starts Warden on a fresh PostgreSQL database with Redis and the fake Cloudflare API,
HAProxy in front of it, pip-installs this package into a fresh virtual environment and runs
pytest there with these variables set. Without them the run stops: nothing is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import warden_sdk
from warden_sdk import ConnectedAccount, WardenClient

SDK_ROOT = Path(__file__).resolve().parent.parent


def load_module(path: Path) -> ModuleType:
    """A script of this directory (not part of the package) imported from its file."""
    spec = importlib.util.spec_from_file_location(f"_tested_{path.stem}_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

REQUIRED = (
    "WARDEN_URL",
    "WARDEN_API_KEY",
    "WARDEN_OTHER_API_KEY",
    "WARDEN_RATE_LIMITED_URL",
    "WARDEN_UNAVAILABLE_URL",
    "WARDEN_OPENAPI_JSON",
    "WARDEN_SDK_TEST_FIXTURE",
    "WARDEN_SDK_TEST_SECRETS_OUT",
)


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        raise pytest.UsageError(
            f"{', '.join(missing)} not set: these tests run against a live Warden started by "
            "`npx vitest run libs/sdk-python/sdk-python.integration.test.ts` (from the repository root)"
        )
    prefix = os.environ.get("WARDEN_SDK_EXPECT_PREFIX")
    if prefix and not Path(warden_sdk.__file__).resolve().is_relative_to(Path(prefix).resolve()):
        raise pytest.UsageError(
            f"warden_sdk was imported from {warden_sdk.__file__}, not from the installed package in {prefix}"
        )


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str
    other_api_key: str
    rate_limited_url: str
    unavailable_url: str
    gateway_window_seconds: float
    cloudflare: dict[str, Any]


_SECRETS: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The harness checks that none of these reached Warden's logs.
    Path(os.environ["WARDEN_SDK_TEST_SECRETS_OUT"]).write_text(json.dumps(_SECRETS), encoding="utf-8")


@pytest.fixture(scope="session")
def settings() -> Settings:
    fixture = json.loads(Path(os.environ["WARDEN_SDK_TEST_FIXTURE"]).read_text(encoding="utf-8"))
    return Settings(
        url=os.environ["WARDEN_URL"],
        api_key=os.environ["WARDEN_API_KEY"],
        other_api_key=os.environ["WARDEN_OTHER_API_KEY"],
        rate_limited_url=os.environ["WARDEN_RATE_LIMITED_URL"],
        unavailable_url=os.environ["WARDEN_UNAVAILABLE_URL"],
        gateway_window_seconds=float(fixture["gateway_window_seconds"]),
        cloudflare=fixture["cloudflare"],
    )


@pytest.fixture(scope="session")
def client(settings: Settings) -> WardenClient:
    return WardenClient(settings.url, settings.api_key, timeout=60)


@pytest.fixture(scope="session")
def secrets() -> Callable[[str], str]:
    """Registers a credential a test made or received, for the harness's log check."""

    def add(secret: str) -> str:
        _SECRETS.append(secret)
        return secret

    return add


@pytest.fixture(scope="session")
def _token_pool(settings: Settings) -> Iterator[str]:
    return iter(list(settings.cloudflare["tokens"]))


@pytest.fixture()
def cloudflare_token(_token_pool: Iterator[str]) -> Callable[[], str]:
    """A Cloudflare API token of the fake's user, never vaulted before."""

    def take() -> str:
        token = next(_token_pool, None)
        if token is None:
            raise RuntimeError("the harness's Cloudflare tokens are used up: raise TOKEN_COUNT")
        return token

    return take


@pytest.fixture()
def unique() -> str:
    """A prefix for identifiers no other test uses (the tests share one tenant)."""
    return f"py-{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def connect(client: WardenClient, cloudflare_token: Callable[[], str]) -> Callable[[str], ConnectedAccount]:
    """Vaults a fresh Cloudflare token for an identifier."""

    def connect_identifier(identifier: str) -> ConnectedAccount:
        return client.connected_accounts.create(
            identifier=identifier, authorization={"type": "api_token", "api_token": cloudflare_token()}
        )

    return connect_identifier
