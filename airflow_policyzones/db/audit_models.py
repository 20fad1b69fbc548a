"""The read models of the audit (version 1 of the read API): what the audit queries return, the
read API serves as JSON and the pages render.

Kept apart from the worker's wire format (:mod:`airflow_policyzones.wire`) so the two can
evolve separately: the worker contract is frozen by deployed workers, this one by API clients.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from airflow_policyzones.policy import PolicyEngine


Membership = Literal["member", "not_member", "unknown_zone"]
"""Whether the policy admits a DAG in its default zone (an unknown zone admits none)."""


class _Out(BaseModel):
    # Attribute docstrings are the fields' descriptions in the OpenAPI document.
    model_config = ConfigDict(frozen=True, populate_by_name=True, use_attribute_docstrings=True)


class TaskInstanceRef(_Out):
    """The task-instance try a row is about; ``ui_path`` is its page below the Airflow UI's base."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    ui_path: str = Field(description="Relative path of the task instance in the Airflow UI")


class ViolationOut(_Out):
    """One finding of a non-allow decision."""

    id: int
    decision_id: int
    task_instance: TaskInstanceRef
    zone: str | None
    mode: str | None
    outcome: str = Field(description="deny (task stopped), dry_run (task ran) or exempted (waived)")
    rule: str = Field(description="The first rule the finding breaks")
    rules: list[str]
    input: str | None = Field(description="The offending input; null for findings about the task")
    reason: str
    remediation: str
    exemption: str | None = Field(description="Ticket of the exemption that waived the finding")
    policy_version: str
    decided_at: datetime


class ViolationPage(_Out):
    """A page of violations, newest first; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[ViolationOut]
    next_cursor: str | None = Field(description="Opaque; null on the last page")


class DecisionInputOut(_Out):
    """One input with the labels it had when the decision was made, and how it became known."""

    namespace: str
    name: str
    labeled: bool = Field(description="False when no catalog entry matched")
    categories: list[str]
    consented: list[str] | None
    aggregated: bool | None
    origins: list[str] | None
    reclassified_by: list[str] | None
    source: str | None = Field(
        default=None,
        description="How the input became known: declared (an inlet), sql (the SQL operator's SQL) "
        "or observed (a hook or object-storage path reported it while the body ran); null for rows "
        "recorded before sources were",
    )


class DecisionOut(_Out):
    """One decision: a task-instance try, its zone, outcome and inputs."""

    id: int
    task_instance: TaskInstanceRef
    zone: str | None
    zone_source: str
    mode: str | None
    outcome: str
    allowed: bool
    policy_version: str
    source: str
    decided_at: datetime
    input_count: int
    finding_count: int
    violation_count: int
    inputs: list[DecisionInputOut]


class DecisionDetailOut(DecisionOut):
    """A decision with its findings (empty for an ``allow``)."""

    findings: list[ViolationOut]


class DecisionPage(_Out):
    """A page of decisions, newest first; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[DecisionOut]
    next_cursor: str | None = Field(description="Opaque; null on the last page")


class CategoryOut(_Out):
    name: str
    description: str


class ZoneOut(_Out):
    name: str
    purpose: str
    description: str
    allowed_categories: list[str]
    unlabeled: str
    requires_consent: bool
    aggregated_only: bool
    mode: str
    inflows: list[str] = Field(description="Zones whose data may flow in without a reclassifier")


class FlowOut(_Out):
    source: str = Field(serialization_alias="from")
    target: str = Field(serialization_alias="to")
    via: list[str] = Field(description="Reclassifiers the flow must pass through")
    description: str


class ReclassifierOut(_Out):
    name: str
    zone: str
    dag_id: str
    task_id: str
    categories: list[str] | None = Field(description="Output categories; null keeps the input's")
    consented: list[str]
    aggregated: bool
    description: str


class PolicyOut(_Out):
    """The active policy, as the decision service enforces it now."""

    version: str = Field(description="sha256 of the policy file: recorded on every decision")
    name: str
    require_zone: bool
    default_zone: str | None
    zones: list[ZoneOut]
    categories: list[CategoryOut]
    flows: list[FlowOut]
    reclassifiers: list[ReclassifierOut]


class LastDecisionOut(_Out):
    """The most recent decision recorded for a task (any run, map index or try)."""

    decision_id: int
    zone: str | None
    zone_source: str = Field(description="task, group, dag, default or none: where the zone came from")
    outcome: str
    decided_at: datetime
    policy_version: str


class TaskCoverageOut(_Out):
    """One task of a DAG's latest serialized version and the zone it runs in."""

    task_id: str
    zone: str | None = Field(
        description="The zone of the task's latest decision; for a task never decided, its DAG's "
        "default zone. Null: the task runs unzoned"
    )
    zone_basis: Literal["decision", "dag_default"]
    last_decision: LastDecisionOut | None = Field(description="Null: the task was never decided")


class DagCoverageOut(_Out):
    """A DAG, its default zone, whether the policy admits it there, and its tasks."""

    dag_id: str
    relative_fileloc: str | None = Field(description="The DAG file, relative to its bundle")
    tags: list[str]
    default_zone: str | None = Field(description="From the DAG's policyzone:<zone> tag, else the policy's")
    default_zone_source: Literal["tag", "policy", "none"]
    zone_tag_problem: str | None = Field(description="Why the DAG's zone tags were ignored, if they were")
    membership: Membership | None = Field(
        description="Whether the policy admits the DAG in its default zone; null when the DAG has no "
        "default zone or the policy does not load"
    )
    tasks: list[TaskCoverageOut]


class CoverageSummary(_Out):
    """Counts over the DAGs and tasks of the report (after its filters)."""

    dags: int
    tasks: int
    tasks_per_zone: dict[str, int] = Field(description="Tasks per zone, by the tasks' zone field")
    unzoned_tasks: int
    never_decided_tasks: int


class CoverageOut(_Out):
    """Which DAGs and tasks run in which zone, and which run in none."""

    policy_version: str | None = Field(description="The active policy's version; null if it does not load")
    policy_error: str | None = Field(description="Why the policy does not load (membership is then null)")
    summary: CoverageSummary
    dags: list[DagCoverageOut]


class UncheckedTryOut(_Out):
    """A task-instance try that started without a recorded decision: evidence of a bypass."""

    task_instance: TaskInstanceRef
    state: str | None
    start_date: datetime | None
    operator: str | None


class UncheckedOut(_Out):
    """Tries started since ``since`` without a decision, oldest first, at most ``limit`` of them."""

    since: datetime
    limit: int
    truncated: bool = Field(description="More tries matched: narrow the window (start after the last item)")
    items: list[UncheckedTryOut]


class BlindTaskOut(_Out):
    """A task whose successful tries had no known reads: the check had nothing to decide on."""

    dag_id: str
    task_id: str
    zone: str | None = Field(description="The zone of the last blind try; null: it ran unzoned")
    blind_tries: int = Field(description="Successful tries in the window without a single known read")
    tries_with_reads: int = Field(
        description="For contrast: successful tries of the task in the window whose decision had reads"
    )
    last_decision_id: int
    last_decided_at: datetime
    last_try: TaskInstanceRef = Field(description="The last blind try")


class BlindOut(_Out):
    """Tasks with blind tries decided since ``since``, by DAG and task id, at most ``limit``."""

    since: datetime
    limit: int
    truncated: bool = Field(description="More tasks matched: filter by DAG or zone")
    explanation: str = Field(description="What a blind try is, in one line")
    items: list[BlindTaskOut]


class LabelsOut(_Out):
    categories: list[str]
    consented: list[str]
    aggregated: bool
    origins: list[str] = Field(description="Zones whose data this holds")
    reclassified_by: list[str] = Field(description="Reclassifiers whose output this is")


class LabelEventOut(_Out):
    """One write of the asset by a task-instance try, and the labels that write gave it."""

    id: int
    recorded_at: datetime
    task_instance: TaskInstanceRef
    zone: str | None
    reclassifier: str | None
    decision_id: int = Field(
        description="The writing try's decision: its inputs are where the labels came from"
    )
    policy_version: str
    labels: LabelsOut


class AssetLabelsOut(_Out):
    """What was propagated to one asset: its labels at a moment, and the writes that made them."""

    namespace: str
    name: str
    at: datetime | None = Field(description="The moment the labels are for; null: now")
    labels: LabelsOut | None = Field(description="Union of every write up to `at`; null: nothing propagated")
    write_count: int = Field(description="Writes up to `at`, including those of DAGs the user may not read")
    history: list[LabelEventOut] = Field(description="Newest first, only writes by DAGs the user may read")
    truncated: bool


def policy_out(engine: PolicyEngine) -> PolicyOut:
    """The policy ``engine`` enforces, as the API, the zone map and the evidence report show it."""
    policy = engine.loaded.policy
    return PolicyOut(
        version=engine.version,
        name=policy.name,
        require_zone=policy.settings.require_zone,
        default_zone=policy.settings.default_zone,
        zones=[
            ZoneOut(
                name=name,
                purpose=zone.purpose,
                description=zone.description,
                allowed_categories=list(zone.allowed_categories),
                unlabeled=zone.unlabeled,
                requires_consent=zone.requires_consent,
                aggregated_only=zone.aggregated_only,
                mode=zone.mode,
                inflows=list(zone.inflows),
            )
            for name, zone in policy.zones.items()
        ],
        categories=[
            CategoryOut(name=name, description=category.description)
            for name, category in policy.categories.items()
        ],
        flows=[
            FlowOut(source=flow.source, target=flow.target, via=list(flow.via), description=flow.description)
            for flow in policy.flows
        ],
        reclassifiers=[
            ReclassifierOut(
                name=name,
                zone=item.zone,
                dag_id=item.dag_id,
                task_id=item.task_id,
                categories=None if item.outputs.categories is None else list(item.outputs.categories),
                consented=list(item.outputs.consented),
                aggregated=item.outputs.aggregated,
                description=item.description,
            )
            for name, item in policy.reclassifiers.items()
        ],
    )
