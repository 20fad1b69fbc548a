"""The try as Airflow recorded it: the task instance an execution token or a request names, read
from Airflow's own tables, and why it is not a running try.

Every check the api-server makes on behalf of a try starts here: the relay and the credential and
success guards find the try their execution token names (:func:`lookup_try`, :func:`read_try`:
one query, a row per DAG tag), the decision service verifies the try a request names
(:func:`find_try`, :func:`try_problem`).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from sqlalchemy import Executable, and_, bindparam, select

from airflow_policyzones.db.models import CREDENTIALS_ONLY, PolicyZonesDecision
from airflow_policyzones.policy.engine import TaskContext
from airflow_policyzones.wire import TaskInstanceIdentity
from airflow_policyzones.zones import ZONE_TAG_PREFIX

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

RUNNING = "running"

TryProblem = Literal["missing", "not_started", "other_try", "not_running"]


@dataclass(frozen=True, slots=True)
class TryRecord:
    """A task instance as Airflow recorded it: its current try, state and DAG version."""

    try_number: int
    state: str | None
    dag_version_id: UUID | None


def find_try(session: Session, identity: TaskInstanceIdentity) -> TryRecord | None:
    """The task instance ``identity`` names (any try), or ``None`` (one indexed query)."""
    from airflow.models.taskinstance import TaskInstance

    found = session.execute(
        select(TaskInstance.try_number, TaskInstance.state, TaskInstance.dag_version_id).where(
            TaskInstance.dag_id == identity.dag_id,
            TaskInstance.task_id == identity.task_id,
            TaskInstance.run_id == identity.run_id,
            TaskInstance.map_index == identity.map_index,
        )
    ).first()
    if found is None:
        return None
    try_number, state, dag_version_id = found
    return TryRecord(try_number=try_number, state=_state(state), dag_version_id=dag_version_id)


class FoundTry(NamedTuple):
    """The try an execution token names, as :func:`lookup_try` reads it in one query."""

    identity: TaskInstanceIdentity
    task: TaskContext
    """What zone membership is decided on (the DAG's tags, file and owners)."""
    recorded: tuple[str | None, str] | None
    """The ``(zone, zone_source)`` of its decision row, ``None`` when it has none."""
    record: TryRecord
    allowed: bool
    """Whether its pre-execute check recorded a decision that let it run (and nothing since made
    that decision a refusal)."""


def lookup_try(session: Session | Connection, ti_id: str) -> FoundTry | None:
    """The try whose task instance id is ``ti_id`` (an execution token's ``sub``); ``None`` for no
    such task instance. One query (a row per DAG tag)."""
    try:
        key = uuid.UUID(ti_id)
    except ValueError:
        return None
    rows = session.execute(_try_statement(), {"ti_id": key}).all()
    if not rows:
        return None
    found = rows[0]
    identity = TaskInstanceIdentity(
        dag_id=found.dag_id,
        task_id=found.task_id,
        run_id=found.run_id,
        map_index=found.map_index,
        try_number=found.try_number,
    )
    task = dag_task_context(
        dag_id=found.dag_id,
        task_id=found.task_id,
        relative_fileloc=found.relative_fileloc,
        owners=found.owners,
        tags=[row.name for row in rows if row.name is not None],
    )
    return FoundTry(
        identity=identity,
        task=task,
        recorded=(found.zone, found.zone_source) if found.id is not None else None,
        record=TryRecord(
            try_number=found.try_number, state=_state(found.state), dag_version_id=found.dag_version_id
        ),
        allowed=found.id is not None and found.claims_digest != CREDENTIALS_ONLY and bool(found.allowed),
    )


def read_try(ti_id: str) -> FoundTry | None:
    """:func:`lookup_try` on a pooled connection of Airflow's engine instead of in a session: the
    statement alone, in the driver's autocommit mode where that costs no round trip (psycopg2:
    the pool's ping and the select, without BEGIN and ROLLBACK). For a read that nothing follows
    in the same transaction."""
    from airflow import settings

    if settings.engine is None:
        raise RuntimeError("Airflow's database engine is not configured (settings.engine is None)")
    with settings.engine.connect() as connection, _driver_autocommit(connection):
        return lookup_try(connection, ti_id)


@contextlib.contextmanager
def _driver_autocommit(connection: Connection) -> Iterator[None]:
    """psycopg2's ``autocommit`` attribute, set and restored the way SQLAlchemy's own pre-ping does
    (the isolation-level execution option would send ``SET`` statements both ways); other drivers
    keep their transaction."""
    dbapi = connection.connection.dbapi_connection
    if connection.dialect.driver != "psycopg2" or dbapi is None or dbapi.autocommit:
        yield
        return
    dbapi.autocommit = True
    try:
        yield
    finally:
        if not dbapi.closed:
            dbapi.autocommit = False


@functools.cache
def _try_statement() -> Executable:
    """Built once: constructing this five-table select costs more than running it."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.taskinstance import TaskInstance

    decision = PolicyZonesDecision
    return (
        select(
            TaskInstance.dag_id,
            TaskInstance.task_id,
            TaskInstance.run_id,
            TaskInstance.map_index,
            TaskInstance.try_number,
            TaskInstance.state,
            TaskInstance.dag_version_id,
            DagModel.relative_fileloc,
            DagModel.owners,
            decision.id,
            decision.zone,
            decision.zone_source,
            decision.allowed,
            decision.claims_digest,
            DagTag.name,
        )
        .outerjoin(DagModel, DagModel.dag_id == TaskInstance.dag_id)
        .outerjoin(DagTag, DagTag.dag_id == TaskInstance.dag_id)
        .outerjoin(
            decision,
            and_(
                decision.dag_id == TaskInstance.dag_id,
                decision.task_id == TaskInstance.task_id,
                decision.run_id == TaskInstance.run_id,
                decision.map_index == TaskInstance.map_index,
                decision.try_number == TaskInstance.try_number,
            ),
        )
        .where(TaskInstance.id == bindparam("ti_id"))
    )


def dag_task_context(
    *, dag_id: str, task_id: str, relative_fileloc: str | None, owners: str | None, tags: Iterable[str]
) -> TaskContext:
    """Membership identity from a ``dag`` row's columns: shared by the decision service, the
    credential check and the coverage report, so that all judge a DAG's membership from the same
    facts."""
    return TaskContext(
        dag_id=dag_id,
        task_id=task_id,
        dag_file=relative_fileloc or None,
        tags=frozenset(tags),
        owners=frozenset(owner.strip() for owner in (owners or "").split(",") if owner.strip()),
    )


def try_zone(found: FoundTry, *, session: Session | None = None) -> tuple[str | None, str]:
    """The zone a try's requests are decided in, and where it comes from: the zone of its
    decision when that decision let it run (its claims were verified against the parsed DAG);
    otherwise — before its pre-execute check, or when the check refused it (a zone claim that
    differs from the parsed task is recorded as claimed) — the zone the dag-processor parsed for
    its task in the try's DAG version (a task-level zone set with ``set_zone`` / ``ZoneGroup``,
    else the DAG's zone tag); without that, the DAG's zone tag.

    Only the second case reads (the serialized DAG, cached per DAG version), in ``session`` or,
    without one, in a session of its own."""
    from airflow_policyzones.db.verification import parsed_dag_of_try

    if found.recorded is not None and found.allowed:
        return found.recorded
    if found.record.dag_version_id is not None:
        if session is None:
            from airflow.utils.session import create_session

            with create_session() as own:
                return try_zone(found, session=own)
        parsed = parsed_dag_of_try(session, dag_version_id=found.record.dag_version_id)
        task = parsed.tasks.get(found.identity.task_id) if parsed is not None else None
        if task is not None:
            if task.zone is None:
                return None, "none"
            return task.zone, "dag" if task.zone == dag_zone(found.task.tags) else "task"
    zone = dag_zone(found.task.tags)
    return zone, "dag" if zone is not None else "none"


def dag_zone(tags: frozenset[str]) -> str | None:
    """The DAG's zone tag, as the pre-execute check reads it; several tags: none (decided as such
    by the engine only if the policy has no default zone — the DAG is an import error anyway)."""
    zones = sorted(tag.removeprefix(ZONE_TAG_PREFIX) for tag in tags if tag.startswith(ZONE_TAG_PREFIX))
    return zones[0] if len(zones) == 1 else None


def _state(state: object) -> str | None:
    value = getattr(state, "value", state)
    return None if value is None else str(value)


def try_problem(
    identity: TaskInstanceIdentity, found: TryRecord | None, *, what: str
) -> tuple[TryProblem, str] | None:
    """Why ``identity`` is not a running try (``None``: it is), as a kind and a message; ``what``
    names what is refused (``"a decision"``, ``"outputs"``)."""
    where = describe(identity)
    if found is None:
        return "missing", (
            f"no task instance {where}: {what} is recorded only for task instances that exist in "
            "this Airflow deployment"
        )
    if identity.try_number < 1 or found.try_number < 1:
        return "not_started", (
            f"task instance {where} is at try {found.try_number}, which has never been started "
            f"(a try is numbered 1 or higher once it is queued to run): {what} is refused"
        )
    if found.try_number != identity.try_number:
        return "other_try", (
            f"task instance {where} is at try {found.try_number}, not {identity.try_number}: {what} "
            "can only be recorded for the current try"
        )
    if found.state != RUNNING:
        return "not_running", (
            f"task instance {where} try {found.try_number} is {found.state or 'in no state'}, not "
            f"running: {what} is recorded only for a try its worker has started and not finished"
        )
    return None


def describe(identity: TaskInstanceIdentity) -> str:
    return (
        f"dag_id={identity.dag_id!r} task_id={identity.task_id!r} run_id={identity.run_id!r} "
        f"map_index={identity.map_index}"
    )
