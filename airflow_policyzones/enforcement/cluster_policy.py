"""Cluster policy, registered through the ``airflow.policy`` entry point.

Airflow applies it wherever a DAG file is parsed by a ``DagBag``: in the dag-processor (so a
bad zone annotation becomes a DAG import error in the UI) and again on the worker at task start
(so the enforcement hook is attached to the very task object that runs).

* :func:`dag_policy` validates zone annotations against the policy with the one engine: an
  unknown zone, a DAG that is not a member of its zone, two zone tags or an unzoned task when
  the policy requires zones raise ``AirflowClusterPolicyViolation``. A policy that does not load
  is *not* an import error (that would take every DAG out of Airflow): it is logged, recorded in
  the serialized DAG (:mod:`airflow_policyzones.db.policy_status`) and shown in the Policy Zones
  pages, and tasks fail closed at run time because the decision service has no policy either.
  Either way the version the DAG was validated against is recorded with it.
* :func:`task_policy` attaches the pre-execute check (:mod:`.hook`) to every task, chaining any
  ``pre_execute=`` hook the author passed, and refuses tasks on which it cannot be sure the
  check will run.

Importing this module is cheap: Airflow imports it in every process (``import airflow``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowClusterPolicyViolation
from airflow.policies import hookimpl

from airflow_policyzones.enforcement.settings import current_settings

if TYPE_CHECKING:
    from airflow_policyzones.policy.engine import PolicyEngine

_PARSING_TASK_ENV = "_AIRFLOW_PARSING_CONTEXT_TASK_ID"
"""Set by the task runner while the worker re-parses the DAG file for one task."""

_MAX_PROBLEMS_SHOWN = 20

_IN_DAG_PROCESSOR = sys.argv[1:2] == ["dag-processor"]
"""Whether this is ``airflow dag-processor`` (or its parsing children), read before any DAG file
runs: tasks never run here, so hooks are checked but not kept (see :func:`task_policy`)."""

_TASK_LAUNCHERS = frozenset({"scheduler", "worker", "standalone"})
"""Airflow commands whose (forked) child processes run tasks: LocalExecutor workers fork from
the scheduler, Celery and edge workers from ``airflow celery worker`` / ``airflow edge worker``."""


def _warm_up() -> None:
    """Import what the hook needs where task processes are forked from, so they inherit it.

    The hook's modules and the task SDK's supervisor messages it sends; paid once in the launcher
    instead of once per task. Only an optimization: never fails.
    """
    if not _TASK_LAUNCHERS.intersection(sys.argv[1:3]):
        return
    try:
        # The client's SetXCom/GetXCom; the hook-lineage collector that observed reads wrap.
        import airflow.sdk.execution_time.comms
        import airflow.sdk.lineage  # noqa: F401

        import airflow_policyzones.enforcement.client
        import airflow_policyzones.enforcement.hook
        import airflow_policyzones.enforcement.observation
        import airflow_policyzones.enforcement.sql_pin
        import airflow_policyzones.enforcement.sql_tasks
        import airflow_policyzones.zones  # noqa: F401
    except Exception:  # pragma: no cover - a missing optional import only costs time later
        return


_SERVING_DAG_CODE = frozenset({"dag-processor", "triggerer"})
"""Airflow commands whose in-process execution API serves connections to DAG authors' code."""


def _check_in_process_credentials() -> None:
    """In ``airflow dag-processor`` and ``airflow triggerer``, before they start any child: check
    the connections and variables DAG files' code and triggers ask for
    (:mod:`airflow_policyzones.enforcement.in_process_credentials`)."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in _SERVING_DAG_CODE or not current_settings().enabled:
        return
    try:
        from airflow_policyzones.enforcement import in_process_credentials

        in_process_credentials.install(command)
    except Exception:
        logging.getLogger(__name__).exception(
            "policyzones: airflow %s cannot check the connections and variables its children ask for "
            "on this Airflow version; they are served unchecked",
            command,
        )


# Read the settings now, while Airflow loads its policy plugins: before any DAG file runs.
current_settings()
_warm_up()
_check_in_process_credentials()


_validation_suspended: ContextVar[bool] = ContextVar("policyzones_validation_suspended", default=False)


@contextlib.contextmanager
def parse_time_validation_suspended() -> Iterator[None]:
    """Parse DAGs in this block without :func:`dag_policy`'s validation; hooks still attach.

    For tools that report zone problems themselves (``policyzones check`` decides every task
    with the policy it is given). Skipping parse-time validation never skips enforcement: the
    pre-execute check still decides every task before it runs.
    """
    token = _validation_suspended.set(True)
    try:
        yield
    finally:
        _validation_suspended.reset(token)


@hookimpl
def dag_policy(dag: Any) -> None:
    """Reject a DAG whose zone annotations the policy does not accept (a DAG import error).

    A policy that does not load rejects nothing: the problem is the policy's, not the DAG's.
    """
    settings = current_settings()
    if not settings.enabled or _validation_suspended.get() or os.environ.get(_PARSING_TASK_ENV):
        # On the worker the decision service decides; the worker needs no policy file.
        return
    from airflow_policyzones.config import get_engine
    from airflow_policyzones.db.policy_status import PolicyState, describe_error, file_version, record_on_dag
    from airflow_policyzones.policy import PolicyError

    try:
        engine = get_engine(settings.policy_file)
    except PolicyError as error:
        # Never an import error: the DAG stays listed and schedulable, and its tasks fail closed
        # (retryable) at run time until the file is fixed. Recorded in the DAG for the UI.
        state = PolicyState(
            version=file_version(settings.policy_file), loaded=False, error=describe_error(error)
        )
        record_on_dag(dag, state=state)
        _warn_policy_unloaded(error)
        # What is wrong with the DAG itself, whatever the policy says, is still its import error.
        _raise_problems(dag, annotation_problems(dag), against="its zone annotations")
        return
    record_on_dag(dag, state=PolicyState(version=engine.version, loaded=True))
    _raise_problems(dag, dag_problems(dag=dag, engine=engine), against=f"the zone policy ({engine.version})")


def _raise_problems(dag: Any, problems: list[str], *, against: str) -> None:
    if not problems:
        return
    shown = problems[:_MAX_PROBLEMS_SHOWN]
    if len(problems) > len(shown):
        shown.append(f"... and {len(problems) - len(shown)} more problems")
    raise AirflowClusterPolicyViolation(
        f"policyzones: DAG {dag.dag_id!r} violates {against}:\n"
        + "\n".join(f"  - {problem}" for problem in shown)
    )


def annotation_problems(dag: Any) -> list[str]:
    """Malformed zone annotations (e.g. two zone tags): wrong under any policy, so checked without one."""
    from airflow_policyzones.zones import ZoneAnnotationError, dag_zone, zone_of

    try:
        dag_zone(dag)
    except ZoneAnnotationError as error:
        return [str(error)]
    problems: dict[str, list[str]] = {}
    for task in dag.tasks:
        try:
            zone_of(task)
        except ZoneAnnotationError as error:
            problems.setdefault(str(error), []).append(task.task_id)
    return [_with_tasks(message, task_ids) for message, task_ids in problems.items()]


_unloaded_warned: set[str] = set()


def _warn_policy_unloaded(error: Exception) -> None:
    """Log a policy that does not load once per process and problem (not once per DAG)."""
    message = str(error)
    if message in _unloaded_warned:
        return
    _unloaded_warned.add(message)
    logging.getLogger(__name__).warning(
        "policyzones: the zone policy does not load, so zone annotations are not validated at parse "
        "time; DAGs stay listed, and every task that needs a decision fails closed (retryable) until "
        "the file is fixed. %s",
        message,
    )


@hookimpl
def task_policy(task: Any) -> None:
    """Attach the enforcement hook to ``task`` (idempotent).

    In the dag-processor the hook is attached, verified and taken off again: problems still
    become import errors in the UI, but the serialized DAG stays free of it (serializing a hook
    costs ~9 µs a task). Tasks never run there; the worker re-parses the file and attaches its own.
    """
    if current_settings().enabled:
        attach_enforcement(task, keep=not _IN_DAG_PROCESSOR)


# --- parse-time validation --------------------------------------------------------------------------


def dag_problems(*, dag: Any, engine: PolicyEngine) -> list[str]:
    """What is wrong with ``dag``'s zone annotations, one line per problem (empty: fine).

    Membership, unknown zones and required zones are decided by the engine itself, with a
    decision that has no inputs, so the parse-time check cannot drift from the run-time one
    (membership is enforced in dry-run zones too: a DAG chooses its zone).
    """
    from airflow_policyzones.policy.vocabulary import Outcome, Rule
    from airflow_policyzones.zones import ZoneAnnotationError, dag_zone, task_context, zone_of

    try:
        default = dag_zone(dag)
    except ZoneAnnotationError as error:
        return [str(error)]
    problems: dict[str, list[str]] = {}
    if default is not None and default not in engine.zones:
        problems[
            f"the DAG's zone tag names zone {default!r}, which the policy does not define; "
            f"zones: {', '.join(sorted(engine.zones))}"
        ] = []
    task_rules = {Rule.UNKNOWN_ZONE, Rule.ZONE_MEMBERSHIP, Rule.UNZONED_TASK}
    no_default = engine.effective_zone(None) is None
    require_zone = engine.policy.settings.require_zone
    decided: dict[tuple[str | None, str], tuple[str, ...]] = {}
    for task in dag.tasks:
        try:
            zone = zone_of(task).zone
        except ZoneAnnotationError as error:
            problems.setdefault(str(error), []).append(task.task_id)
            continue
        if zone is None and no_default and not require_zone:
            continue  # nothing to check before the task names its inputs
        # Within one DAG only the zone and the task's owner change the answer, except for an
        # unzoned task under require_zone, whose finding names the task.
        key = None if zone is None and no_default else (zone, str(task.owner))
        messages = decided.get(key) if key is not None else None
        if messages is None:
            decision = engine.check(task=task_context(task), zone=zone, inputs=())
            messages = ()
            if decision.outcome is Outcome.DENY:
                messages = tuple(
                    f"{finding.reason} [{finding.rule.value}]; fix: {finding.remediation}"
                    for finding in decision.findings
                    if finding.rule in task_rules
                )
            if key is not None:
                decided[key] = messages
        for message in messages:
            problems.setdefault(message, []).append(task.task_id)
    return [_with_tasks(message, task_ids) for message, task_ids in problems.items()]


def _with_tasks(message: str, task_ids: list[str]) -> str:
    """One line per distinct problem: a whole DAG outside its zone is one line, not 1,000."""
    if not task_ids:
        return message
    shown = ", ".join(task_ids[:5]) + (f" and {len(task_ids) - 5} more" if len(task_ids) > 5 else "")
    return f"{message} (task{'s' if len(task_ids) > 1 else ''}: {shown})"


# --- attaching the hook -----------------------------------------------------------------------------


def attach_enforcement(task: Any, *, keep: bool = True) -> None:
    """Make the pre-execute check run before ``task``'s body, keeping the author's own hook.

    Normal operators get the hook as ``_pre_execute_hook``; mapped operators get it as
    ``partial_kwargs["pre_execute"]``, from which every mapped task instance is built. Raises
    ``AirflowClusterPolicyViolation`` when the hook cannot be guaranteed to run. With
    ``keep=False`` everything is checked, then the task is left as it was.
    """
    base_operator, mapped_operator = _operator_classes()
    if isinstance(task, mapped_operator):
        _attach_to_mapped(task, keep=keep)
    elif isinstance(task, base_operator):
        _attach_to_operator(task, keep=keep)
    else:
        raise AirflowClusterPolicyViolation(
            f"policyzones: cannot attach the zone check to task {getattr(task, 'task_id', task)!r} of type "
            f"{type(task).__qualname__}: it is neither a BaseOperator nor a mapped operator"
        )


@lru_cache(maxsize=1)
def _operator_classes() -> tuple[type, type]:
    """Imported on first use: this module is imported by ``import airflow`` itself."""
    from airflow.sdk.bases.operator import BaseOperator
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    return BaseOperator, MappedOperator


@lru_cache(maxsize=1)
def _hook_api() -> tuple[Callable[[object], bool], Callable[..., Any]]:
    from airflow_policyzones.enforcement.hook import is_enforcement_hook, make_hook

    return is_enforcement_hook, make_hook


def _attach_to_operator(task: Any, *, keep: bool) -> None:
    is_enforcement_hook, make_hook = _hook_api()
    if _unsafe_members(type(task), mapped=False):
        _refuse_unsafe_class(type(task), task_id=task.task_id, mapped=False)
    if getattr(task, "start_from_trigger", False):
        _refuse_start_from_trigger(task)
    current = task._pre_execute_hook
    if is_enforcement_hook(current):
        hook = current
    else:
        hook = make_hook(chained=current)
        # Straight into the instance dict: no __setattr__ (BaseOperator's converters or an
        # operator's own override) gets a chance to drop or replace it.
        task.__dict__["_pre_execute_hook"] = hook
    if task.__dict__.get("_pre_execute_hook") is not hook or task._pre_execute_hook is not hook:
        raise AirflowClusterPolicyViolation(
            f"policyzones: task {task.task_id!r} ({type(task).__qualname__}) does not keep the zone check "
            "in its _pre_execute_hook attribute, so it could run unchecked; remove whatever overrides "
            "that attribute (use pre_execute= or override pre_execute() instead)"
        )
    if not keep and hook is not current:
        task.__dict__["_pre_execute_hook"] = current


def _attach_to_mapped(task: Any, *, keep: bool) -> None:
    from airflow_policyzones.enforcement.hook import enforcement_hook_info, is_enforcement_hook, make_hook
    from airflow_policyzones.zones import ZoneAnnotationError, zone_of

    _refuse_unsafe_class(task.operator_class, task_id=task.task_id, mapped=True)
    _refuse_start_from_trigger(task)
    _refuse_expanded_pre_execute(task)
    try:
        assignment = zone_of(task)
    except ZoneAnnotationError:
        assignment = None  # reported by dag_policy; the hook fails the task at run time
    task_zone = assignment.zone if assignment is not None and assignment.source == "task" else None
    kwargs = task.partial_kwargs
    had_hook = "pre_execute" in kwargs
    current = kwargs.get("pre_execute")
    if is_enforcement_hook(current):
        chained, zone = enforcement_hook_info(current)
        hook = current if zone == task_zone else make_hook(chained=chained, task_zone=task_zone)
    else:
        hook = make_hook(chained=current, task_zone=task_zone)
    if hook is not current:
        kwargs["pre_execute"] = hook
    if type(kwargs) is not dict or task.partial_kwargs.get("pre_execute") is not hook:
        raise AirflowClusterPolicyViolation(
            f"policyzones: mapped task {task.task_id!r} does not keep the zone check in its partial "
            "arguments, so its task instances could run unchecked"
        )
    if not keep and hook is not current:
        if had_hook:
            kwargs["pre_execute"] = current
        else:
            del kwargs["pre_execute"]


_unsafe_cache: dict[tuple[type, bool], tuple[str, ...]] = {}


def _unsafe_members(cls: type, *, mapped: bool) -> tuple[str, ...]:
    """Class members that could silently drop or bypass the hook, outside Airflow's BaseOperator.

    A data descriptor named ``_pre_execute_hook`` (e.g. a property that ignores assignments),
    a ``_convert__pre_execute_hook`` converter (BaseOperator.__setattr__ applies it) or a custom
    ``__getattribute__`` can make the task runner read something else than the hook. For mapped
    operators, whose task instances are built only at run time, a custom ``__setattr__`` is
    refused too, since it would run after this check.
    """
    cached = _unsafe_cache.get((cls, mapped))
    if cached is not None:
        return cached
    base_operator, _ = _operator_classes()
    names = ["_convert__pre_execute_hook", "__getattribute__"] + (["__setattr__"] if mapped else [])
    found: list[str] = []
    for klass in cls.__mro__:
        if klass is base_operator:
            break
        members = vars(klass)
        found.extend(f"{klass.__qualname__}.{name}" for name in names if name in members)
        member = members.get("_pre_execute_hook")
        if member is not None and (hasattr(member, "__set__") or hasattr(member, "__delete__")):
            found.append(f"{klass.__qualname__}._pre_execute_hook")
    if len(_unsafe_cache) > 4096:  # classes defined in DAG files are new objects on every parse
        _unsafe_cache.clear()
    _unsafe_cache[(cls, mapped)] = result = tuple(found)
    return result


def _refuse_unsafe_class(cls: type, *, task_id: str, mapped: bool) -> None:
    unsafe = _unsafe_members(cls, mapped=mapped)
    if unsafe:
        raise AirflowClusterPolicyViolation(
            f"policyzones: task {task_id!r} uses operator class {cls.__qualname__}, which defines "
            f"{', '.join(unsafe)}: that could skip the zone check, so the task is refused; pass "
            "pre_execute= or override pre_execute() instead"
        )


def _refuse_start_from_trigger(task: Any) -> None:
    """A task that starts in the triggerer runs trigger code before any worker could check it."""
    if not getattr(task, "start_from_trigger", False):
        return
    if getattr(task, "inlets", None):
        raise AirflowClusterPolicyViolation(
            f"policyzones: task {task.task_id!r} declares inputs and sets start_from_trigger=True: its "
            "trigger would run in the triggerer before the zone check; set start_from_trigger=False "
            "(it then defers from the worker after the check)"
        )


def _refuse_expanded_pre_execute(task: Any) -> None:
    """``pre_execute`` given per mapped instance would replace the hook when the task is unmapped."""
    from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput, ListOfDictsExpandInput

    if getattr(task, "_expand_input_attr", "expand_input") != "expand_input":
        return  # @task functions expand their own arguments, never the operator's
    expand_input = task._get_specified_expand_input()
    value = expand_input.value
    problem = None
    if isinstance(expand_input, DictOfListsExpandInput) and "pre_execute" in value:
        problem = "expands pre_execute"
    elif isinstance(expand_input, ListOfDictsExpandInput):
        if isinstance(value, (list, tuple)):
            literal = [item for item in value if isinstance(item, dict)]
            if any("pre_execute" in item for item in literal):
                problem = "expands pre_execute"
            elif len(literal) != len(value) and not task._disallow_kwargs_override:
                problem = "uses expand_kwargs(..., strict=False) with arguments resolved at run time"
        elif not task._disallow_kwargs_override:
            problem = "uses expand_kwargs(..., strict=False) with arguments resolved at run time"
    if problem is not None:
        raise AirflowClusterPolicyViolation(
            f"policyzones: mapped task {task.task_id!r} {problem}, which could replace the zone check "
            "when a task instance is built; pass pre_execute= to .partial() and keep "
            "expand_kwargs(strict=True) (the default)"
        )
