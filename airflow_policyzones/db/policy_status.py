"""Which policy each component has loaded, and what is wrong when one has not.

* The **api-server** (decision service) loads the policy itself: :func:`local_policy_state`.
* The **dag-processor** cannot write to the metadata database from its parsing child, so the
  cluster policy records the policy version it validated a DAG against *in the DAG itself*: an
  ``edge_info`` entry under a key no task id can take (task ids never contain ``:``), which
  Airflow serializes with the DAG and never shows (edge labels are only looked up between real
  tasks). :func:`dag_processor_states` reads it back from each DAG's latest serialized version.

:func:`policy_status` puts both together with the warnings an operator must see: a policy that
does not load (tasks fail closed and retry until it does), and components that disagree on the
version. The health endpoint, every Policy Zones page and ``policyzones status`` show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_policyzones.policy.errors import PolicyError
from airflow_policyzones.policy.loader import policy_version

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

EDGE_KEY = "policyzones:policy"
"""The ``edge_info`` key the dag-processor's record lives under (``edge_info[KEY][KEY]["label"]``)."""

MAX_ERROR_CHARS = 600
EXAMPLE_DAGS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyState:
    """One component's view of the policy: the version it loaded, or why it could not.

    ``version`` is the hash of the file's bytes when they could be read (also for an invalid
    file, so that two components reading the same broken file agree); ``loaded`` says whether it
    validated.
    """

    version: str | None
    loaded: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "loaded": self.loaded, "error": self.error}

    def label(self) -> str:
        """Compact JSON, as stored in the serialized DAG."""
        payload: dict[str, Any] = {"version": self.version, "loaded": self.loaded}
        if self.error:
            payload["error"] = self.error
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_label(cls, label: str | None) -> PolicyState | None:
        if not label:
            return None
        try:
            payload = json.loads(label)
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        version = payload.get("version")
        error = payload.get("error")
        return cls(
            version=version if isinstance(version, str) else None,
            loaded=payload.get("loaded") is True,
            error=error if isinstance(error, str) else None,
        )


def short(version: str | None) -> str:
    """``sha256:0123456789ab`` (12 hex digits), or ``none``."""
    if version is None:
        return "none"
    return "sha256:" + version.removeprefix("sha256:")[:12]


def describe_error(error: PolicyError) -> str:
    """The first problems of a policy that does not load, located, with their fixes (bounded)."""
    text = error.format()
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def file_version(path: str) -> str | None:
    """The version of the file's bytes, or ``None`` when it cannot be read."""
    if not path:
        return None
    try:
        return policy_version(Path(path).read_bytes())
    except OSError:
        return None


def local_policy_state(policy_file: str | None = None) -> PolicyState:
    """This process's policy (``[policyzones] policy_file`` unless given), through the engine cache."""
    from airflow_policyzones.config import get_engine
    from airflow_policyzones.config import policy_file as configured_file

    path = configured_file() if policy_file is None else policy_file
    try:
        engine = get_engine(path)
    except PolicyError as error:
        return PolicyState(version=file_version(path), loaded=False, error=describe_error(error))
    return PolicyState(version=engine.version, loaded=True)


# --- the dag-processor's record -------------------------------------------------------------------


def record_on_dag(dag: Any, *, state: PolicyState) -> None:
    """Record in ``dag`` (serialized with it) the policy the dag-processor validated it against, and
    the zone of each task zoned on itself or its group (``verification.record_task_zones``: the
    decision service compares what a worker claims with it)."""
    from airflow_policyzones.db.verification import record_task_zones

    edge_info = getattr(dag, "edge_info", None)
    if isinstance(edge_info, dict):
        edge_info[EDGE_KEY] = {EDGE_KEY: {"label": state.label()}}
    record_task_zones(dag)


def recorded_on_dag(dag: Any) -> PolicyState | None:
    """What :func:`record_on_dag` left on a DAG (parsed or deserialized), if anything."""
    edge_info = getattr(dag, "edge_info", None) or {}
    return PolicyState.from_label(((edge_info.get(EDGE_KEY) or {}).get(EDGE_KEY) or {}).get("label"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorState:
    """DAGs the dag-processor last serialized with one policy state."""

    state: PolicyState | None
    """``None``: DAGs serialized without a record (enforcement off there, or before this version)."""
    dag_count: int
    example_dag_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            **(
                self.state.to_dict()
                if self.state is not None
                else {"version": None, "loaded": None, "error": None}
            ),
            "dag_count": self.dag_count,
            "example_dag_ids": list(self.example_dag_ids),
        }


def dag_processor_states(*, session: Session) -> list[ProcessorState]:
    """The dag-processor's records over the latest serialized version of every active DAG.

    One query; the record is read from the JSON in the database (no DAG is deserialized). Rows
    Airflow stored compressed (``[core] compress_serialized_dags``) are read in Python.
    """
    import sqlalchemy as sa
    from airflow.models.dag import DagModel
    from airflow.models.dag_version import DagVersion
    from airflow.models.serialized_dag import SerializedDagModel

    latest = (
        sa.select(DagVersion.dag_id, sa.func.max(DagVersion.version_number).label("version_number"))
        .join(SerializedDagModel, SerializedDagModel.dag_version_id == DagVersion.id)
        .group_by(DagVersion.dag_id)
        .subquery()
    )
    data = SerializedDagModel.__table__.c.data
    label = data[("dag", "edge_info", EDGE_KEY, EDGE_KEY, "label")].as_string()
    rows = session.execute(
        sa.select(
            SerializedDagModel.dag_id, label, SerializedDagModel.__table__.c.data_compressed.is_not(None)
        )
        .join(DagVersion, SerializedDagModel.dag_version_id == DagVersion.id)
        .join(
            latest,
            (DagVersion.dag_id == latest.c.dag_id) & (DagVersion.version_number == latest.c.version_number),
        )
        .join(DagModel, DagModel.dag_id == SerializedDagModel.dag_id)
        .where(DagModel.is_stale.is_(False))
        .order_by(SerializedDagModel.dag_id)
    ).all()
    groups: dict[str | None, list[str]] = {}
    compressed: list[str] = []
    for dag_id, text, is_compressed in rows:
        if is_compressed:
            compressed.append(dag_id)
        else:
            groups.setdefault(text, []).append(dag_id)
    if compressed:
        for row in SerializedDagModel.get_latest_serialized_dags(dag_ids=compressed, session=session):
            edge_info = ((row.data or {}).get("dag") or {}).get("edge_info") or {}
            text = ((edge_info.get(EDGE_KEY) or {}).get(EDGE_KEY) or {}).get("label")
            groups.setdefault(text, []).append(row.dag_id)
    states = [
        ProcessorState(
            state=PolicyState.from_label(text),
            dag_count=len(dag_ids),
            example_dag_ids=tuple(sorted(dag_ids)[:EXAMPLE_DAGS]),
        )
        for text, dag_ids in groups.items()
    ]
    return sorted(states, key=lambda item: -item.dag_count)


# --- together -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyStatus:
    """The policy as every component sees it, and what an operator must be told."""

    policy_file: str
    api_server: PolicyState
    dag_processor: list[ProcessorState] = field(default_factory=list)
    dag_processor_error: str | None = None
    """Why the dag-processor's records could not be read (the metadata database), if so."""

    @property
    def problems(self) -> list[str]:
        """Errors: a component has no valid policy, so tasks that need a decision fail and retry."""
        problems: list[str] = []
        if not self.api_server.loaded:
            problems.append(
                f"The api-server cannot load the zone policy {self.policy_file or '(none configured)'}, so "
                "every task that needs a decision fails closed (its body does not run) and is retried; "
                "runs resume by themselves once the file is fixed. DAGs stay listed and schedulable.\n"
                f"{self.api_server.error}"
            )
        for group in self.dag_processor:
            if group.state is not None and not group.state.loaded:
                problems.append(
                    f"The dag-processor could not load the zone policy when it last parsed "
                    f"{_dags(group)}: their zone annotations are not validated until it does (tasks "
                    f"are still checked when they run).\n{group.state.error}"
                )
        return problems

    @property
    def warnings(self) -> list[str]:
        """Components that disagree on the policy version (each message names both versions)."""
        warnings: list[str] = []
        mine = self.api_server.version
        for group in self.dag_processor:
            if group.state is None or group.state.version == mine:
                continue
            warnings.append(
                f"Policy version mismatch: the dag-processor validated {_dags(group)} against "
                f"{short(group.state.version)}, the api-server decides with {short(mine)}. The "
                "dag-processor picks up the new file when it next parses those DAG files; if it does not, "
                "check that every component mounts the same [policyzones] policy_file."
            )
        return warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_file": self.policy_file,
            "api_server": self.api_server.to_dict(),
            "dag_processor": [group.to_dict() for group in self.dag_processor],
            "dag_processor_error": self.dag_processor_error,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def _dags(group: ProcessorState) -> str:
    examples = ", ".join(group.example_dag_ids)
    more = (
        f" and {group.dag_count - len(group.example_dag_ids)} more"
        if group.dag_count > len(group.example_dag_ids)
        else ""
    )
    return f"{group.dag_count} DAG{'s' if group.dag_count != 1 else ''} ({examples}{more})"


def policy_status(*, session: Session | None, policy_file: str | None = None) -> PolicyStatus:
    """This process's policy and, with a ``session``, the dag-processor's records."""
    from airflow_policyzones.config import policy_file as configured_file

    path = configured_file() if policy_file is None else policy_file
    api_server = local_policy_state(path)
    if session is None:
        return PolicyStatus(policy_file=path, api_server=api_server)
    try:
        groups = dag_processor_states(session=session)
    except Exception as error:  # the status must render even when the database does not answer
        session.rollback()
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return PolicyStatus(policy_file=path, api_server=api_server, dag_processor_error=reason)
    return PolicyStatus(policy_file=path, api_server=api_server, dag_processor=groups)
