"""Zone annotations for DAG authors, and how the rest of the provider reads them.

Four ways to put tasks in a zone; the nearest one wins (task > group > DAG > policy default):

* DAG default zone, visible in the Airflow UI as a tag::

      DAG("ads_daily", tags=[zone_tag("ads_optimization")])

* a group of tasks (a TaskGroup, shown as a group in the UI)::

      with ZoneGroup("ai_training", group_id="train"):
          ...

* one task (operators, ``@task`` results, mapped tasks)::

      set_zone(train_model, zone="ai_training")

* an operator class that always runs in one zone::

      TrainingOperator = zoned(PythonOperator, zone="ai_training")

A zone annotation is only a claim: the policy's zone membership decides whether the DAG may use
the zone, so an author cannot pick the most permissive zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from airflow.sdk import Asset, AssetAlias, TaskGroup

from airflow_policyzones.policy.engine import InputRef, TaskContext
from airflow_policyzones.policy.models import is_valid_name

ZONE_TAG_PREFIX = "policyzone:"
"""DAG tags of the form ``policyzone:<zone>`` set the DAG's default zone."""

_TASK_ZONE_ATTRIBUTE = "_policyzones_zone"

ZoneSource = Literal["task", "group", "dag", "none"]
OperatorT = TypeVar("OperatorT", bound=type)


class ZoneAnnotationError(ValueError):
    """A zone annotation in a DAG is malformed (reported as a DAG import error)."""


def _checked(zone: str) -> str:
    if not isinstance(zone, str) or not is_valid_name(zone):
        raise ZoneAnnotationError(
            f"invalid zone name {zone!r}: zone names start with a letter and contain only letters, "
            "digits, '_' or '-'"
        )
    return zone


def zone_tag(zone: str) -> str:
    """The DAG tag that makes ``zone`` the DAG's default zone."""
    return ZONE_TAG_PREFIX + _checked(zone)


class ZoneGroup(TaskGroup):
    """A TaskGroup whose tasks run in ``zone`` (unless a task names its own zone).

    ``group_id`` defaults to the zone name; every other TaskGroup argument is accepted.
    """

    def __init__(self, zone: str, group_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(group_id=group_id or _checked(zone), **kwargs)
        self.zone = _checked(zone)


def set_zone(*tasks: Any, zone: str) -> None:
    """Run each of ``tasks`` (operators, mapped operators or ``@task`` results) in ``zone``."""
    checked = _checked(zone)
    for task in tasks:
        operator = getattr(task, "operator", task)  # an XComArg from a @task call
        if not hasattr(operator, "task_id"):
            raise ZoneAnnotationError(f"set_zone() expects tasks, got {type(task).__name__}")
        setattr(operator, _TASK_ZONE_ATTRIBUTE, checked)


def zoned(operator_class: OperatorT, *, zone: str) -> OperatorT:
    """A subclass of ``operator_class`` whose tasks always run in ``zone``."""
    checked = _checked(zone)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        super(subclass, self).__init__(*args, **kwargs)  # type: ignore[arg-type]
        setattr(self, _TASK_ZONE_ATTRIBUTE, checked)

    name = f"Zoned{operator_class.__name__}"
    namespace = {"__init__": __init__, "__module__": __name__, "__qualname__": name, "policy_zone": checked}
    subclass: OperatorT = type(name, (operator_class,), namespace)  # type: ignore[assignment]
    return subclass


@dataclass(frozen=True, slots=True)
class ZoneAssignment:
    """The zone a task claims and where the claim comes from."""

    zone: str | None
    source: ZoneSource


def dag_zone(dag: Any) -> str | None:
    """The DAG's default zone from its ``policyzone:`` tag; two different zone tags are an error."""
    zones = sorted(
        {tag[len(ZONE_TAG_PREFIX) :] for tag in (dag.tags or ()) if tag.startswith(ZONE_TAG_PREFIX)}
    )
    if len(zones) > 1:
        raise ZoneAnnotationError(
            f"DAG {dag.dag_id!r} has several zone tags ({', '.join(ZONE_TAG_PREFIX + z for z in zones)}): "
            "keep one DAG default zone and put other tasks in a ZoneGroup or use set_zone()"
        )
    return _checked(zones[0]) if zones else None


def zone_of(task: Any) -> ZoneAssignment:
    """The zone ``task`` claims: its own, else its nearest ZoneGroup's, else its DAG's."""
    own = getattr(task, _TASK_ZONE_ATTRIBUTE, None)
    if own is not None:
        return ZoneAssignment(own, "task")
    group = getattr(task, "task_group", None)
    while group is not None:
        if isinstance(group, ZoneGroup):
            return ZoneAssignment(group.zone, "group")
        group = group.parent_group
    dag = getattr(task, "dag", None)
    zone = dag_zone(dag) if dag is not None else None
    return ZoneAssignment(zone, "dag" if zone is not None else "none")


@dataclass(frozen=True, slots=True)
class DeclaredInputs:
    """A task's inlets as engine inputs, and the inlets that cannot be checked."""

    inputs: tuple[InputRef, ...]
    problems: tuple[str, ...]


def declared_inputs(task: Any) -> DeclaredInputs:
    """Turn ``task.inlets`` into :class:`InputRef` values.

    Only Assets name data that can be checked. Anything else (a string, ``None``, an AssetAlias
    that resolves only at run time) is reported as a problem, which enforcement treats as a
    violation rather than silently ignoring it.
    """
    inputs: list[InputRef] = []
    problems: list[str] = []
    for inlet in _flatten(getattr(task, "inlets", None) or ()):
        if isinstance(inlet, Asset):
            inputs.append(InputRef.asset(inlet.uri))
        elif isinstance(inlet, AssetAlias):
            problems.append(
                f"inlet AssetAlias({inlet.name!r}) resolves only at run time and cannot be checked: "
                "declare the Assets it stands for"
            )
        else:
            problems.append(
                f"inlet {inlet!r} ({type(inlet).__name__}) is not an Asset: declare inputs as "
                "airflow.sdk.Asset(uri)"
            )
    return DeclaredInputs(tuple(inputs), tuple(problems))


def declared_outputs(task: Any) -> tuple[InputRef, ...]:
    """The task's Asset outlets as :class:`InputRef` values, each once.

    Other outlets (an AssetAlias resolved at run time) name nothing that can be followed before
    the task runs; SQL tasks also write the tables their SQL names (enforcement adds those).
    """
    outputs: dict[InputRef, None] = {}
    for outlet in _flatten(getattr(task, "outlets", None) or ()):
        if isinstance(outlet, Asset):
            outputs.setdefault(InputRef.asset(outlet.uri), None)
    return tuple(outputs)


def _flatten(items: Iterable[Any]) -> Iterable[Any]:
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


def task_context(task: Any, *, dag_folder: str | Path | None = None) -> TaskContext:
    """The identity a zone's membership rules are checked against."""
    dag = task.dag
    owners = {owner.strip() for owner in str(getattr(task, "owner", "") or "").split(",") if owner.strip()}
    return TaskContext(
        dag_id=dag.dag_id,
        task_id=task.task_id,
        dag_file=_relative_file(dag, dag_folder),
        tags=frozenset(dag.tags or ()),
        owners=frozenset(owners),
    )


def _relative_file(dag: Any, dag_folder: str | Path | None) -> str | None:
    relative = getattr(dag, "relative_fileloc", None)
    fileloc = getattr(dag, "fileloc", None)
    if dag_folder is not None and fileloc:
        try:
            return Path(fileloc).resolve().relative_to(Path(dag_folder).resolve()).as_posix()
        except ValueError:
            return None
    return str(relative) if relative else None
