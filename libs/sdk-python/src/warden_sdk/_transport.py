"""HTTP for the client: urllib from the standard library, JSON in and out, retries on 429/503."""

from __future__ import annotations

import http.client
import json
import logging
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Generator, Mapping
from email.utils import parsedate_to_datetime
from importlib import metadata
from typing import IO, Any, cast

from .errors import WardenApiError, WardenConnectionError

logger = logging.getLogger("warden_sdk")

# What is kept of a non-2xx body: enough for any Warden envelope, not a proxy's whole page.
_MAX_ERROR_BODY = 64 * 1024
_MAX_FOREIGN_TEXT = 200
_REDACTED = "[redacted]"


def _version() -> str:
    try:
        return metadata.version("warden-sdk")
    except metadata.PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"warden-sdk-python/{_version()} Python/{sys.version_info.major}.{sys.version_info.minor}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would replay the Authorization header to wherever a redirect points; Warden
    never redirects API calls, so a 3xx is an error (`http_3xx`) instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, moment.timestamp() - time.time())
    return seconds if seconds >= 0 else None


class Transport:
    """Sends one API call, retrying 429 and 503 answers with backoff.

    A `Retry-After` is honoured exactly; one longer than `max_retry_wait` is not waited for (the
    error is raised at once, with `retry_after` set). Without the header the wait doubles from
    `backoff` (with jitter), capped at `max_retry_wait`. At most `max_retries` retries.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
        backoff: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.backoff = backoff
        # The key is only in this header and in the redaction of error text; no repr shows either.
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        self._secret = api_key
        self._opener = urllib.request.build_opener(_NoRedirects())

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    def redact(self, text: str) -> str:
        return text.replace(self._secret, _REDACTED)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        retry_unavailable: bool = True,
    ) -> Any:
        """The parsed JSON answer (None for an empty one, e.g. 204)."""
        with self.open(method, path, query=query, body=body, retry_unavailable=retry_unavailable) as response:
            try:
                raw = response.read()
            except (OSError, http.client.HTTPException) as failure:
                raise WardenConnectionError(
                    f"{method} {self.base_url}{path}: the answer broke off: {failure}"
                ) from None
            status = response.status
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise WardenApiError(
                status=status,
                code="invalid_response",
                message=self.redact(
                    f"{method} {path} answered {status} with a body that is not JSON: "
                    f"{raw[:_MAX_FOREIGN_TEXT].decode('utf-8', 'replace')!r}"
                ),
            ) from None

    def open(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        retry_unavailable: bool = True,
    ) -> http.client.HTTPResponse:
        """The 2xx response, unread: the caller reads (or streams) it and closes it."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: _query_value(v) for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        retries = 0
        while True:
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                return self._opener.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as answer:
                with answer:
                    error = self._api_error(answer)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as failure:
                reason = getattr(failure, "reason", None) or failure
                raise WardenConnectionError(
                    self.redact(f"{method} {self.base_url}{path}: Warden could not be reached: {reason}")
                ) from None
            wait = self._retry_wait(error, retries, retry_unavailable)
            if wait is None:
                raise error
            retries += 1
            logger.warning(
                "%s %s answered %s %s; retry %d of %d in %.2f s",
                method,
                path,
                error.status,
                error.code,
                retries,
                self.max_retries,
                wait,
            )
            time.sleep(wait)

    def _retry_wait(self, error: WardenApiError, retries: int, retry_unavailable: bool) -> float | None:
        if retries >= self.max_retries:
            return None
        if error.status != 429 and not (error.status == 503 and retry_unavailable):
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_wait else None
        return min(self.max_retry_wait, self.backoff * 2**retries) * random.uniform(0.5, 1.0)

    def _api_error(self, answer: urllib.error.HTTPError) -> WardenApiError:
        raw = answer.read(_MAX_ERROR_BODY)
        request_id = answer.headers.get("x-request-id")
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        envelope = _error_envelope(raw)
        code, message = envelope.get("code"), envelope.get("message")
        if isinstance(code, str) and isinstance(message, str):
            field = envelope.get("field")
            envelope_request_id = envelope.get("request_id")
            return WardenApiError(
                status=answer.code,
                code=self.redact(code),
                message=self.redact(message),
                field=self.redact(field) if isinstance(field, str) else None,
                request_id=envelope_request_id if isinstance(envelope_request_id, str) else request_id,
                retry_after=retry_after,
            )
        # Not Warden's envelope: something between the client and Warden answered.
        text = raw.decode("utf-8", "replace").strip()[:_MAX_FOREIGN_TEXT]
        reason = f" {answer.reason}" if answer.reason else ""
        return WardenApiError(
            status=answer.code,
            code=f"http_{answer.code}",
            message=self.redact(f"HTTP {answer.code}{reason}" + (f": {text}" if text else "")),
            request_id=request_id,
            retry_after=retry_after,
        )


def _error_envelope(raw: bytes) -> dict[str, Any]:
    """The `error` object of Warden's error body, or {} when the body is something else."""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return {}
    envelope: Any = cast(dict[str, Any], body).get("error") if isinstance(body, dict) else None
    return cast(dict[str, Any], envelope) if isinstance(envelope, dict) else {}


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def iter_lines(response: IO[bytes], what: str) -> Generator[str, None, None]:
    """The lines of a streamed body as they arrive (without line endings), then closes it."""
    with response:
        while True:
            try:
                raw = response.readline()
            except (OSError, http.client.HTTPException) as failure:
                raise WardenConnectionError(f"{what}: the stream broke off: {failure}") from None
            if not raw:
                return
            line = raw.decode("utf-8").rstrip("\r\n")
            if line:
                yield line
