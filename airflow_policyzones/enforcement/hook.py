"""The pre-execute check: before a task body runs, ask for a decision and act on it.

The cluster policy installs :func:`make_hook` as every task's ``pre_execute`` hook, which the
task runner calls before the operator's own ``pre_execute`` and before ``execute``. The hook
describes the task-instance try (identity, claimed zone, declared inputs) as a
:class:`DecisionRequest` and gets a decision:

* on a real worker, where the metadata database is blocked, from the api-server's decision
  service, asked through the task's supervisor with the try's own execution token
  (:mod:`.client`): no policy loaded and no credential held by the task process;
* under ``dag.test()`` / ``airflow dags test``, where the ORM is open, in process through
  :func:`airflow_policyzones.db.service.decide_and_record`, the same code the api-server runs.

A deny raises :class:`ZoneViolation` (no retry, the body never runs); dry-run and exempted
decisions are logged as warnings and the task runs; no decision raises
:class:`DecisionUnavailable` (retryable, fail closed).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import weakref
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from airflow_policyzones.enforcement.errors import DecisionUnavailable, UncheckableTask, ZoneViolation
from airflow_policyzones.enforcement.settings import EnforcementSettings, current_settings
from airflow_policyzones.wire import (
    MAX_INPUTS,
    DecisionRequest,
    DecisionResponse,
    InputSpec,
    ObservationRequest,
    OutputSpec,
    OutputsRequest,
    OutputsResponse,
    TaskInstanceIdentity,
)

if TYPE_CHECKING:
    from airflow_policyzones.enforcement.observation import Observer

log = logging.getLogger(__name__)

_T = TypeVar("_T")

PreExecuteHook = Callable[[Any], Any]
"""What BaseOperator's ``pre_execute=`` accepts: called with the task's context."""

_BLOCKED_DB_URL = "airflow-db-not-allowed"

_generator_hooks: weakref.WeakKeyDictionary[Callable[..., Any], tuple[PreExecuteHook, str | None]] = (
    weakref.WeakKeyDictionary()
)
"""Generator hooks this module made: known by identity, not by an attribute anyone could copy."""


# --- the hook ---------------------------------------------------------------------------------------


class EnforcementHook:
    """The ``pre_execute`` hook: run the zone check, then the author's own hook, if any.

    Immutable and shared: copying a task (``dag.partial_subset``, ``prepare_for_execution``)
    keeps the very same hook.
    """

    __slots__ = ("__weakref__", "chained", "task_zone")

    chained: PreExecuteHook | None
    task_zone: str | None

    def __init__(self, *, chained: PreExecuteHook | None, task_zone: str | None) -> None:
        object.__setattr__(self, "chained", chained)
        object.__setattr__(self, "task_zone", task_zone)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def run(self, context: Any) -> Any:
        enforce(context, task_zone=self.task_zone)
        return self.chained(context) if self.chained is not None else None

    if TYPE_CHECKING:

        def __call__(self, context: Any) -> Any: ...

    else:
        # Not a plain method on purpose: Airflow serializes a task's pre-execute hook as its
        # source code (inspect.getsource, ~90 µs a task, 1,000 tasks = +40 % serialization time).
        # For a partialmethod that lookup fails at once and the stored value is a short constant.
        __call__ = functools.partialmethod(run)

    def __copy__(self) -> EnforcementHook:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> EnforcementHook:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_hook, (self.chained, self.task_zone))

    def __repr__(self) -> str:
        return f"<policyzones pre-execute check zone={self.task_zone!r} then {self.chained!r}>"


def make_hook(*, chained: PreExecuteHook | None = None, task_zone: str | None = None) -> PreExecuteHook:
    """A ``pre_execute`` hook that enforces the policy, then calls ``chained`` (the author's hook).

    ``task_zone`` is the zone a mapped task was given with ``set_zone()``: the operator that
    runs a mapped task instance is built anew from the mapped operator's arguments and does not
    carry the annotation, so the hook carries it.

    A generator ``chained`` hook (one that yields asset metadata) gets a generator hook, so that
    the task runner still exhausts it and records what it yields.
    """
    if chained is not None and is_enforcement_hook(chained):
        chained = enforcement_hook_info(chained)[0]
    if chained is None and task_zone is None:
        return _PLAIN_HOOK  # most tasks: one shared hook, nothing built per task
    if chained is not None and inspect.isgeneratorfunction(chained):
        generator_hook = chained

        def policyzones_pre_execute(context: Any) -> Generator[Any, Any, Any]:
            enforce(context, task_zone=task_zone)
            return (yield from generator_hook(context))

        _generator_hooks[policyzones_pre_execute] = (generator_hook, task_zone)
        return policyzones_pre_execute
    return EnforcementHook(chained=chained, task_zone=task_zone)


def _rebuild_hook(chained: PreExecuteHook | None, task_zone: str | None) -> PreExecuteHook:
    return make_hook(chained=chained, task_zone=task_zone)


_PLAIN_HOOK = EnforcementHook(chained=None, task_zone=None)


def is_enforcement_hook(value: object) -> bool:
    """Whether ``value`` is a hook made by :func:`make_hook`."""
    if isinstance(value, EnforcementHook):
        return True
    try:
        return value in _generator_hooks
    except TypeError:  # not hashable / not weak-referenceable: certainly not ours
        return False


def enforcement_hook_info(hook: PreExecuteHook) -> tuple[PreExecuteHook | None, str | None]:
    """The ``(chained, task_zone)`` a hook was made with."""
    if isinstance(hook, EnforcementHook):
        return hook.chained, hook.task_zone
    return _generator_hooks[hook]


# --- the check --------------------------------------------------------------------------------------


def enforce(
    context: Mapping[str, Any],
    *,
    task_zone: str | None = None,
    settings: EnforcementSettings | None = None,
) -> DecisionResponse | None:
    """Decide the running try; raise unless it may run. ``None`` when enforcement is off."""
    settings = settings if settings is not None else current_settings()
    if not settings.enabled:
        return None
    from airflow_policyzones.enforcement.sql_pin import pin_checked_sql, unpin

    started = time.perf_counter()
    task = context["task"]
    unpin()
    request = build_request(task=task, ti=context["ti"], task_zone=task_zone)
    response = obtain_decision(request, settings=settings)
    act_on(request, response=response, elapsed=time.perf_counter() - started)
    # Author code runs between here and the body: a SQL task may send only the SQL just checked.
    pin_checked_sql(task, identity=request.task)
    _after_body(task, request=request, settings=settings, observer=_observe(request, settings=settings))
    return response


# --- after the body: what the try wrote -------------------------------------------------------------


def declared_outputs(task: Any, *, identity: TaskInstanceIdentity | None = None) -> list[OutputSpec]:
    """The outputs a task declares: its Asset outlets, and the tables and files its SQL writes."""
    from airflow_policyzones.enforcement.sql_tasks import is_sql_task
    from airflow_policyzones.zones import declared_outputs as asset_outlets

    specs = [OutputSpec(namespace=ref.namespace, name=ref.name) for ref in asset_outlets(task)]
    if is_sql_task(task):  # sqlglot is imported for SQL tasks only (~0.1 s)
        from airflow_policyzones.enforcement.sql_tasks import sql_tables
        from airflow_policyzones.policy.sql import SqlParseError

        try:
            tables = sql_tables(task, identity=identity)
        except SqlParseError:  # the decision already refused the task
            tables = None
        if tables is not None:
            specs += [
                OutputSpec(namespace=ref.namespace, name=ref.name, source="sql") for ref in tables.outputs
            ]
    return specs


def alias_outputs(task: Any, context: Mapping[str, Any]) -> list[OutputSpec]:
    """The assets the task's ``AssetAlias`` outlets resolved to in this try (``outlet_events``)."""
    outlets = getattr(task, "outlets", None) or ()
    if not outlets:
        return []
    from airflow.sdk import AssetAlias

    from airflow_policyzones.policy.engine import InputRef

    aliases = [outlet for outlet in outlets if isinstance(outlet, AssetAlias)]
    events = context.get("outlet_events") if aliases else None
    if events is None:
        return []
    return [
        OutputSpec(namespace="asset", name=InputRef.asset(event.dest_asset_key.uri).name, source="alias")
        for alias in aliases
        for event in events[alias].asset_alias_events
    ]


def _observe(request: DecisionRequest, *, settings: EnforcementSettings) -> Observer:
    """From here on, what the try's hooks read is decided before the task's code sees it."""
    from airflow_policyzones.enforcement.observation import Observer, observe_try

    observer = Observer(
        request=request,
        decide=functools.partial(obtain_observation, settings=settings),
        # Asking again for the same try returns its recorded decision, refusals included.
        recorded=functools.partial(obtain_decision, request, settings=settings),
    )
    observe_try(observer)
    return observer


def _after_body(
    task: Any, *, request: DecisionRequest, settings: EnforcementSettings, observer: Observer
) -> None:
    """Chain a post-execute step: reconcile what the body read, then report what it wrote.

    It runs after the body and before Airflow records success (and emits asset events): a read
    refused while the body ran fails the try even if the task's code caught the refusal, and a
    downstream task never reads an output whose labels are not recorded yet; if the report
    fails, the try fails and is retried, rather than leaving unlabeled data behind. A try that
    wrote nothing sends nothing.
    """
    from airflow_policyzones.enforcement.observation import reconcile
    from airflow_policyzones.enforcement.sql_pin import refused_statement

    declared = declared_outputs(task, identity=request.task)
    previous = getattr(task, "_post_execute_hook", None)

    def policyzones_post_execute(context: Any, result: Any = None) -> Any:
        reconcile(observer)
        refused = refused_statement()
        if refused is not None:  # the task's code caught the refusal of its changed SQL
            raise ZoneViolation.caught(refused)
        outputs = _unique([*declared, *alias_outputs(task, context), *observer.output_specs()])
        if outputs:
            report = OutputsRequest(task=request.task, outputs=outputs)
            response = obtain_outputs_record(report, settings=settings)
            log.info(
                "policyzones: %s.%s wrote %s; labels recorded%s",
                report.task.dag_id,
                report.task.task_id,
                ", ".join(item.name for item in response.outputs),
                f" (reclassified by {response.reclassifier})" if response.reclassifier else "",
            )
        return previous(context, result) if previous is not None else None

    task._post_execute_hook = policyzones_post_execute


def _unique(outputs: list[OutputSpec]) -> list[OutputSpec]:
    """Each output once (the first way it became known), at most as many as one report holds."""
    found: dict[tuple[str, str], OutputSpec] = {}
    for spec in outputs:
        found.setdefault((spec.namespace, spec.name), spec)
    if len(found) > MAX_INPUTS:
        log.error(
            "policyzones: the try wrote %d outputs; labels are recorded for the first %d only (the others "
            "stay unlabeled, which readers are denied by default)",
            len(found),
            MAX_INPUTS,
        )
    return list(found.values())[:MAX_INPUTS]


def obtain_observation(request: ObservationRequest, *, settings: EnforcementSettings) -> DecisionResponse:
    """Decide what the running try read: in process when the ORM is open here, else through the supervisor."""
    if not orm_available():
        from airflow_policyzones.enforcement.client import DecisionClient

        return DecisionClient().observe(request)
    from airflow_policyzones.db.observed import decide_observed

    return _in_process(
        lambda session, engine: decide_observed(
            session=session, engine=engine, request=request, source="in_process"
        ),
        settings=settings,
        failed="deciding or recording the observed read failed",
    )


def obtain_outputs_record(request: OutputsRequest, *, settings: EnforcementSettings) -> OutputsResponse:
    """Record the outputs: in process when the ORM is open (``dag.test()``), else via the supervisor."""
    if not orm_available():
        from airflow_policyzones.enforcement.client import DecisionClient

        return DecisionClient().record_outputs(request)
    from airflow_policyzones.db.propagation import record_outputs

    return _in_process(
        lambda session, engine: record_outputs(session=session, engine=engine, request=request),
        settings=settings,
        failed="recording the outputs' labels failed",
    )


def _in_process(call: Callable[[Any, Any], _T], *, settings: EnforcementSettings, failed: str) -> _T:
    """``call(session, engine)`` on this process's metadata database; any failure is a decision
    that could not be had (retryable, fail closed)."""
    from airflow.utils.session import create_session

    from airflow_policyzones.config import get_engine

    try:
        with create_session() as session:
            return call(session, get_engine(settings.policy_file))
    except Exception as error:
        raise DecisionUnavailable(failed, detail=f"{type(error).__name__}: {error}") from error


def build_request(*, task: Any, ti: Any, task_zone: str | None = None) -> DecisionRequest:
    """The wire request for one try: identity from the task instance, claims from the task.

    Raises :class:`UncheckableTask` when the task's annotations cannot be described (e.g. two
    zone tags on its DAG); retrying would not change that.
    """
    from airflow_policyzones.zones import (
        ZoneAnnotationError,
        ZoneAssignment,
        declared_inputs,
        zone_of,
    )

    where = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}"
    try:
        assignment = zone_of(task)
        if task_zone is not None and assignment.source != "task":
            assignment = ZoneAssignment(task_zone, "task")
        declared = declared_inputs(task)
    except ZoneAnnotationError as error:
        raise UncheckableTask(
            f"policyzones: the zone annotations of {where} are invalid, so it cannot be checked and "
            f"does not run: {error}"
        ) from error
    try:
        map_index = getattr(ti, "map_index", None)
        identity = TaskInstanceIdentity(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=-1 if map_index is None else map_index,
            try_number=ti.try_number,
        )
        sql_reads, problems = _sql_reads(task, where=where, identity=identity)
        return DecisionRequest(
            task=identity,
            zone=assignment.zone,
            zone_source=assignment.source,
            inputs=[InputSpec(namespace=ref.namespace, name=ref.name) for ref in declared.inputs],
            uncheckable=[*declared.problems, *problems],
            sql_reads=sql_reads,
        )
    except ValidationError as error:
        raise UncheckableTask(
            f"policyzones: {where} cannot be described to the decision service, so it does not run: "
            f"{_validation_summary(error)}"
        ) from error


def _sql_reads(task: Any, *, where: str, identity: TaskInstanceIdentity) -> tuple[list[InputSpec], list[str]]:
    """The tables and files a SQL task's rendered SQL reads, or why they cannot be known (fails closed)."""
    from airflow_policyzones.enforcement.sql_tasks import is_sql_task

    if not is_sql_task(task):  # sqlglot is imported for SQL tasks only (~0.1 s)
        return [], []
    from airflow_policyzones.enforcement.sql_tasks import sql_tables
    from airflow_policyzones.policy.sql import SqlParseError

    try:
        tables = sql_tables(task, identity=identity)
    except SqlParseError as error:
        return [], [f"the SQL of {where} cannot be analyzed, so what it reads is unknown: {error}"]
    if tables is None:
        return [], []
    return [InputSpec(namespace=ref.namespace, name=ref.name) for ref in tables.inputs], []


def obtain_decision(request: DecisionRequest, *, settings: EnforcementSettings) -> DecisionResponse:
    """The decision for ``request``: in process when the ORM is open here, else through the supervisor."""
    if orm_available():
        return decide_in_process(request, settings=settings)
    from airflow_policyzones.enforcement.client import DecisionClient

    return DecisionClient().decide(request)


def orm_available() -> bool:
    """Whether this process may use the metadata database (``dag.test()``, ``airflow dags test``).

    A real worker (and the dag-processor's parsing child) blocks the ORM: ``sql_alchemy_conn``
    reads ``airflow-db-not-allowed:///`` and ``airflow.settings.Session`` is a stub that raises.
    """
    import sys

    if "airflow.settings" not in sys.modules:
        return False
    from airflow import settings as airflow_settings
    from airflow.configuration import conf

    url = str(conf.get("database", "sql_alchemy_conn", fallback="") or "")
    if not url or url.startswith(_BLOCKED_DB_URL):
        return False
    if str(getattr(airflow_settings, "SQL_ALCHEMY_CONN", "") or "").startswith(_BLOCKED_DB_URL):
        return False
    session = getattr(airflow_settings, "Session", None)  # the worker swaps in the class BlockedDBSession
    return session is not None and "BlockedDBSession" not in (
        getattr(session, "__name__", ""),
        type(session).__name__,
    )


def decide_in_process(request: DecisionRequest, *, settings: EnforcementSettings) -> DecisionResponse:
    """Decide and record with the same code as the api-server, in this process's database."""
    from airflow.utils.session import create_session

    from airflow_policyzones.config import get_engine
    from airflow_policyzones.db.service import decide_and_record
    from airflow_policyzones.enforcement.client import verify_response
    from airflow_policyzones.policy import PolicyError

    try:
        engine = get_engine(settings.policy_file)
    except PolicyError as error:
        raise DecisionUnavailable(
            "no valid policy",
            detail=str(error),
            hint="Set [policyzones] policy_file to a valid policy (policyzones validate POLICY).",
        ) from error
    try:
        with create_session() as session:
            response = decide_and_record(session=session, engine=engine, request=request, source="in_process")
    except Exception as error:
        raise DecisionUnavailable(
            "recording the decision in the metadata database failed",
            detail=f"{type(error).__name__}: {error}",
            hint="Run `airflow db migrate` so that the policyzones tables exist.",
        ) from error
    return verify_response(request, response=response)


# --- acting on the decision -------------------------------------------------------------------------


def act_on(request: DecisionRequest, *, response: DecisionResponse, elapsed: float = 0.0) -> None:
    """Raise :class:`ZoneViolation` for a deny; log every other decision."""
    task = request.task
    where = f"{task.dag_id}.{task.task_id}"
    if task.map_index >= 0:
        where += f"[{task.map_index}]"
    if not response.allowed:
        raise ZoneViolation(deny_message(request, response=response))
    if response.outcome == "allow":
        log.info(
            "policyzones: allow %s zone=%s inputs=%d policy=%s decision=%s%s (%.1f ms)",
            where,
            response.zone,
            len(request.inputs),
            _short_version(response.policy_version),
            response.decision_id,
            " (recorded before)" if response.already_recorded else "",
            elapsed * 1000,
        )
        return
    label = "dry-run: would be denied" if response.outcome == "dry_run" else "exempted"
    log.warning(
        "policyzones: %s %s in zone %s (policy %s, decision %s); the task runs",
        where,
        label,
        response.zone,
        _short_version(response.policy_version),
        response.decision_id,
    )
    for finding in response.findings:
        waiver = f" [exempted by {finding.exemption}]" if finding.exemption else ""
        log.warning(
            "policyzones:   %s [%s]%s: %s; fix: %s",
            finding.input or "(the task)",
            ", ".join(finding.rules),
            waiver,
            finding.reason,
            finding.remediation,
        )


def deny_message(request: DecisionRequest, *, response: DecisionResponse) -> str:
    """The failure message: each offending input, its rules, the reason, the fix, the policy."""
    task = request.task
    mapped = f", map index {task.map_index}" if task.map_index >= 0 else ""
    lines = [
        f"policyzones: task {task.dag_id}.{task.task_id} (run {task.run_id}{mapped}, try {task.try_number}) "
        f"may not run in zone {response.zone!r}: the policy denies it "
        f"({len(response.findings)} finding{'s' if len(response.findings) != 1 else ''}); "
        "its body did not run and it is not retried."
    ]
    lines += finding_lines(response, unnamed="the task")
    inputs = "".join(
        f" --{'input' if spec.namespace == 'asset' else 'table'} {spec.name}" for spec in request.inputs[:3]
    )
    lines.append(
        f"  policy {response.policy_version}, decision {response.decision_id}; explain it with "
        f"`policyzones explain POLICY --zone {response.zone} --dag-id {task.dag_id} "
        f"--task-id {task.task_id}{inputs}`"
    )
    return "\n".join(lines)


def finding_lines(response: DecisionResponse, *, unnamed: str, how: str = "") -> list[str]:
    """Two lines per finding of a failure message: the input (or ``unnamed``), rules and reason
    (``how`` the input became known, if given), then the fix."""
    lines = []
    for finding in response.findings:
        subject = f"input {finding.input}" if finding.input is not None else unnamed
        lines.append(f"  - {subject} [{', '.join(finding.rules)}]{how}: {finding.reason}")
        lines.append(f"    fix: {finding.remediation}")
    return lines


def _short_version(version: str) -> str:
    algorithm, _, digest = version.partition(":")
    return f"{algorithm}:{digest[:12]}" if digest else version[:19]


def _validation_summary(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', '')}")
    return "; ".join(parts)
