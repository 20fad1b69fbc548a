"""What a task reads and writes while its body runs, seen through Airflow's hook lineage.

Most tasks declare no inlets: they read through hooks. Airflow's hooks report what they touch to
the hook lineage collector (``airflow.sdk.lineage.get_hook_lineage_collector()``, a per-process
singleton): ``DbApiHook`` reports each statement it ran as an extra ``sql_job`` holding the SQL
text, after executing it and before its rows are fetched; ``ObjectStoragePath`` reports a path as
an input when it is opened for reading (before the read) and as an output when written; provider
hooks (``S3Hook``, ``GCSHook``, ...) report input and output assets.

Once a try's pre-execute decision let it run, :func:`observe_try` makes the collector's
``add_input_asset``, ``add_output_asset`` and ``add_extra`` also report to an :class:`Observer`
for the rest of the try. Every input is decided at once by the decision service, within the try's
recorded decision (``POST /observations``; in process under ``dag.test()``): a deny in an enforce
zone raises :class:`ObservedReadDenied` inside the hook call, so the rows never reach the task's
code; inputs decided before in this try cost no round trip. SQL is analyzed in the hook's
connection dialect (:mod:`airflow_policyzones.policy.sql`); SQL the analysis refuses is an
uncheckable read. Outputs are kept for the outputs report after the body.

:func:`reconcile` runs after the body, before the try can succeed: a denied read (even one whose
exception the task's code caught) fails the try without retry.

What this cannot see: a client library used directly (``psycopg2``, ``boto3``) without an
Airflow hook, and DAG code that undoes the wrapping in its own process. ``policyzones audit`` and
the Coverage page list tasks whose tries had no known reads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_policyzones.enforcement.errors import (
    CredentialRefused,
    DecisionUnavailable,
    ObservationUnavailable,
    ObservedReadDenied,
    ZoneViolation,
)
from airflow_policyzones.policy.engine import InputRef
from airflow_policyzones.wire import (
    MAX_INPUTS,
    DecisionRequest,
    DecisionResponse,
    ObservationRequest,
    ObservedInput,
    OutputSpec,
)

if TYPE_CHECKING:
    from airflow_policyzones.policy.sql import SqlTables

log = logging.getLogger(__name__)

SQL_JOB = "sql_job"
"""The hook lineage extra key under which ``DbApiHook`` reports each statement (common.sql)."""

Key = tuple[str, str]
"""(namespace, name) of an input or output."""

_SESSIONS = 64
"""Database sessions tracked per try (past that, statements stand alone: reads are not lost)."""

_TOO_MANY = (
    f"the task read more than {MAX_INPUTS} distinct inputs in one try; the rest cannot be checked one "
    "by one (declare the data the task reads as inlets, e.g. a prefix per dataset)"
)


@dataclass(slots=True, kw_only=True)
class Observer:
    """The reads and writes of one running try; decides each new read before it proceeds."""

    request: DecisionRequest
    decide: Callable[[ObservationRequest], DecisionResponse]
    recorded: Callable[[], DecisionResponse] | None = None
    """The try's recorded decision, all its findings (asked only to explain a refused credential)."""
    denied: dict[Key | str, str] = field(default_factory=dict)
    """Denied reads (an input, or the description of an uncheckable read) and their message."""
    allowed: set[Key | str] = field(default_factory=set)
    outputs: dict[Key, None] = field(default_factory=dict)
    unavailable: str | None = None
    observed: int = 0
    """How many read reports arrived (repeats included)."""
    _sql: dict[tuple[str, str | None], SqlTables] = field(default_factory=dict)
    _sessions: dict[int, tuple[object, SqlTables]] = field(default_factory=dict)
    _sent: set[Key] = field(default_factory=set)
    """Outputs sent with an observation (labeled at once if the try was refused)."""

    def __post_init__(self) -> None:
        # What the pre-execute decision covered is not decided again.
        for spec in (*self.request.inputs, *self.request.sql_reads):
            self.allowed.add((spec.namespace, spec.name))

    # --- what the collector reports ---------------------------------------------------------------

    def input_asset(self, uri: str | None, *, described: str) -> None:
        """A hook read an asset (``uri`` as Airflow normalized it; ``None``: it could not be named)."""
        if uri is None:
            self.check([], uncheckable=[f"a hook reported an input that names no asset ({described})"])
        else:
            self.check([("asset", InputRef.asset(uri).name)])

    def output_asset(self, uri: str | None) -> None:
        if uri is not None:
            self.check([], outputs=[("asset", InputRef.asset(uri).name)])

    def sql(self, hook: Any, sql: object) -> None:
        """A hook ran ``sql``: check what it read (its rows are not fetched yet).

        Statements run on the same database connection are one session (a temporary table made
        by one is not an external read in the next); the connection is known only for hooks that
        keep it (``hook.conn``, e.g. ``PostgresHook``), otherwise each statement stands alone.
        """
        from airflow_policyzones.policy.sql import SqlParseError, dialect_for_connection, tables_in_sql

        where = type(hook).__name__
        if isinstance(sql, bytes):
            try:
                sql = sql.decode()
            except UnicodeDecodeError:
                sql = None
        if not isinstance(sql, str):
            self.check([], uncheckable=[f"SQL run through {where} is not text ({type(sql).__name__})"])
            return
        conn_type, problem = _conn_type(hook)
        if problem is not None:
            self.check([], uncheckable=[f"SQL run through {where}: {problem}"])
            return
        dialect = dialect_for_connection(conn_type)
        connection = getattr(hook, "conn", None)
        session = id(connection) if connection is not None else None
        before = self._sessions[session][1] if session in self._sessions else None
        key = (sql, dialect)
        tables = self._sql.get(key) if before is None or not before.scope else None
        if tables is None:
            try:
                tables = tables_in_sql(sql, dialect=dialect, after=before)
            except SqlParseError as error:
                self.check([], uncheckable=[f"SQL run through {where} cannot be analyzed: {error}"])
                return
            if before is None and len(self._sql) < MAX_INPUTS:
                self._sql[key] = tables
        if session is not None and (session in self._sessions or len(self._sessions) < _SESSIONS):
            # the connection is kept: its id cannot be reused by another one meanwhile
            self._sessions[session] = (connection, tables)
        self.check(
            [(ref.namespace, ref.name) for ref in tables.inputs],
            outputs=[(ref.namespace, ref.name) for ref in tables.outputs],
        )

    # --- deciding -------------------------------------------------------------------------------

    def check(
        self, inputs: list[Key], *, uncheckable: list[str] | None = None, outputs: list[Key] | None = None
    ) -> None:
        """Decide what was not decided in this try; raise if a read may not proceed.

        ``outputs`` (what the same statement wrote) are kept for the outputs report. Every request
        carries the outputs not yet labeled: when a read refuses the try, the service labels them
        at once from what it read (the statements ran, and a refused try never reports outputs);
        after the refusal, each new output is sent at once.
        """
        problems = uncheckable or []
        if inputs or problems:
            self.observed += 1
        for output in outputs or ():
            if len(self.outputs) < MAX_INPUTS:
                self.outputs.setdefault(output, None)
        refused = next((self.denied[item] for item in (*inputs, *problems) if item in self.denied), None)
        new = [item for item in dict.fromkeys(inputs) if item not in self.allowed and item not in self.denied]
        problems = [item for item in problems if item not in self.allowed and item not in self.denied]
        unlabeled = [output for output in self.outputs if output not in self._sent]
        if not (new or problems or (self.denied and unlabeled)):
            if refused is not None:
                raise ObservedReadDenied(refused)
            return
        if new and len(self.allowed) + len(self.denied) + len(new) > MAX_INPUTS:
            if _TOO_MANY in self.denied:
                raise ObservedReadDenied(self.denied[_TOO_MANY])
            if _TOO_MANY in self.allowed:  # recorded once (dry run): memory stays bounded
                return
            problems.append(_TOO_MANY)
            new = []
        request = ObservationRequest(
            task=self.request.task,
            inputs=[ObservedInput(namespace=namespace, name=name) for namespace, name in new],
            uncheckable=problems,
            outputs=[OutputSpec(namespace=ns, name=name, source="observed") for ns, name in unlabeled],
        )
        try:
            response = self.decide(request)
        except DecisionUnavailable as error:
            if self.denied:  # the service refuses a refused try's reads (after labeling its writes)
                raise ObservedReadDenied(refused or next(iter(self.denied.values()))) from error
            self.unavailable = str(error)
            raise ObservationUnavailable(str(error)) from error
        if refused is not None or self.denied or not response.allowed:
            self._sent.update(unlabeled)  # labeled by the service: the try is refused
        if refused is not None:
            raise ObservedReadDenied(refused)
        named = {finding.input for finding in response.findings if finding.input is not None}
        message = _message(self.request, response)
        for item in new:
            if not response.allowed and item[1] in named:
                self.denied[item] = message
            else:
                self.allowed.add(item)
        for problem in problems:
            if response.allowed:
                self.allowed.add(problem)
            else:
                self.denied[problem] = message
        if not response.allowed:
            raise ObservedReadDenied(message)
        if response.outcome in ("dry_run", "exempted"):
            for finding in response.findings:
                log.warning(
                    "policyzones: %s read %s [%s]: %s; %s",
                    self.request.task.task_id,
                    finding.input or "(unnamed)",
                    ", ".join(finding.rules),
                    finding.reason,
                    "dry run: the read proceeds" if response.outcome == "dry_run" else "exempted",
                )

    def credential_refused(self, kind: str, name: str) -> str:
        """The api-server refused connection or variable ``name`` (``kind``) to this try: the
        message for the task log, with the reason and fix the service recorded for it. The try
        fails at :func:`reconcile` even if the task's code goes on."""
        key = f"{kind} {name}"
        if key not in self.denied:
            self.denied[key] = _credential_message(self, kind=kind, name=name)
        return self.denied[key]

    def output_specs(self) -> list[OutputSpec]:
        return [
            OutputSpec(namespace=namespace, name=name, source="observed") for namespace, name in self.outputs
        ]


def _message(request: DecisionRequest, response: DecisionResponse) -> str:
    from airflow_policyzones.enforcement.hook import finding_lines

    task = request.task
    lines = [
        f"policyzones: task {task.dag_id}.{task.task_id} (run {task.run_id}, try {task.try_number}) read "
        f"data through a hook that zone {response.zone!r} may not use; the hook call was stopped before "
        "its rows reached the task, and the task fails without retry.",
        *finding_lines(response, unnamed="a read", how=" (observed)"),
    ]
    lines.append(f"  policy {response.policy_version}, decision {response.decision_id}")
    return "\n".join(lines)


def _credential_message(observer: Observer, *, kind: str, name: str) -> str:
    from airflow_policyzones.enforcement.hook import finding_lines

    task = observer.request.task
    head = (
        f"policyzones: the api-server refused {kind} {name!r} to task {task.dag_id}.{task.task_id} "
        f"(run {task.run_id}, try {task.try_number}): the task got no credentials, and it fails "
        "without retry."
    )
    ref = f"{kind}:{name}"
    try:
        recorded = observer.recorded() if observer.recorded is not None else None
    except Exception as error:  # the refusal stands; only its explanation is missing
        log.warning("policyzones: the refusal of %s %r could not be explained: %s", kind, name, error)
        recorded = None
    findings = [finding for finding in recorded.findings if finding.input == ref] if recorded else []
    if recorded is None or not findings:
        return (
            f"{head}\n  the zone policy does not let this task's zone use it; the refusal is recorded "
            "on the try (Policy decision tab, `policyzones audit`)"
        )
    explained = recorded.model_copy(update={"findings": findings})
    lines = [head, *finding_lines(explained, unnamed=f"{kind} {name!r}")]
    lines.append(
        f"  zone {recorded.zone!r}, policy {recorded.policy_version}, decision {recorded.decision_id}"
    )
    return "\n".join(lines)


def _conn_type(hook: Any) -> tuple[str | None, str | None]:
    """The connection type of a SQL hook, from its connection and its class; and a problem when
    the two disagree (a hook class that claims another database would have the SQL read in the
    wrong dialect)."""
    declared = getattr(type(hook), "conn_type", None)
    declared = declared if isinstance(declared, str) and declared else None
    try:
        stored = str(hook.connection.conn_type or "") or None
    except Exception:  # no connection to ask: the class's type, else sqlglot's default dialect
        stored = None
    if stored is not None and declared is not None and _same_type(stored) != _same_type(declared):
        return None, (
            f"its class says connection type {declared!r} but its connection {stored!r}, so the SQL "
            "cannot be read in the right dialect (use the provider's hook for the connection)"
        )
    return stored or declared, None


def _same_type(conn_type: str) -> str:
    from airflow_policyzones.policy.sql import dialect_for_connection

    return dialect_for_connection(conn_type) or conn_type.strip().lower()


# --- the collector -------------------------------------------------------------------------------------

_current: Observer | None = None
"""The observer of the try running in this process (a task process runs one try)."""


def observe_try(observer: Observer) -> None:
    """Route what hooks report in this process to ``observer`` until :func:`reconcile`."""
    global _current
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector: Any = get_hook_lineage_collector()
    if not getattr(collector, "_policyzones_observed", False):
        collector.add_input_asset = _reporting_input(collector, collector.add_input_asset)
        collector.add_output_asset = _reporting_output(collector, collector.add_output_asset)
        collector.add_extra = _reporting_extra(collector.add_extra)
        collector._policyzones_observed = True
        _report_whole_file_io()
        _explain_refused_credentials()
    _current = observer


_PATH_IO: tuple[tuple[str, bool | None], ...] = (
    ("open", None),  # by mode: Airflow's own open() reports only .read() and .write() calls
    ("read_text", True),
    ("read_bytes", True),
    ("read_block", True),
    ("write_text", False),
    ("write_bytes", False),
)


def _report_whole_file_io() -> None:
    """Make ``ObjectStoragePath`` report to the collector whenever it opens or reads or writes a
    whole file: in Airflow 3.3 ``read_text``/``read_bytes``/``read_block``/``write_*`` reach the
    file system without ``open()``, and ``open()`` reports only ``.read()``/``.write()`` calls
    (not iteration or ``readline``). Once per process, before the body runs."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.lineage import get_hook_lineage_collector

    for name, reads in _PATH_IO:
        original = getattr(ObjectStoragePath, name, None)
        if original is None or getattr(original, "_policyzones_reports", False):
            continue

        def reporting(
            path: Any, *args: Any, _original: Any = original, _reads: bool | None = reads, **kwargs: Any
        ) -> Any:
            collector = get_hook_lineage_collector()
            if _reads is None:  # open(mode): "r" reads; "w", "a", "x" write; "+" does both
                mode = str(args[0] if args else kwargs.get("mode", "r"))
                if "r" in mode or "+" in mode:
                    collector.add_input_asset(context=path, uri=str(path))
                if any(flag in mode for flag in "wax+"):
                    collector.add_output_asset(context=path, uri=str(path))
            else:
                report = collector.add_input_asset if _reads else collector.add_output_asset
                report(context=path, uri=str(path))
            return _original(path, *args, **kwargs)

        reporting._policyzones_reports = True  # type: ignore[attr-defined]
        functools.update_wrapper(reporting, original)
        setattr(ObjectStoragePath, name, reporting)


def _asset_uri(collector: Any, kwargs: dict[str, Any]) -> str | None:
    try:
        asset = collector.create_asset(
            scheme=kwargs.get("scheme"),
            uri=kwargs.get("uri"),
            name=kwargs.get("name"),
            group=kwargs.get("group"),
            asset_kwargs=kwargs.get("asset_kwargs"),
            asset_extra=kwargs.get("asset_extra"),
        )
    except Exception:  # a malformed URI: the input cannot be named
        return None
    uri = getattr(asset, "uri", None)
    return uri if isinstance(uri, str) and uri else None


def _describe(kwargs: dict[str, Any]) -> str:
    shown = {key: kwargs[key] for key in ("scheme", "uri", "name", "asset_kwargs") if kwargs.get(key)}
    return ", ".join(f"{key}={value!r}" for key, value in shown.items())[:300] or "nothing"


_ASSET_ARGS = ("scheme", "uri", "name", "group", "asset_kwargs", "asset_extra")
"""The parameters of ``add_input_asset`` / ``add_output_asset`` after ``context``, in order."""


def _named(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**dict(zip(_ASSET_ARGS, args, strict=False)), **kwargs}


def _reporting_input(collector: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def add_input_asset(context: Any, *args: Any, **kwargs: Any) -> Any:
        observer = _current
        if observer is not None:
            named = _named(args, kwargs)
            with _failing_closed(observer):
                observer.input_asset(_asset_uri(collector, named), described=_describe(named))
        return original(context, *args, **kwargs)

    return add_input_asset


def _reporting_output(collector: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def add_output_asset(context: Any, *args: Any, **kwargs: Any) -> Any:
        observer = _current
        if observer is not None:
            with _failing_closed(observer):
                observer.output_asset(_asset_uri(collector, _named(args, kwargs)))
        return original(context, *args, **kwargs)

    return add_output_asset


def _reporting_extra(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def add_extra(context: Any, key: str, value: Any) -> Any:
        observer = _current
        if observer is not None and key == SQL_JOB and isinstance(value, dict):
            sql = value.get("sql")
            if not (isinstance(sql, str) and not sql.strip()):
                with _failing_closed(observer):
                    observer.sql(context, sql)
        return original(context, key, value)

    return add_extra


@contextlib.contextmanager
def _failing_closed(observer: Observer) -> Iterator[None]:
    """Any error while observing stops the hook call and fails the try (retryable): the lineage
    call around it swallows ``Exception``, which would let the read through unchecked."""
    try:
        yield
    except Exception as error:
        observer.unavailable = f"{type(error).__name__}: {error}"[:_MAX_ERROR]
        raise ObservationUnavailable(
            f"policyzones: a read through a hook could not be checked ({observer.unavailable}); "
            "the hook call was stopped and the try fails (it is retried if it has retries left)"
        ) from error


_MAX_ERROR = 600


_SECRETS_METHODS: tuple[tuple[str, str, str], ...] = (
    ("get_connection", "connection", "conn_id"),
    ("get_variable", "variable", "key"),
    ("aget_connection", "connection", "conn_id"),
    ("aget_variable", "variable", "key"),
)


def _explain_refused_credentials() -> None:
    """Make a connection or variable the api-server refuses (403 on the execution API) raise
    :class:`CredentialRefused` in the task: the zone's reason and fix in the task log instead of
    Airflow's bare "access denied", and no retry. Once per process, before the body runs."""
    import inspect

    from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

    def refused(kind: str, name: object, error: AirflowSecretsBackendAccessDenied) -> None:
        observer = _current
        if observer is None or isinstance(error, CredentialRefused):
            return
        raise CredentialRefused(observer.credential_refused(kind, str(name))) from error

    for method, kind, parameter in _SECRETS_METHODS:
        original = getattr(ExecutionAPISecretsBackend, method, None)
        if original is None or getattr(original, "_policyzones_reports", False):
            continue
        if inspect.iscoroutinefunction(original):

            async def explaining_async(
                backend: Any,
                *args: Any,
                _original: Any = original,
                _kind: str = kind,
                _p: str = parameter,
                **kwargs: Any,
            ) -> Any:
                try:
                    return await _original(backend, *args, **kwargs)
                except AirflowSecretsBackendAccessDenied as error:
                    refused(_kind, args[0] if args else kwargs.get(_p), error)
                    raise

            wrapper: Any = functools.wraps(original)(explaining_async)
        else:

            def explaining(
                backend: Any,
                *args: Any,
                _original: Any = original,
                _kind: str = kind,
                _p: str = parameter,
                **kwargs: Any,
            ) -> Any:
                try:
                    return _original(backend, *args, **kwargs)
                except AirflowSecretsBackendAccessDenied as error:
                    refused(_kind, args[0] if args else kwargs.get(_p), error)
                    raise

            wrapper = functools.wraps(original)(explaining)
        wrapper._policyzones_reports = True
        setattr(ExecutionAPISecretsBackend, method, wrapper)


# --- after the body ------------------------------------------------------------------------------------


def reconcile(observer: Observer) -> None:
    """Before the try may succeed: a denied read fails it (no retry), an unchecked one fails it
    closed (retryable), even when the task's code caught the exception raised in the hook."""
    global _current
    if _current is observer:
        _current = None
    if observer.denied:
        raise ZoneViolation.caught(next(iter(observer.denied.values())))
    if observer.unavailable is not None:
        raise DecisionUnavailable("a read through a hook could not be checked", detail=observer.unavailable)
