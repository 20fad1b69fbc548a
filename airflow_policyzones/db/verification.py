"""What the decision service checks before it records anything a worker tells it.

A worker runs DAG code, so whatever it sends could have been chosen by that code. Three facts are
read from Airflow's own tables instead of being taken from the request:

* **the try runs**: a decision, an observation or an outputs report is accepted only for a task
  instance that exists at that try number (1 or higher) and is ``running`` — the state Airflow's
  execution API (``PATCH /execution/task-instances/{id}/run``) gives a try when its supervisor
  starts it, before the task process runs its pre-execute check. A queued, scheduled or finished
  try, or a run created for the future (its task instances at try 0), is refused
  (:mod:`airflow_policyzones.db.tries` reads the try).
* **what the dag-processor parsed**: the zone and the declared inlets of the task, from the
  serialized DAG of the task instance's DAG version (or the DAG's latest version: a worker of an
  unversioned bundle parses the current file). Zones set on tasks (``set_zone``, ``ZoneGroup``,
  ``zoned``) are not serialized by Airflow, so the cluster policy records them in the serialized
  DAG (:func:`record_task_zones`); a DAG's own zone is its ``policyzone:`` tag.
* **what the try may write**: its outlets in the serialized task, the tables its SQL writes (a
  task that runs SQL), assets its ``AssetAlias`` outlets resolve to (a task with such an outlet).

Serialized DAGs are read from their JSON (no DAG is deserialized) and cached per serialized row
and hash: a DAG version's serialized DAG does not change once a task instance runs it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from airflow_policyzones.policy.engine import InputRef

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.orm import Session

    from airflow_policyzones.wire import DecisionRequest, OutputSpec

ZONES_KEY = "policyzones:zones"
"""Key in the serialized DAG's ``edge_info`` under which the dag-processor records task zones."""

# --- what the dag-processor parsed -----------------------------------------------------------------


def record_task_zones(dag: Any) -> None:
    """Record in ``dag`` (serialized with it) the zone of each task zoned on the task or its group.

    Called where the dag-processor parses the DAG (the cluster policy). Airflow serializes a DAG's
    tags but not ``set_zone``/``ZoneGroup``/``zoned`` annotations; tasks not listed run in their
    DAG's tag zone. A task whose annotations are invalid is left out (the DAG is an import error).
    """
    from airflow_policyzones.zones import ZoneAnnotationError, zone_of

    edge_info = getattr(dag, "edge_info", None)
    if not isinstance(edge_info, dict):
        return
    zones: dict[str, str | None] = {}
    for task in getattr(dag, "tasks", ()):
        try:
            assignment = zone_of(task)
        except ZoneAnnotationError:
            continue
        if assignment.source in ("task", "group"):
            zones[task.task_id] = assignment.zone
    label = json.dumps(zones, sort_keys=True, separators=(",", ":"))
    edge_info[ZONES_KEY] = {ZONES_KEY: {"label": label}}


@dataclass(frozen=True, slots=True)
class ParsedTask:
    """One task as the dag-processor serialized it."""

    zone: str | None
    zones_recorded: bool
    """Whether the dag-processor recorded task zones (else only the DAG's tag zone is known)."""
    zone_problem: str | None
    inputs: frozenset[InputRef] | None
    """Asset inlets; ``None`` when a mapped task expands its inlets (set per mapped instance)."""
    other_inlets: int
    """Inlets that are not Assets (an ``AssetAlias``, a reference resolved at run time)."""
    outlets: frozenset[InputRef]
    """Asset outlets, those of every literal expansion of a mapped task's outlets included."""
    alias_outlets: bool
    runs_sql: bool
    """The task carries SQL (a ``sql`` field): it writes what its SQL writes."""


@dataclass(frozen=True, slots=True)
class ParsedDag:
    version: str
    """Which serialized DAG (for messages): ``DAG version <n>``."""
    tasks: Mapping[str, ParsedTask]


_CACHE_SIZE = 128
_cache: OrderedDict[tuple[str, str], ParsedDag] = OrderedDict()
_cache_lock = threading.Lock()


def parsed_dags(session: Session, *, dag_id: str, dag_version_id: UUID | None) -> list[ParsedDag]:
    """The serialized DAG of ``dag_version_id`` and, if another, the DAG's latest one (in that order).

    One query for both rows' ids and hashes; a row's JSON is read only when it is not cached.
    """
    from airflow.models.dag_version import DagVersion
    from airflow.models.serialized_dag import SerializedDagModel

    latest = (
        select(SerializedDagModel.id)
        .where(SerializedDagModel.dag_id == dag_id)
        .order_by(SerializedDagModel.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    wanted = SerializedDagModel.id == latest
    if dag_version_id is not None:
        wanted = wanted | (SerializedDagModel.dag_version_id == dag_version_id)
    rows = list(
        session.execute(
            select(
                SerializedDagModel.id,
                SerializedDagModel.dag_hash,
                SerializedDagModel.dag_version_id,
                DagVersion.version_number,
            )
            .join(DagVersion, DagVersion.id == SerializedDagModel.dag_version_id)
            .where(wanted)
        ).all()
    )
    rows.sort(key=lambda row: row.dag_version_id != dag_version_id)  # the try's own version first
    found: list[ParsedDag] = []
    for row in rows:
        key = (str(row.id), row.dag_hash)
        with _cache_lock:
            parsed = _cache.get(key)
            if parsed is not None:
                _cache.move_to_end(key)
        if parsed is None:
            model = session.get(SerializedDagModel, row.id)
            parsed = _parse(
                model.data if model is not None else None, version=f"DAG version {row.version_number}"
            )
            with _cache_lock:
                _cache[key] = parsed
                while len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
        found.append(parsed)
    return found


_versions: OrderedDict[UUID, ParsedDag] = OrderedDict()


def parsed_dag_of_try(session: Session, *, dag_version_id: UUID) -> ParsedDag | None:
    """The serialized DAG of a running try's DAG version (``None``: none is stored).

    Cached per DAG version, so a decision whose claims equal its own version's task reads no
    serialized DAG (and runs no query) once another try of that version was verified. Call it only
    for the version of a try that exists: Airflow changes a version's serialized DAG in place only
    while no task instance runs it (afterwards a change becomes a new version), so what is cached
    here never changes.
    """
    from airflow.models.dag_version import DagVersion
    from airflow.models.serialized_dag import SerializedDagModel

    with _cache_lock:
        parsed = _versions.get(dag_version_id)
        if parsed is not None:
            _versions.move_to_end(dag_version_id)
            return parsed
    model = session.scalar(
        select(SerializedDagModel).where(SerializedDagModel.dag_version_id == dag_version_id).limit(1)
    )
    if model is None:
        return None
    number = session.scalar(select(DagVersion.version_number).where(DagVersion.id == dag_version_id))
    parsed = _parse(model.data, version=f"DAG version {number}")
    with _cache_lock:
        _versions[dag_version_id] = parsed
        while len(_versions) > _CACHE_SIZE:
            _versions.popitem(last=False)
    return parsed


def parse_serialized(data: object, *, version: str) -> ParsedDag:
    """A serialized DAG's tasks as :func:`parsed_dags` reads them (``data``: the JSON Airflow
    stores, or a parsing result's ``LazyDeserializedDAG.data``)."""
    return _parse(data, version=version)


def _parse(data: object, *, version: str) -> ParsedDag:
    dag = data.get("dag") if isinstance(data, dict) else None
    if not isinstance(dag, dict):
        return ParsedDag(version=version, tasks={})
    tags = _plain(dag.get("tags")) or []
    dag_zone, problem = _tag_zone(tags if isinstance(tags, list) else [])
    recorded = _recorded_zones(dag.get("edge_info"))
    tasks: dict[str, ParsedTask] = {}
    for entry in dag.get("tasks") or []:
        fields = entry.get("__var", entry) if isinstance(entry, dict) else None
        if not isinstance(fields, dict) or not isinstance(fields.get("task_id"), str):
            continue
        task_id = fields["task_id"]
        partial_kwargs = fields.get("partial_kwargs")
        partial: dict[str, Any] = partial_kwargs if isinstance(partial_kwargs, dict) else {}
        expand = fields.get("expand_input")
        expanded = _expanded_keys(expand)
        inlets = [*_encoded(fields.get("inlets")), *_encoded(partial.get("inlets"))]
        outlets = [*_encoded(fields.get("outlets")), *_encoded(partial.get("outlets"))]
        if "outlets" in expanded or "*" in expanded:
            outlets += list(_walk_encoded(expand))
        assets_in = [item for item in inlets if item[0] == "asset"]
        zone = recorded[task_id] if recorded is not None and task_id in recorded else dag_zone
        tasks[task_id] = ParsedTask(
            zone=zone,
            zones_recorded=recorded is not None,
            zone_problem=problem,
            inputs=None
            if "inlets" in expanded or "*" in expanded
            else frozenset(InputRef.asset(uri) for _, uri in assets_in),
            other_inlets=len(inlets) - len(assets_in),
            outlets=frozenset(InputRef.asset(uri) for kind, uri in outlets if kind == "asset"),
            alias_outlets=any(kind == "asset_alias" for kind, _ in outlets),
            runs_sql="sql" in fields or "sql" in partial or "sql" in expanded,
        )
    return ParsedDag(version=version, tasks=tasks)


def _plain(value: object) -> object:
    """A serialized value without its ``{"__type": ..., "__var": ...}`` wrapper."""
    if isinstance(value, dict) and "__var" in value:
        return value["__var"]
    return value


def _tag_zone(tags: Iterable[object]) -> tuple[str | None, str | None]:
    from airflow_policyzones.zones import ZONE_TAG_PREFIX

    zones = sorted(
        {
            tag[len(ZONE_TAG_PREFIX) :]
            for tag in tags
            if isinstance(tag, str) and tag.startswith(ZONE_TAG_PREFIX)
        }
    )
    if len(zones) > 1:
        return None, f"the parsed DAG has several zone tags ({', '.join(zones)})"
    return (zones[0] if zones else None), None


def _recorded_zones(edge_info: object) -> dict[str, str | None] | None:
    if not isinstance(edge_info, dict):
        return None
    record = edge_info.get(ZONES_KEY)
    label = ((record or {}).get(ZONES_KEY) or {}).get("label") if isinstance(record, dict) else None
    if not isinstance(label, str):
        return None
    try:
        zones = json.loads(label)
    except ValueError:
        return None
    if not isinstance(zones, dict):
        return None
    return {str(key): value if isinstance(value, str) else None for key, value in zones.items()}


def _encoded(value: object) -> list[tuple[str, str]]:
    """``(kind, uri-or-name)`` of each serialized inlet or outlet in ``value`` (a list, possibly nested)."""
    items = _plain(value)
    if not isinstance(items, list):
        return []
    found: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, list):
            found += _encoded(item)
            continue
        kind = item.get("__type") if isinstance(item, dict) else None
        fields = item.get("__var") if isinstance(item, dict) else None
        if not isinstance(kind, str) or not isinstance(fields, dict):
            found.append(("other", repr(item)))
        elif kind == "asset":
            found.append(("asset", str(fields.get("uri") or fields.get("name"))))
        else:
            found.append((kind, str(fields.get("name") or fields.get("uri") or "")))
    return found


def _walk_encoded(value: object) -> Iterable[tuple[str, str]]:
    """Every serialized asset or alias anywhere in ``value`` (literal expansions of a mapped task)."""
    if isinstance(value, dict):
        kind, fields = value.get("__type"), value.get("__var")
        if kind in ("asset", "asset_alias") and isinstance(fields, dict):
            yield (
                ("asset", str(fields.get("uri") or fields.get("name")))
                if kind == "asset"
                else (
                    "asset_alias",
                    str(fields.get("name") or ""),
                )
            )
            return
        for item in value.values():
            yield from _walk_encoded(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_encoded(item)


def _expanded_keys(expand: object) -> set[str]:
    """The operator arguments a mapped task expands (``*``: ``expand_kwargs``, any of them)."""
    if not isinstance(expand, dict):
        return set()
    value = _plain(expand.get("value"))
    if expand.get("type") == "dict-of-lists" and isinstance(value, dict):
        return {str(key) for key in value}
    return {"*"}


# --- claims against what was parsed ------------------------------------------------------------------


def claims_difference(
    request: DecisionRequest, *, parsed: Sequence[ParsedDag], inputs: Iterable[InputRef]
) -> str | None:
    """How the worker's claims (zone, declared inlets) differ from the parsed task, or ``None``.

    ``inputs`` are the request's declared inputs, normalized. Equal to any of ``parsed`` (the
    try's DAG version, then the latest) is enough. The message shows both sides.
    """
    task_id = request.task.task_id
    claimed = frozenset(inputs)
    differences: list[str] = []
    for dag in parsed:
        task = dag.tasks.get(task_id)
        if task is None:
            differences.append(f"{dag.version} has no task {task_id!r}")
            continue
        problems: list[str] = []
        if task.zone_problem is not None:
            problems.append(task.zone_problem)
        elif request.zone != task.zone:
            unrecorded = "" if task.zones_recorded else " (no task zones were recorded at parse time)"
            problems.append(f"zone {_show(request.zone)}, parsed zone {_show(task.zone)}{unrecorded}")
        if task.inputs is not None and claimed != task.inputs:
            problems.append(f"inputs [{_refs(claimed)}], parsed inlets [{_refs(task.inputs)}]")
        if len(request.uncheckable) < task.other_inlets:
            problems.append(
                f"{len(request.uncheckable)} uncheckable inlets reported, parsed {task.other_inlets} "
                "inlets that are not Assets"
            )
        if not problems:
            return None
        differences.append(f"{dag.version}: " + "; ".join(problems))
    if not parsed:
        differences.append("the dag-processor has serialized no version of this DAG")
    return (
        f"the worker's claims for task {request.task.dag_id}.{task_id} differ from what the "
        f"dag-processor parsed: {' | '.join(differences)}"
    )


def _show(zone: str | None) -> str:
    return repr(zone) if zone is not None else "none"


def _refs(refs: Iterable[InputRef]) -> str:
    return ", ".join(sorted(ref.name for ref in refs))


# --- outputs ------------------------------------------------------------------------------------------


def refused_outputs(
    outputs: Mapping[InputRef, str], *, parsed: Sequence[ParsedDag], task_id: str
) -> list[str]:
    """Each output the try may not report, with why (empty: all may be recorded).

    ``declared``: an outlet of the parsed task. ``sql``: the parsed task runs SQL. ``alias``: the
    parsed task has an ``AssetAlias`` outlet. ``observed``: written through a hook while the try
    ran, reported by the try itself (the server cannot derive these).
    """
    tasks = [dag.tasks[task_id] for dag in parsed if task_id in dag.tasks]
    refused: list[str] = []
    for ref, source in outputs.items():
        if source == "observed":
            continue
        if source == "declared" and any(ref in task.outlets for task in tasks):
            continue
        if source == "sql" and any(task.runs_sql for task in tasks):
            continue
        if source == "alias" and any(task.alias_outlets for task in tasks):
            continue
        reason = {
            "declared": "is not an outlet of the task the dag-processor parsed",
            "sql": "is a SQL write, but the parsed task runs no SQL",
            "alias": "came through an AssetAlias, but the parsed task has no AssetAlias outlet",
        }.get(source, f"has an unknown source {source!r}")
        refused.append(f"{ref.name} ({source}) {reason}")
    return refused


def output_refs(outputs: Sequence[OutputSpec]) -> dict[InputRef, str]:
    """Each output once with how it became known."""
    found: dict[InputRef, str] = {}
    for output in outputs:
        ref = InputRef.asset(output.name) if output.namespace == "asset" else InputRef.table(output.name)
        found.setdefault(ref, output.source)
    return found
