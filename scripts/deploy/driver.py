"""Drive a running Airflow deployment through its api-server: waits with one overall deadline each.

Every wait polls until what it waits for happened or its :class:`~scripts.deploy.client.Deadline`
passed. A poll that gets no answer (timeout, refused connection) is retried: a busy machine answers
late, not wrongly. Progress is said as it changes (``[ 12.0s] waiting for 3 runs to finish: a
success, b running, c queued``); when the deadline passes, :class:`WaitTimeout` names what did not
happen. An error status from the api-server is not retried (:class:`ApiError`).
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from scripts.deploy.client import Api, ApiError, Deadline, TransientError, WaitTimeout

T = TypeVar("T")
Say = Callable[[str], None]

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
"""The parts of ``/api/v2/monitor/health`` that must say ``healthy``."""
POLL_INTERVAL = 1.0


@dataclass(frozen=True)
class Pending:
    """Not there yet: what is awaited (``3 runs to finish``) and where things stand."""

    waiting_for: str
    detail: str = ""

    def __str__(self) -> str:
        return f"waiting for {self.waiting_for}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Done(Generic[T]):
    """There: the wait's result, and a last progress line (printed when not empty)."""

    value: T
    detail: str = ""


@dataclass(frozen=True)
class ParsedDags:
    """Where the expected DAGs stand: parsed, failed to import (``dag -> file``), neither."""

    parsed: set[str]
    failed: dict[str, str]
    missing: list[str]
    import_errors: list[dict[str, Any]]


def _quiet(_: str) -> None:
    pass


def _alive() -> None:
    pass


class Driver:
    """Waits on a deployment's api-server. ``say`` gets the progress lines; ``check_alive`` runs
    before every poll and raises when a component the caller started has exited."""

    def __init__(
        self,
        api: Api,
        *,
        say: Say = _quiet,
        check_alive: Callable[[], None] = _alive,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.api = api
        self.say = say
        self.check_alive = check_alive
        self.interval = interval

    # -- the loop every wait goes through

    def wait(
        self,
        check: Callable[[], Pending | Done[T]],
        *,
        deadline: Deadline,
        what: str,
        interval: float | None = None,
    ) -> T:
        """Call ``check`` until it is :class:`Done`; retries a check that got no answer
        (``what`` says what it waits for meanwhile). Raises :class:`WaitTimeout` at ``deadline``."""
        last_line = ""
        status = Pending(what)
        no_answer = ""
        while True:
            self.check_alive()
            try:
                result = check()
            except TransientError as error:
                no_answer = str(error)
                line = f"{status}; the api-server did not answer ({error}), retrying"
            else:
                no_answer = ""
                if isinstance(result, Done):
                    if result.detail and result.detail != last_line:
                        self._progress(deadline, result.detail)
                    return result.value
                status, line = result, str(result)
            if line != last_line:
                self._progress(deadline, line)
                last_line = line
            if deadline.passed():
                raise WaitTimeout(
                    f"gave up after {deadline.seconds:g} s {status}"
                    + (f"; the api-server did not answer ({no_answer})" if no_answer else "")
                )
            time.sleep(max(0.0, min(self.interval if interval is None else interval, deadline.remaining())))

    def _progress(self, deadline: Deadline, line: str) -> None:
        self.say(f"  [{deadline.elapsed():5.1f}s] {line}")

    def request(self, method: str, path: str, body: Any = None, *, deadline: Deadline, what: str) -> Any:
        """One request, retried until ``deadline`` while it gets no answer (``what``: its purpose)."""
        return self.wait(lambda: Done(self.api.call(method, path, body)), deadline=deadline, what=what)

    # -- authentication

    def login(self, username: str, password: str, *, deadline: Deadline) -> None:
        """A token for ``username`` (SimpleAuthManager's ``POST /auth/token``)."""
        answer = self.request(
            "POST",
            "/auth/token",
            {"username": username, "password": password},
            deadline=deadline,
            what=f"a token for {username}",
        )
        self.api.token = str(answer["access_token"])

    def login_all_admins(self, *, deadline: Deadline) -> None:
        """A token without credentials (``simple_auth_manager_all_admins``)."""
        answer = self.request("GET", "/auth/token", deadline=deadline, what="a token")
        self.api.token = str(answer["access_token"])

    # -- start-up

    def wait_healthy(
        self, *, deadline: Deadline, components: Sequence[str] = HEALTH_COMPONENTS
    ) -> dict[str, Any]:
        """Until the api-server answers and each of ``components`` reports healthy; the health."""
        what = f"the api-server and {', '.join(components)} to be healthy"

        def check() -> Pending | Done[dict[str, Any]]:
            health: dict[str, Any] = self.api.call("GET", "/api/v2/monitor/health") or {}
            status = {name: (health.get(name) or {}).get("status") or "unknown" for name in components}
            line = ", ".join(f"{name} {value}" for name, value in status.items())
            if all(value == "healthy" for value in status.values()):
                return Done(health, line)
            return Pending(what, line)

        return self.wait(check, deadline=deadline, what=what)

    def dags_and_import_errors(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The DAGs the api-server lists (not stale) and the import errors (one request each)."""
        dags = (self.api.call("GET", "/api/v2/dags?limit=1000") or {}).get("dags", [])
        errors = (self.api.call("GET", "/api/v2/importErrors?limit=1000") or {}).get("import_errors", [])
        return list(dags), list(errors)

    def wait_for_dags(
        self,
        dag_files: Mapping[str, str],
        *,
        deadline: Deadline,
        since: datetime | None = None,
        partial: bool = False,
    ) -> ParsedDags:
        """Until every DAG of ``dag_files`` (``dag_id -> file`` in the DAG folder, ``""`` if not
        known) is parsed, or its file failed to import, ``since`` a moment (``None``: ever).

        DAGs serialized by an earlier dag-processor are already in the database; ``since`` makes
        the wait see only the current one's work. The import errors of the failed DAGs are said.
        At the deadline: ``partial`` returns what there is, else :class:`WaitTimeout` names the
        missing DAGs and the files with import errors.
        """
        what = f"{len(dag_files)} DAGs to be parsed"
        latest: list[ParsedDags] = []

        def check() -> Pending | Done[ParsedDags]:
            dags, errors = self.dags_and_import_errors()
            parsed, failed = parse_progress(dag_files, dags, errors, since=since)
            recent = [e for e in errors if since is None or _after(e.get("timestamp"), since)]
            missing = sorted(set(dag_files) - parsed - set(failed))
            latest[:] = [ParsedDags(parsed, failed, missing, recent)]
            line = f"{len(parsed)}/{len(dag_files)} parsed" + (
                f", {len(failed)} failed to import" if failed else ""
            )
            if not missing:
                return Done(latest[0], line)
            return Pending(
                f"{len(missing)} of {len(dag_files)} DAGs to be parsed",
                f"{line}; not yet: {', '.join(missing)}{_import_error_note(recent)}",
            )

        try:
            result = self.wait(check, deadline=deadline, what=what)
        except WaitTimeout:
            if not (partial and latest):
                raise
            result = latest[0]
        for error in result.import_errors:
            if any(str(error.get("filename", "")).endswith(f) for f in result.failed.values()):
                self.say(f"  import error in {error.get('filename')}:")
                for text in str(error.get("stack_trace", "")).strip().splitlines()[-8:]:
                    self.say(f"    {text}")
        return result

    # -- DAGs and runs

    def unpause(self, dag_id: str, *, deadline: Deadline) -> None:
        self.request(
            "PATCH",
            f"/api/v2/dags/{dag_id}?update_mask=is_paused",
            {"is_paused": False},
            deadline=deadline,
            what=f"{dag_id} to be unpaused",
        )

    def is_asset_scheduled(self, dag_id: str, *, deadline: Deadline) -> bool:
        """Is ``dag_id`` scheduled on Assets (it runs when they are updated, not when triggered)?"""
        details = self.request(
            "GET", f"/api/v2/dags/{dag_id}/details", deadline=deadline, what=f"the details of {dag_id}"
        )
        return bool((details or {}).get("asset_expression"))

    def trigger(
        self,
        dag_id: str,
        *,
        deadline: Deadline,
        run_id: str | None = None,
        conf: Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> str:
        """A manual run of ``dag_id``; its run id (``run_id``, or one named as Airflow names them).

        The run id is chosen here, so a request retried after a timeout cannot create a second
        run: the api-server refuses the duplicate (HTTP 409), which means the first one arrived.
        """
        run_id = run_id or f"manual__{datetime.now(timezone.utc).isoformat()}_{secrets.token_hex(4)}"
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None}
        if conf is not None:
            body["conf"] = dict(conf)
        if note is not None:
            body["note"] = note
        attempts = 0

        def create() -> Done[str]:
            nonlocal attempts
            attempts += 1
            try:
                self.api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
            except TransientError:
                raise
            except ApiError as error:
                if not (error.status == 409 and attempts > 1):
                    raise
            return Done(run_id)

        return self.wait(create, deadline=deadline, what=f"a run of {dag_id} to be created")

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str((self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}") or {}).get("state"))

    def wait_for_runs(self, runs: Mapping[str, str], *, deadline: Deadline) -> dict[str, str]:
        """Until every run (``dag_id -> run_id``) has finished; ``dag_id -> state``."""
        what = f"the runs of {', '.join(runs)} to finish"
        states: dict[str, str] = {}

        def check() -> Pending | Done[dict[str, str]]:
            for dag_id, run_id in runs.items():
                if states.get(dag_id) not in TERMINAL_RUN_STATES:
                    states[dag_id] = self.run_state(dag_id, run_id)
            finished = sum(state in TERMINAL_RUN_STATES for state in states.values())
            detail = ", ".join(f"{d} {s}" for d, s in states.items())
            if finished == len(runs):
                return Done(dict(states), f"{finished}/{len(runs)} finished: {detail}")
            return Pending(f"{len(runs) - finished} of {len(runs)} runs to finish", detail)

        return self.wait(check, deadline=deadline, what=what, interval=2 * self.interval)

    def asset_triggered_runs(
        self, dag_ids: Sequence[str], *, since: datetime | None = None, deadline: Deadline
    ) -> dict[str, str]:
        """Until each of ``dag_ids`` (scheduled on Assets) has a run its Assets triggered (at or
        after ``since``: not one an earlier demo left in the same database); its first such run
        (``dag_id -> run_id``)."""
        what = f"{len(dag_ids)} Asset-scheduled DAGs to be triggered by their data"
        runs: dict[str, str] = {}
        query = "run_type=asset_triggered&order_by=id&limit=1"
        if since is not None:
            query += "&run_after_gte=" + urllib.parse.quote(since.isoformat())

        def check() -> Pending | Done[dict[str, str]]:
            for dag_id in dag_ids:
                if dag_id not in runs:
                    listed = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")
                    if (listed or {}).get("dag_runs"):
                        runs[dag_id] = str(listed["dag_runs"][0]["dag_run_id"])
                        self.say(f"  {dag_id:<28} run {runs[dag_id]}")
            missing = [d for d in dag_ids if d not in runs]
            if not missing:
                return Done(dict(runs))
            return Pending(what, f"{len(runs)}/{len(dag_ids)} triggered; not yet: {', '.join(missing)}")

        return self.wait(check, deadline=deadline, what=what, interval=2 * self.interval)

    def task_instances(self, dag_id: str, run_id: str, *, deadline: Deadline) -> list[dict[str, Any]]:
        listed = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000",
            deadline=deadline,
            what=f"the task instances of {dag_id} {run_id}",
        )
        return list((listed or {}).get("task_instances", []))


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (``2026-01-01T00:00:00.123Z``) as an aware datetime; ``None`` if absent."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _after(value: Any, since: datetime) -> bool:
    when = parse_time(value)
    return when is not None and when >= since


def _import_error_note(errors: Sequence[Mapping[str, Any]]) -> str:
    files = sorted({str(e.get("filename") or "?") for e in errors})
    return f"; import errors in {', '.join(files)}" if files else ""


def parse_progress(
    dag_files: Mapping[str, str],
    dags: Sequence[Mapping[str, Any]],
    import_errors: Sequence[Mapping[str, Any]],
    *,
    since: datetime | None,
) -> tuple[set[str], dict[str, str]]:
    """Which expected DAGs were parsed ``since`` a moment (``None``: ever), and which failed to
    import (``dag -> file``; only for DAGs whose file is known)."""
    parsed = set()
    for dag in dags:
        if dag.get("dag_id") in dag_files and not dag.get("is_stale"):
            last_parsed = parse_time(dag.get("last_parsed_time"))
            if since is None or (last_parsed is not None and last_parsed >= since):
                parsed.add(str(dag["dag_id"]))
    failed = {}
    for error in import_errors:
        filename = str(error.get("filename") or "")
        if not filename or (since is not None and not _after(error.get("timestamp"), since)):
            continue
        for dag_id, file in dag_files.items():
            if dag_id not in parsed and file and filename.endswith(file):
                failed[dag_id] = file
    return parsed, failed
