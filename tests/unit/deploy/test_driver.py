"""The deployment driver (scripts/deploy/) against a real local HTTP server that stalls.

The server answers like the api-server's REST API, from a script of replies per request: a reply
may stall longer than the client's timeout, as a busy api-server does. The driver must retry those
(and refused connections) until its deadline, say what it waits for, and name what did not happen.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from scripts.deploy.client import Api, ApiError, Deadline, WaitTimeout
from scripts.deploy.driver import Driver, parse_progress

CLIENT_TIMEOUT = 0.3
STALL = 1.5
"""Longer than the client's timeout: the client gives up on the request."""


@dataclass(frozen=True)
class Reply:
    body: Any = None
    status: int = 200
    stall: float = 0.0


class FakeApiServer:
    """Replies queued per ``(method, path)``; the last one repeats. Records every request."""

    def __init__(self, port: int = 0) -> None:
        self.replies: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[tuple[str, str, Any, str | None]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                reply = owner.next_reply(self.command, self.path, body, self.headers.get("Authorization"))
                time.sleep(reply.stall)
                payload = json.dumps(reply.body).encode() if reply.body is not None else b""
                with contextlib.suppress(OSError):  # the client may have given up
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, method: str, path: str, *replies: Reply) -> None:
        self.replies[(method, path)] = list(replies)

    def next_reply(self, method: str, path: str, body: Any, auth: str | None) -> Reply:
        with self.lock:
            self.requests.append((method, path, body, auth))
            queue = self.replies.get((method, path))
            if not queue:
                return Reply({"detail": "not found"}, status=404)
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _, _ in self.requests if (m, p) == (method, path))

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as running:
        yield running


def driver_for(url: str, lines: list[str], **kwargs: Any) -> Driver:
    return Driver(Api(url, timeout=CLIENT_TIMEOUT), say=lines.append, interval=0.05, **kwargs)


RUN = "/api/v2/dags/a/dagRuns/r1"


def test_a_status_poll_that_times_out_is_retried_until_the_run_finishes(server: FakeApiServer) -> None:
    """A busy api-server answers a status poll after the client's timeout: not an error."""
    server.answer(
        "GET",
        RUN,
        Reply({"state": "running"}, stall=STALL),
        Reply({"state": "running"}, stall=STALL),
        Reply({"state": "running"}),
        Reply({"state": "success"}),
    )
    lines: list[str] = []
    states = driver_for(server.url, lines).wait_for_runs({"a": "r1"}, deadline=Deadline(30))
    assert states == {"a": "success"}
    assert server.count("GET", RUN) >= 4
    text = "\n".join(lines)
    assert f"the api-server did not answer (GET {RUN}: timed out after 0.3 s), retrying" in text
    assert "waiting for 1 of 1 runs to finish: a running" in text
    assert lines[-1].endswith("1/1 finished: a success")


def test_a_refused_connection_is_retried_until_the_api_server_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    healthy = {name: {"status": "healthy"} for name in ("metadatabase", "scheduler", "dag_processor")}
    started: list[FakeApiServer] = []

    def start_later() -> None:
        time.sleep(1.0)
        later = FakeApiServer(port)
        later.answer("GET", "/api/v2/monitor/health", Reply(healthy | {"triggerer": {"status": "healthy"}}))
        started.append(later.__enter__())

    thread = threading.Thread(target=start_later)
    thread.start()
    lines: list[str] = []
    try:
        health = driver_for(f"http://127.0.0.1:{port}", lines).wait_healthy(deadline=Deadline(30))
    finally:
        thread.join()
        for running in started:
            running.__exit__()
    assert health["triggerer"] == {"status": "healthy"}
    assert "the api-server did not answer" in lines[0] and "retrying" in lines[0]
    assert lines[-1].endswith(
        "metadatabase healthy, scheduler healthy, dag_processor healthy, triggerer healthy"
    )


def test_at_the_deadline_the_driver_names_what_did_not_happen(server: FakeApiServer) -> None:
    server.answer("GET", RUN, Reply({"state": "success"}))
    server.answer("GET", "/api/v2/dags/b/dagRuns/r2", Reply({"state": "running"}))
    lines: list[str] = []
    with pytest.raises(WaitTimeout) as exc:
        driver_for(server.url, lines).wait_for_runs({"a": "r1", "b": "r2"}, deadline=Deadline(1))
    assert str(exc.value) == "gave up after 1 s waiting for 1 of 2 runs to finish: a success, b running"
    assert isinstance(exc.value, TimeoutError)


def test_a_server_that_never_answers_in_time_fails_at_the_deadline(server: FakeApiServer) -> None:
    server.answer("GET", RUN, Reply({"state": "success"}, stall=STALL))
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as exc:
        driver_for(server.url, []).wait_for_runs({"a": "r1"}, deadline=Deadline(1.5))
    assert time.monotonic() - started < 1.5 + 2 * CLIENT_TIMEOUT + 1
    assert str(exc.value).startswith("gave up after 1.5 s waiting for the runs of a to finish")
    assert f"the api-server did not answer (GET {RUN}: timed out" in str(exc.value)
    assert server.count("GET", RUN) >= 3, "retried until the deadline"


def test_an_error_status_is_not_retried(server: FakeApiServer) -> None:
    with pytest.raises(ApiError) as exc:
        driver_for(server.url, []).wait_for_runs({"a": "r1"}, deadline=Deadline(30))
    assert exc.value.status == 404
    assert server.count("GET", RUN) == 1


def test_a_component_that_exits_ends_the_wait(server: FakeApiServer) -> None:
    server.answer("GET", RUN, Reply({"state": "running"}))
    polls: list[int] = []

    def check_alive() -> None:
        polls.append(1)
        if len(polls) == 3:
            raise RuntimeError("scheduler exited with 1")

    with pytest.raises(RuntimeError, match="scheduler exited"):
        driver_for(server.url, [], check_alive=check_alive).wait_for_runs({"a": "r1"}, deadline=Deadline(30))


def test_a_trigger_retried_after_a_timeout_creates_one_run(server: FakeApiServer) -> None:
    """The first POST arrives but its answer comes too late; the retry is refused as a duplicate."""
    path = "/api/v2/dags/a/dagRuns"
    server.answer(
        "POST", path, Reply({"dag_run_id": "x"}, status=200, stall=STALL), Reply({"detail": "exists"}, 409)
    )
    run_id = driver_for(server.url, []).trigger("a", run_id="x", note="hi", deadline=Deadline(30))
    assert run_id == "x"
    bodies = [body for method, p, body, _ in server.requests if (method, p) == ("POST", path)]
    assert bodies == [{"dag_run_id": "x", "logical_date": None, "note": "hi"}] * 2


def test_a_duplicate_run_id_on_the_first_attempt_is_an_error(server: FakeApiServer) -> None:
    server.answer("POST", "/api/v2/dags/a/dagRuns", Reply({"detail": "exists"}, 409))
    with pytest.raises(ApiError) as exc:
        driver_for(server.url, []).trigger("a", run_id="x", deadline=Deadline(30))
    assert exc.value.status == 409


def test_a_generated_run_id_is_named_as_airflow_names_manual_runs(server: FakeApiServer) -> None:
    server.answer("POST", "/api/v2/dags/a/dagRuns", Reply({"dag_run_id": "ignored"}))
    assert driver_for(server.url, []).trigger("a", deadline=Deadline(30)).startswith("manual__20")


def test_login_then_every_request_carries_the_token(server: FakeApiServer) -> None:
    server.answer(
        "POST",
        "/auth/token",
        Reply({"access_token": "tok"}, status=201, stall=STALL),
        Reply({"access_token": "tok"}, status=201),
    )
    server.answer("GET", RUN, Reply({"state": "success"}))
    driver = driver_for(server.url, [])
    driver.login("admin", "pw", deadline=Deadline(30))
    driver.wait_for_runs({"a": "r1"}, deadline=Deadline(30))
    assert server.requests[0][2] == {"username": "admin", "password": "pw"}
    assert server.requests[-1][3] == "Bearer tok"


def test_waiting_for_dags_reports_import_errors(server: FakeApiServer) -> None:
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    after = (since + timedelta(seconds=3)).isoformat()
    server.answer(
        "GET",
        "/api/v2/dags?limit=1000",
        Reply({"dags": []}, stall=STALL),
        Reply({"dags": []}),
        Reply({"dags": [{"dag_id": "a", "last_parsed_time": after, "is_stale": False}]}),
    )
    server.answer(
        "GET",
        "/api/v2/importErrors?limit=1000",
        Reply({"import_errors": []}),
        Reply(
            {
                "import_errors": [
                    {"filename": "/dags/b.py", "timestamp": after, "stack_trace": "Traceback\nNameError: x"}
                ]
            }
        ),
    )
    lines: list[str] = []
    result = driver_for(server.url, lines).wait_for_dags(
        {"a": "a.py", "b": "b.py"}, deadline=Deadline(30), since=since
    )
    assert (result.parsed, result.failed, result.missing) == ({"a"}, {"b": "b.py"}, [])
    text = "\n".join(lines)
    assert "waiting for 2 of 2 DAGs to be parsed: 0/2 parsed; not yet: a, b" in text
    assert "1/2 parsed, 1 failed to import" in text
    assert "  import error in /dags/b.py:" in lines and "    NameError: x" in lines


def test_dags_missing_at_the_deadline(server: FakeApiServer) -> None:
    server.answer("GET", "/api/v2/dags?limit=1000", Reply({"dags": [{"dag_id": "a", "is_stale": False}]}))
    server.answer("GET", "/api/v2/importErrors?limit=1000", Reply({"import_errors": [{"filename": "c.py"}]}))
    driver = driver_for(server.url, [])
    with pytest.raises(WaitTimeout) as exc:
        driver.wait_for_dags({"a": "", "b": ""}, deadline=Deadline(0.5))
    assert str(exc.value) == (
        "gave up after 0.5 s waiting for 1 of 2 DAGs to be parsed: 1/2 parsed; not yet: b; "
        "import errors in c.py"
    )
    partial = driver.wait_for_dags({"a": "", "b": ""}, deadline=Deadline(0.5), partial=True)
    assert (partial.parsed, partial.missing) == ({"a"}, ["b"])


def test_asset_triggered_runs_are_found_once_they_exist(server: FakeApiServer) -> None:
    path = "/api/v2/dags/{}/dagRuns?run_type=asset_triggered&order_by=id&limit=1"
    server.answer(
        "GET", path.format("a"), Reply({"dag_runs": []}), Reply({"dag_runs": [{"dag_run_id": "x"}]})
    )
    server.answer(
        "GET",
        path.format("b"),
        Reply({"dag_runs": [{"dag_run_id": "y"}]}, stall=STALL),
        Reply({"dag_runs": [{"dag_run_id": "y"}]}),
    )
    runs = driver_for(server.url, []).asset_triggered_runs(["a", "b"], deadline=Deadline(30))
    assert runs == {"a": "x", "b": "y"}


def test_asset_triggered_runs_since_a_moment_ignore_earlier_ones(server: FakeApiServer) -> None:
    """An earlier demo's runs stay in the database: only those at or after ``since`` count."""
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    path = (
        "/api/v2/dags/a/dagRuns?run_type=asset_triggered&order_by=id&limit=1"
        "&run_after_gte=2026-01-01T12%3A00%3A00%2B00%3A00"
    )
    server.answer("GET", path, Reply({"dag_runs": [{"dag_run_id": "new"}]}))
    runs = driver_for(server.url, []).asset_triggered_runs(["a"], since=since, deadline=Deadline(30))
    assert runs == {"a": "new"}


def test_parse_progress_ignores_what_an_earlier_demo_parsed() -> None:
    since = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    before, after = (since - timedelta(minutes=5)).isoformat(), (since + timedelta(seconds=3)).isoformat()
    files = {"a": "a.py", "b": "b.py", "c": "sub/c.py", "d": "d.py"}
    dags = [
        {"dag_id": "a", "last_parsed_time": after.replace("+00:00", "Z"), "is_stale": False},
        {"dag_id": "b", "last_parsed_time": before, "is_stale": False},
        {"dag_id": "d", "last_parsed_time": after, "is_stale": True},
        {"dag_id": "other", "last_parsed_time": after, "is_stale": False},
    ]
    errors = [
        {"filename": "/dags/sub/c.py", "timestamp": after},
        {"filename": "d.py", "timestamp": before},
    ]
    parsed, failed = parse_progress(files, dags, errors, since=since)
    assert parsed == {"a"}
    assert failed == {"c": "sub/c.py"}
