"""audit.list_events / events (pages) and audit.export (streamed lines)."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from warden_sdk import AuditEvent, ConnectedAccount, ExportStream, WardenApiError, WardenClient

from .conftest import Settings


def run_search(client: WardenClient, identifier: str, code: str = "async () => 1", run: str | None = None) -> str:
    return client.tools.execute_tool(
        tool_name="cloudflare_search", identifier=identifier, params={"code": code}, agent_run_id=run
    ).execution_id


def test_lists_events_page_by_page_with_filters(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-audited"
    connect(identifier)
    executions = [run_search(client, identifier, run=f"{unique}-run") for _ in range(3)]
    failed = client.tools.execute_tool(
        tool_name="cloudflare_execute",
        identifier=identifier,
        params={"code": "async () => { throw new Error('nope') }"},
    )

    first = client.audit.list_events(identifier=identifier, kind="tool_call", page_size=2)
    assert len(first) == 2 and first.next_page_token
    assert all(isinstance(e, AuditEvent) for e in first)
    rest = client.audit.list_events(
        identifier=identifier, kind="tool_call", page_size=2, page_token=first.next_page_token
    )
    assert [e.execution_id for e in [*first, *rest]] == [*executions, failed.execution_id]

    walked = client.audit.events(identifier=identifier, kind="tool_call", page_size=1)
    events = list(walked)
    assert [e.execution_id for e in events] == [*executions, failed.execution_id]
    assert [len(page) for page in walked.pages()] == [1, 1, 1, 1]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    search = events[0]
    assert (search.kind, search.action, search.outcome, search.tool_name) == (
        "tool_call",
        "tool.search",
        "success",
        "cloudflare_search",
    )
    assert search.agent_run_id == f"{unique}-run" and search.caller.type == "api_key"
    assert search.code == "async () => 1" and len(search.code_sha256 or "") == 64

    errors = list(client.audit.events(identifier=identifier, outcome="error"))
    assert [(e.execution_id, e.error.code if e.error else None) for e in errors] == [
        (failed.execution_id, failed.error.code if failed.error else None)
    ]
    assert [e.execution_id for e in client.audit.events(execution_id=executions[1])] == [executions[1]]
    # Time bounds take datetimes (and ISO strings).
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert list(client.audit.events(identifier=identifier, from_=future)) == []
    assert len(client.audit.list_events(identifier=identifier, kind="tool_call", to=future.isoformat(), page_size=100)) == 4


def test_exports_streamed_lines_in_every_format(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str, settings: Settings
) -> None:
    identifier = f"{unique}-exported"
    connect(identifier)
    start = datetime.now(timezone.utc) - timedelta(seconds=5)
    execution = run_search(client, identifier)
    end = datetime.now(timezone.utc) + timedelta(minutes=1)

    with client.audit.export("ndjson", start, end) as stream:
        assert isinstance(stream, ExportStream)
        events = [json.loads(line) for line in stream]
    ours = [e for e in events if e["execution_id"] == execution]
    assert [(e["identifier"], e["tool_name"], e["outcome"]) for e in ours] == [
        (identifier, "cloudflare_search", "success")
    ]
    assert len({e["tenant_id"] for e in events}) == 1  # this tenant's trail only
    assert stream.closed

    ocsf = [json.loads(line) for line in client.audit.export("ocsf", start.isoformat(), end.isoformat())]
    assert len(ocsf) == len(events) and {e["class_uid"] for e in ocsf} == {6003}
    cef = list(client.audit.export("cef", start, end))
    assert len(cef) == len(events) and all(line.startswith("CEF:0|Warden|") for line in cef)
    assert any(execution in line or identifier in line for line in cef)

    # Stopping early releases the connection.
    stream = client.audit.export("ndjson", start, end)
    next(iter(stream))
    stream.close()
    assert stream.closed

    # A bad range is refused when export() is called, before any line is read.
    with pytest.raises(WardenApiError) as backwards:
        client.audit.export("ndjson", end, start)
    assert (backwards.value.status, backwards.value.field) == (400, "to")
    with pytest.raises(WardenApiError) as too_long:
        client.audit.export("ndjson", end - timedelta(days=500), end)
    assert too_long.value.field == "to"
    stranger = WardenClient(settings.url, settings.other_api_key)
    # Another tenant's export holds its own records only (its lifecycle events), never ours.
    theirs = [json.loads(line) for line in stranger.audit.export("ndjson", start, end)]
    assert all(e["tenant_id"] != events[0]["tenant_id"] for e in theirs)
    assert all(e["execution_id"] != execution and e["identifier"] != identifier for e in theirs)


def test_an_export_is_never_held_whole_in_memory(
    client: WardenClient, connect: Callable[[str], ConnectedAccount], unique: str
) -> None:
    identifier = f"{unique}-large"
    connect(identifier)
    start = datetime.now(timezone.utc) - timedelta(seconds=5)
    # The trail keeps submitted code: 20 searches of ~90 kB each make an export of ~2 MB.
    padding = "x" * 90_000
    for i in range(20):
        run_search(client, identifier, code=f"async () => {i} // {padding}")
    end = datetime.now(timezone.utc) + timedelta(minutes=1)

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        total = lines = 0
        for line in client.audit.export("ndjson", start, end):
            total += len(line)
            lines += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines >= 20 and total > 1_800_000
    # About one line at a time (a line is ~90 kB), not the body.
    assert peak < total / 4, f"peak {peak} bytes while streaming {total}"
