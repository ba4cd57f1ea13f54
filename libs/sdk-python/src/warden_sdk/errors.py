"""Errors raised by the client. Tool failures are not among them: `execute_tool` returns
them as `result.error` (with `result.data` None), like the API does."""

from __future__ import annotations

from typing import Literal


class WardenError(Exception):
    """Base of every error this SDK raises."""


class WardenApiError(WardenError):
    """A non-2xx answer: Warden's `{"error": {"code", "message", "field"?}}` envelope, the HTTP
    status, and the `x-request-id` to quote to an operator. An answer that is not Warden's
    envelope (a proxy's or load balancer's page) gets the code `http_<status>`.
    The API key is never part of it."""

    status: int
    """The HTTP status."""
    code: str
    """Warden's machine-readable code, e.g. `invalid_request`, `unauthenticated`, `not_found`,
    `rate_limited`, `unavailable`."""
    message: str
    field: str | None
    """The offending input field of a 400, e.g. `identifier` or `params.code`."""
    request_id: str | None
    retry_after: float | None
    """Seconds to wait before retrying, from `Retry-After` (429, some 503s)."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        request = f" [request id {self.request_id}]" if self.request_id else ""
        return f"{self.status} {self.code}{where}: {self.message}{request}"

    def __repr__(self) -> str:
        return (
            f"WardenApiError(status={self.status}, code={self.code!r}, field={self.field!r}, "
            f"message={self.message!r}, request_id={self.request_id!r}, retry_after={self.retry_after!r})"
        )


class WardenConnectionError(WardenError):
    """Warden could not be reached, or did not answer within the client's timeout. Nothing is
    known about whether the request was carried out."""


class AgentLoopError(WardenError):
    """The agent loop could not run (`no_tools`) or the model did not finish (`max_turns`)."""

    code: Literal["no_tools", "max_turns"]

    def __init__(self, code: Literal["no_tools", "max_turns"], message: str) -> None:
        super().__init__(message)
        self.code = code
