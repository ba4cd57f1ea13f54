"""`WardenClient`: a typed client for Warden's tenant API (`/api/v1`)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ._generated import (
    DeleteConnectedAccountsByIdR2AccessKeyResponse,
    GetConnectedAccountsByIdResponse,
    PostConnectedAccountsResponse,
    PutConnectedAccountsByIdR2AccessKeyResponse,
    PutConnectedAccountsByIdResponse,
)
from ._transport import Transport, iter_lines
from .pagination import Paginator
from .types import (
    AuditEvent,
    AuditEventKind,
    AuditEventsPage,
    AuditExportFormat,
    AuditOutcome,
    CloudflareAuthorization,
    ConnectedAccount,
    ConnectedAccountsPage,
    ConnectedAccountStatus,
    ExecuteToolResult,
    McpToken,
    OffboardResult,
    ScopedTool,
    ScopedToolsFilter,
    ScopedToolsPage,
)

TimeLike = datetime | str
"""An aware `datetime` (a naive one is taken as local time, as Python does) or an ISO 8601 string."""


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _time(value: TimeLike | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Tools:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list_scoped_tools(
        self,
        identifier: str,
        *,
        filter: ScopedToolsFilter | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> ScopedToolsPage:
        """One page of the tools `identifier` may use now (only those of an ACTIVE connected
        account). The page is a sequence: `page[0].tool.definition.name`."""
        names = (filter or {}).get("connection_names")
        query: dict[str, Any] = {
            "identifier": identifier,
            # An empty list means no filter, like an absent one.
            "connection_names": ",".join(names) if names else None,
            "page_size": page_size,
            "page_token": page_token,
        }
        return ScopedToolsPage.from_json(self._t.request("GET", "/api/v1/tools/scoped", query=query))

    def list_all_scoped_tools(
        self,
        identifier: str,
        *,
        filter: ScopedToolsFilter | None = None,
        page_size: int | None = None,
    ) -> Paginator[ScopedTool]:
        """Every scoped tool of `identifier`, pages fetched as the iteration goes."""
        return Paginator(
            lambda token: self.list_scoped_tools(identifier, filter=filter, page_size=page_size, page_token=token)
        )

    def execute_tool(
        self,
        *,
        tool_name: str,
        identifier: str,
        params: Mapping[str, Any],
        connection_name: str | None = None,
        connected_account_id: str | None = None,
        agent_run_id: str | None = None,
    ) -> ExecuteToolResult:
        """Runs a tool (`cloudflare_search` with `{"code"}`, `cloudflare_execute` with
        `{"code", "account_id"?}`). A tool failure (the code threw, Cloudflare refused, timeout,
        policy, rate limit) is returned as `error` with `data` None; only caller errors raise.

        A 503 is retried only for `cloudflare_search`: an execute may have sent requests to
        Cloudflare before Warden withheld its result, and running it again would repeat them."""
        body: dict[str, Any] = {"tool_name": tool_name, "identifier": identifier, "params": dict(params)}
        optional = {
            "connection_name": connection_name,
            "connected_account_id": connected_account_id,
            "agent_run_id": agent_run_id,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        answer = self._t.request(
            "POST", "/api/v1/execute_tool", body=body, retry_unavailable=tool_name == "cloudflare_search"
        )
        return ExecuteToolResult.from_json(answer)


class ConnectedAccounts:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self,
        *,
        identifier: str,
        authorization: CloudflareAuthorization,
        connection_name: str | None = None,
    ) -> ConnectedAccount:
        """Vaults an end user's Cloudflare credential after Cloudflare verified it; an invalid one
        raises a 400 (`invalid_credential`) and nothing is stored."""
        body: dict[str, Any] = {"identifier": identifier, "authorization": dict(authorization)}
        if connection_name is not None:
            body["connection_name"] = connection_name
        answer = self._t.request("POST", "/api/v1/connected_accounts", body=body)
        return PostConnectedAccountsResponse.from_json(answer).connected_account

    def list(
        self,
        *,
        identifier: str | None = None,
        connection_name: str | None = None,
        status: ConnectedAccountStatus | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> ConnectedAccountsPage:
        query = {
            "identifier": identifier,
            "connection_name": connection_name,
            "status": status,
            "page_size": page_size,
            "page_token": page_token,
        }
        return ConnectedAccountsPage.from_json(self._t.request("GET", "/api/v1/connected_accounts", query=query))

    def list_all(
        self,
        *,
        identifier: str | None = None,
        connection_name: str | None = None,
        status: ConnectedAccountStatus | None = None,
        page_size: int | None = None,
    ) -> Paginator[ConnectedAccount]:
        """Every matching connected account, pages fetched as the iteration goes."""
        return Paginator(
            lambda token: self.list(
                identifier=identifier,
                connection_name=connection_name,
                status=status,
                page_size=page_size,
                page_token=token,
            )
        )

    def get(self, id: str) -> ConnectedAccount:
        answer = self._t.request("GET", f"/api/v1/connected_accounts/{_segment(id)}")
        return GetConnectedAccountsByIdResponse.from_json(answer).connected_account

    def rotate(self, id: str, *, authorization: CloudflareAuthorization) -> ConnectedAccount:
        """Replaces the credential (the new one is verified first)."""
        answer = self._t.request(
            "PUT", f"/api/v1/connected_accounts/{_segment(id)}", body={"authorization": dict(authorization)}
        )
        return PutConnectedAccountsByIdResponse.from_json(answer).connected_account

    def delete(self, id: str) -> None:
        """Revokes: the ciphertext and its data key are destroyed; `get` then shows REVOKED."""
        self._t.request("DELETE", f"/api/v1/connected_accounts/{_segment(id)}")

    def set_r2_access_key(self, id: str, *, access_key_id: str, secret_access_key: str) -> ConnectedAccount:
        """Vaults (or replaces) an R2 access key pair on the account: `r2` calls sign with it
        instead of the S3 credentials derived from its API token. Only its key id is shown back."""
        answer = self._t.request(
            "PUT",
            f"/api/v1/connected_accounts/{_segment(id)}/r2_access_key",
            body={"access_key_id": access_key_id, "secret_access_key": secret_access_key},
        )
        return PutConnectedAccountsByIdR2AccessKeyResponse.from_json(answer).connected_account

    def remove_r2_access_key(self, id: str) -> ConnectedAccount:
        """Deletes the account's R2 access key pair; `r2` calls go back to the token's credentials."""
        answer = self._t.request("DELETE", f"/api/v1/connected_accounts/{_segment(id)}/r2_access_key")
        return DeleteConnectedAccountsByIdR2AccessKeyResponse.from_json(answer).connected_account


class Identities:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def offboard(self, identifier: str, *, revoke_upstream: bool | None = None) -> OffboardResult:
        """Revokes everything of an identity in one step: its connected accounts
        (crypto-shredded) and MCP tokens, and its live MCP sessions; with `revoke_upstream`,
        its Cloudflare tokens too."""
        body = {} if revoke_upstream is None else {"revoke_upstream": revoke_upstream}
        answer = self._t.request("POST", f"/api/v1/identities/{_segment(identifier)}/offboard", body=body)
        return OffboardResult.from_json(answer)


class Mcp:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create_token(
        self,
        *,
        identifier: str,
        connection_names: Sequence[str] | None = None,
        expiry: str | int | None = None,
    ) -> McpToken:
        """Mints a per-user MCP session token (shown once; `repr` hides it) with a ready
        `cursor_config` (`~/.cursor/mcp.json`). `expiry`: 60 s to 30 days, e.g. `"12h"`, `"7d"`
        or seconds; Warden's default is `"3600s"`."""
        body: dict[str, Any] = {"identifier": identifier}
        if connection_names is not None:
            body["connection_names"] = list(connection_names)
        if expiry is not None:
            body["expiry"] = expiry
        return McpToken.from_json(self._t.request("POST", "/api/v1/mcp/tokens", body=body))


class Audit:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list_events(
        self,
        *,
        from_: TimeLike | None = None,
        to: TimeLike | None = None,
        identifier: str | None = None,
        tool_name: str | None = None,
        outcome: AuditOutcome | None = None,
        kind: AuditEventKind | None = None,
        execution_id: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> AuditEventsPage:
        """One page of the tenant's audit events, oldest first."""
        query = {
            "from": _time(from_),
            "to": _time(to),
            "identifier": identifier,
            "tool_name": tool_name,
            "outcome": outcome,
            "kind": kind,
            "execution_id": execution_id,
            "page_size": page_size,
            "page_token": page_token,
        }
        return AuditEventsPage.from_json(self._t.request("GET", "/api/v1/audit/events", query=query))

    def events(
        self,
        *,
        from_: TimeLike | None = None,
        to: TimeLike | None = None,
        identifier: str | None = None,
        tool_name: str | None = None,
        outcome: AuditOutcome | None = None,
        kind: AuditEventKind | None = None,
        execution_id: str | None = None,
        page_size: int | None = None,
    ) -> Paginator[AuditEvent]:
        """Every matching event, oldest first, pages fetched as the iteration goes;
        `.pages()` walks the pages instead."""
        return Paginator(
            lambda token: self.list_events(
                from_=from_,
                to=to,
                identifier=identifier,
                tool_name=tool_name,
                outcome=outcome,
                kind=kind,
                execution_id=execution_id,
                page_size=page_size,
                page_token=token,
            )
        )

    def export(self, format: AuditExportFormat, from_: TimeLike, to: TimeLike) -> ExportStream:
        """Streams the audit trail of a time range (at most 400 days), one event per line:
        `ndjson` (Warden's JSON), `ocsf` (OCSF 1.3 API Activity, JSON) or `cef`. The request is
        made now, so a bad range raises here; the lines are read as they are iterated, never
        held whole in memory."""
        query = {"from": _time(from_), "to": _time(to), "format": format}
        return ExportStream(self._t.open("GET", "/api/v1/audit/export", query=query))


class ExportStream:
    """The lines of an audit export as they arrive. Iterate it once; close it (or use it as a
    context manager) to stop early and release the connection."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._lines = iter_lines(response, "GET /api/v1/audit/export")

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        self._lines.close()
        self._response.close()

    @property
    def closed(self) -> bool:
        return bool(self._response.closed)

    def __enter__(self) -> ExportStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WardenClient:
    """A client for Warden's tenant API.

    `base_url` is where Warden is reached (`https://warden.example.com`, without `/api/v1`);
    `api_key` is a tenant API key (`wdn_sk_...`), sent only in the Authorization header and
    never part of an error, a repr or a log line. `timeout` is in seconds, per socket operation.

    429 and 503 answers are retried up to `max_retries` times: a `Retry-After` is honoured
    (if it is longer than `max_retry_wait` the error is raised at once instead), otherwise the
    wait doubles from `backoff` seconds, with jitter, up to `max_retry_wait`. Each retry is
    logged at WARNING on the `warden_sdk` logger. The client holds no connection: each call
    opens its own.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        backoff: float = 0.5,
    ) -> None:
        # Checked at run time too: callers without a type checker pass anything.
        if not isinstance(base_url, str) or not base_url.startswith(  # pyright: ignore[reportUnnecessaryIsInstance]
            ("http://", "https://")
        ):
            raise ValueError("WardenClient: base_url must be an http(s) URL, e.g. https://warden.example.com")
        if not isinstance(api_key, str) or not api_key.strip():  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError("WardenClient: api_key is required (a tenant API key, wdn_sk_...)")
        # A key read from a file keeps its newline; http.client would refuse the header with
        # an error that quotes it. Surrounding whitespace goes, anything else unprintable is
        # refused here without echoing the key.
        api_key = api_key.strip()
        if not api_key.isprintable() or any(c.isspace() for c in api_key):
            raise ValueError("WardenClient: api_key contains whitespace or control characters")
        if timeout <= 0 or max_retries < 0 or max_retry_wait < 0 or backoff < 0:
            raise ValueError("WardenClient: timeout must be > 0; max_retries, max_retry_wait and backoff >= 0")
        self._transport = Transport(
            base_url,
            api_key,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            backoff=backoff,
        )
        self.tools = Tools(self._transport)
        self.connected_accounts = ConnectedAccounts(self._transport)
        self.identities = Identities(self._transport)
        self.mcp = Mcp(self._transport)
        self.audit = Audit(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def __repr__(self) -> str:
        return f"WardenClient(base_url={self.base_url!r})"

    def __reduce__(self) -> Any:
        # Pickling would write the API key wherever the pickle goes.
        raise TypeError("WardenClient cannot be pickled: it holds an API key; make a new one where needed")


__all__ = [
    "Audit",
    "ConnectedAccounts",
    "ExportStream",
    "Identities",
    "Mcp",
    "TimeLike",
    "Tools",
    "WardenClient",
]
