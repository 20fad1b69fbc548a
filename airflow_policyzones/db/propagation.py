"""Label propagation at run time: restrictions travel with the data (see the README section).

After a try succeeds, the worker reports what it wrote; the server gives each output the labels
of what the try read — the effective labels recorded with its decision — plus the try's zone as
origin, or, for the policy's reclassifier task, the labels the policy declares
(:mod:`airflow_policyzones.policy.lineage` has the rules). Every write is appended to the
history; a summary row per asset (the union of its history) is what later decisions read, one
indexed row per input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from airflow_policyzones.db.models import (
    PolicyZonesAssetLabelEvent,
    PolicyZonesAssetLabels,
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesReclassification,
    decision_of_try,
    inputs_by_position,
)
from airflow_policyzones.db.tries import describe, find_try, try_problem
from airflow_policyzones.db.verification import parsed_dags, refused_outputs
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.policy.engine import AssetLabels, InputRef, LabeledInput
from airflow_policyzones.policy.lineage import (
    ReclassifierSpec,
    effective_labels,
    output_labels,
    reclassify,
    union_labels,
)
from airflow_policyzones.wire import OutputLabels, OutputSpec, OutputsRequest, OutputsResponse

log = logging.getLogger(__name__)


class OutputsRefused(Exception):
    """The outputs of this try cannot be recorded (nothing is): no decision, a denied try, another
    report, outputs the server cannot account for, or a try that is not running."""


class OutputsOfUnknownTry(OutputsRefused):
    """No such task instance at that try."""


def with_propagated(
    session: Session, engine: PolicyEngine, labeled: Sequence[LabeledInput]
) -> list[LabeledInput]:
    """Inputs with their effective labels: catalog labels united with propagated ones (one query)."""
    propagated = propagated_labels(session, [item.ref for item in labeled])
    if not propagated:
        return list(labeled)
    zones = engine.reclassifier_zones
    return [
        LabeledInput(
            item.ref,
            effective_labels(
                catalog=item.labels, propagated=propagated.get(item.ref), reclassifier_zones=zones
            ),
        )
        for item in labeled
    ]


LOOKUP_BATCH = 1_000


def propagated_labels(session: Session, refs: Iterable[InputRef]) -> dict[InputRef, AssetLabels]:
    """The current propagated labels of ``refs`` that have any: one indexed query per 1,000."""
    wanted: dict[tuple[str, str], InputRef] = {(ref.namespace, ref.name): ref for ref in refs}
    keys = list(wanted)
    found: dict[InputRef, AssetLabels] = {}
    for start in range(0, len(keys), LOOKUP_BATCH):
        rows = session.scalars(
            select(PolicyZonesAssetLabels).where(
                tuple_(PolicyZonesAssetLabels.namespace, PolicyZonesAssetLabels.name).in_(
                    keys[start : start + LOOKUP_BATCH]
                )
            )
        )
        found.update((wanted[row.namespace, row.name], labels_of(row)) for row in rows)
    return found


MAX_PATH_HOPS = 8


@dataclass(frozen=True, slots=True)
class DerivationHop:
    """One asset on a derivation path and the write that gave it its labels (``None``: the
    labeled source the path ends at); ``cycle``: the path came back to an asset it had passed."""

    ref: InputRef
    write: PolicyZonesAssetLabelEvent | None
    cycle: bool = False


def derivation_path(
    session: Session, ref: InputRef, *, before: datetime | None = None, max_hops: int = MAX_PATH_HOPS
) -> list[DerivationHop]:
    """How a derived input came to carry its labels: the chain of writes back to labeled data.

    Follows, from ``ref``, the most recent write recorded for it (at or before ``before``, if
    given) to the inputs of the try that wrote it, and so on (the first labeled input at each
    hop), newest write first. Empty for an input nothing was propagated to.
    """
    hops: list[DerivationHop] = []
    seen: set[tuple[str, str]] = set()
    current: InputRef | None = ref
    while current is not None and len(hops) <= max_hops:
        key = (current.namespace, current.name)
        if key in seen:
            hops.append(DerivationHop(current, None, cycle=True))
            break
        seen.add(key)
        query = (
            select(PolicyZonesAssetLabelEvent)
            .where(PolicyZonesAssetLabelEvent.namespace == current.namespace)
            .where(PolicyZonesAssetLabelEvent.name == current.name)
        )
        if before is not None:
            query = query.where(PolicyZonesAssetLabelEvent.recorded_at <= before)
        event = session.scalars(
            query.order_by(
                PolicyZonesAssetLabelEvent.recorded_at.desc(), PolicyZonesAssetLabelEvent.id.desc()
            ).limit(1)
        ).first()
        if event is None:
            if hops:
                hops.append(DerivationHop(current, None))
            break
        hops.append(DerivationHop(current, event))
        source = session.scalars(
            select(PolicyZonesDecisionInput)
            .where(PolicyZonesDecisionInput.decision_id == event.decision_id)
            .where(PolicyZonesDecisionInput.labeled.is_(True))
            .order_by(PolicyZonesDecisionInput.position)
            .limit(1)
        ).first()
        current = None if source is None else _ref(source.namespace, source.name)
    return hops


def render_derivation(hops: Sequence[DerivationHop]) -> str | None:
    """A path as findings quote it, e.g. ``spend_segments (written by
    ads_spend_segments.segment_spenders in ads_optimization) ← bid_features (written by
    ads_optimization_daily.build_bid_features in ads_optimization) ← s3://lake/raw/purchases/daily``;
    ``None`` for an empty path."""
    steps = []
    for hop in hops:
        if hop.cycle:
            steps.append(f"{hop.ref} (cycle)")
        elif hop.write is None:
            steps.append(str(hop.ref))
        else:
            write = hop.write
            steps.append(
                f"{hop.ref} (written by {write.dag_id}.{write.task_id} in {write.zone or 'no zone'})"
            )
    return " ← ".join(steps) if steps else None


def explain_derivation(session: Session, ref: InputRef, *, max_hops: int = MAX_PATH_HOPS) -> str | None:
    """How a derived input came to carry its labels (:func:`derivation_path` as text, see
    :func:`render_derivation`); ``None`` for an input nothing was propagated to."""
    return render_derivation(derivation_path(session, ref, max_hops=max_hops))


def record_outputs(
    *,
    session: Session,
    engine: PolicyEngine,
    request: OutputsRequest,
    now: datetime | None = None,
    source: Literal["api", "in_process"] = "api",
    verify: bool = True,
) -> OutputsResponse:
    """Record what a succeeded try wrote and the labels it gave it, once per try.

    The labels come from the try's recorded decision (its inputs' effective labels and zone),
    never from the request: a worker names its outputs, not their labels.

    The server verifies before it records (``source="api"``; ``verify=False`` is for the
    benchmark only): the try must exist and be running at that try number, 1 or higher (404 when
    there is no such task instance, else 409), have a decision that let it run, and every output
    must be one the server can account for — an outlet of the task the dag-processor serialized
    (``declared``), a SQL write of a task that runs SQL (``sql``), an asset of a task with an
    ``AssetAlias`` outlet (``alias``), or what the try's hooks wrote (``observed``). One output it
    cannot account for refuses the whole report (409, naming each): nothing is labeled, the try
    fails and is retried. A try reports once: the same report again gets the recorded outputs
    back (``already_recorded``) and adds nothing; a different one is refused (409).
    """
    identity = request.task
    if source == "api" and verify:
        found = find_try(session, identity)
        problem = try_problem(identity, found, what="outputs")
        if problem is not None:
            kind, message = problem
            raise (OutputsOfUnknownTry if kind == "missing" else OutputsRefused)(message)
    query = decision_of_try(**identity.model_dump())
    decision = session.scalars(query.with_for_update() if verify else query).one_or_none()
    if decision is None:
        raise OutputsRefused(
            "no decision was recorded for this try, so what it read is unknown: outputs are only "
            "recorded for tries that were checked before they ran"
        )
    if not decision.allowed:
        raise OutputsRefused("this try was denied and cannot have written anything")
    moment = now or datetime.now(timezone.utc)
    sources = _sources(request.outputs)
    existing = _events_of(session, decision.id)
    if existing:
        if verify and {(event.namespace, event.name) for event in existing} != {
            (ref.namespace, ref.name) for ref in sources
        }:
            session.rollback()
            raise OutputsRefused(
                f"the outputs of {describe(identity)} try {identity.try_number} were already reported "
                f"({', '.join(sorted(event.name for event in existing))}): a try reports what it wrote once"
            )
        return _response(decision.id, existing, already_recorded=True)
    if source == "api" and verify:
        version = found.dag_version_id if found is not None else None
        parsed = parsed_dags(session, dag_id=identity.dag_id, dag_version_id=version)
        refused = refused_outputs(sources, parsed=parsed, task_id=identity.task_id)
        if refused:
            session.rollback()
            raise OutputsRefused(
                f"{describe(identity)} try {identity.try_number} reported outputs the server cannot account "
                f"for, so none is recorded: {'; '.join(refused)}"
            )
    outputs = list(sources)
    inputs = _decision_inputs(decision)
    zones = engine.reclassifier_zones
    name = engine.reclassifier_for(dag_id=decision.dag_id, task_id=decision.task_id)
    spec = ReclassifierSpec.from_policy(policy=engine.loaded.policy, name=name) if name else None
    if spec is not None and spec.zone != decision.zone:
        spec = None  # a reclassifier changes labels only in its own zone; the decision said so
    if spec is not None and name is not None and not _in_bound_file(session, engine, name, decision):
        spec = None  # another file defines the reclassifier's dag_id: no pass
    labels = output_labels(
        zone=decision.zone,
        inputs=[item.labels for item in inputs],
        reclassifier=spec,
        reclassifier_zones=zones,
    )
    for attempt in range(3):
        try:
            events = _add_events(
                session,
                decision,
                outputs,
                labels,
                sources=sources,
                reclassifier=name if spec else None,
                zones=zones,
                at=moment,
            )
            if spec is not None and outputs:
                session.add(_reclassification(decision, spec, inputs, outputs, zones=zones, at=moment))
            session.commit()
            return _response(decision.id, events, already_recorded=False)
        except IntegrityError:
            # Another writer created an asset's summary row (or this try's events) meanwhile.
            session.rollback()
            decision = session.get_one(PolicyZonesDecision, decision.id)
            existing = _events_of(session, decision.id)
            if existing or attempt == 2:
                if not existing:
                    raise
                return _response(decision.id, existing, already_recorded=True)
    raise AssertionError("unreachable")


def _in_bound_file(session: Session, engine: PolicyEngine, name: str, decision: PolicyZonesDecision) -> bool:
    """Whether the try of reclassifier ``name`` ran the DAG from the file the policy binds it to
    (``dag_file``; True when it binds none).

    Read from what Airflow recorded, never from the worker: both the file of the DAG version the
    task instance runs (its serialized DAG) and the DAG's current file (``dag.relative_fileloc``,
    the path a worker is sent to load) must be that file. A second file defining the same dag_id
    flips the DAG's file to itself when parsed, and with a different structure gets its own
    DAG version.
    """
    expected = engine.loaded.policy.reclassifiers[name].dag_file
    if expected is None:
        return True
    files = recorded_dag_files(
        session,
        dag_id=decision.dag_id,
        task_id=decision.task_id,
        run_id=decision.run_id,
        map_index=decision.map_index,
    )
    if set(files) == {expected}:
        return True
    log.warning(
        "policyzones: %s.%s (run %s) is named by reclassifier %r, which the policy binds to DAG file %r, "
        "but Airflow recorded %s for it: no pass, its outputs keep the labels of what it read",
        decision.dag_id,
        decision.task_id,
        decision.run_id,
        name,
        expected,
        " and ".join(repr(item) for item in files) or "no file",
    )
    return False


def recorded_dag_files(
    session: Session, *, dag_id: str, task_id: str, run_id: str, map_index: int
) -> tuple[str | None, str | None]:
    """The DAG files (relative to their bundle) Airflow recorded for a task instance: that of the
    DAG version it runs (serialized by the dag-processor) and the DAG's current one (``dag``
    table); ``None`` for one it did not record."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance

    version = session.scalar(
        select(TaskInstance.dag_version_id).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.task_id == task_id,
            TaskInstance.run_id == run_id,
            TaskInstance.map_index == map_index,
        )
    )
    serialized = (
        session.scalar(select(SerializedDagModel).where(SerializedDagModel.dag_version_id == version))
        if version is not None
        else None
    )
    data = serialized.data if serialized is not None else None
    dag = data.get("dag") if isinstance(data, dict) else None
    versioned = dag.get("relative_fileloc") if isinstance(dag, dict) else None
    current = session.scalar(select(DagModel.relative_fileloc).where(DagModel.dag_id == dag_id))
    return (
        versioned if isinstance(versioned, str) and versioned else None,
        current if isinstance(current, str) and current else None,
    )


def label_observed_writes(
    *,
    session: Session,
    engine: PolicyEngine,
    decision: PolicyZonesDecision,
    outputs: Sequence[OutputSpec],
    now: datetime,
) -> None:
    """Label at once what a running try wrote through a hook, from what it read so far.

    For a try refused while it ran: its statements already ran (and may have committed), and a
    refused try never reports outputs, so what they wrote must not stay unlabeled for the next
    reader. Reclassifier tries are left to their own outputs report (their pass is for the whole
    try). Adds to the session; the caller commits.
    """
    if not outputs or engine.reclassifier_for(dag_id=decision.dag_id, task_id=decision.task_id):
        return
    sources = _sources(outputs)
    recorded = {(event.namespace, event.name) for event in _events_of(session, decision.id)}
    pending = [ref for ref in sources if (ref.namespace, ref.name) not in recorded]
    if not pending:
        return
    zones = engine.reclassifier_zones
    labels = output_labels(
        zone=decision.zone,
        inputs=[item.labels for item in _decision_inputs(decision)],
        reclassifier=None,
        reclassifier_zones=zones,
    )
    _add_events(session, decision, pending, labels, sources=sources, reclassifier=None, zones=zones, at=now)


def _sources(outputs: Sequence[OutputSpec]) -> dict[InputRef, str]:
    """Each output once, with how it became known (the first way: declared ones come first)."""
    sources: dict[InputRef, str] = {}
    for output in outputs:
        sources.setdefault(_ref(output.namespace, output.name), output.source)
    return sources


def _add_events(
    session: Session,
    decision: PolicyZonesDecision,
    outputs: Sequence[InputRef],
    labels: AssetLabels,
    *,
    sources: dict[InputRef, str],
    reclassifier: str | None,
    zones: Mapping[str, str],
    at: datetime,
) -> list[PolicyZonesAssetLabelEvent]:
    """Append one history event per output and fold the labels into its current labels."""
    events = [
        _event(decision, ref, labels, reclassifier=reclassifier, source=sources[ref], at=at)
        for ref in outputs
    ]
    session.add_all(events)
    for ref in outputs:
        _merge_current(session, ref, labels, zones=zones, at=at)
    return events


def _events_of(session: Session, decision_id: int) -> Sequence[PolicyZonesAssetLabelEvent]:
    return session.scalars(
        select(PolicyZonesAssetLabelEvent).where(PolicyZonesAssetLabelEvent.decision_id == decision_id)
    ).all()


def _ref(namespace: str, name: str) -> InputRef:
    return InputRef.asset(name) if namespace == "asset" else InputRef.table(name)


def _decision_inputs(decision: PolicyZonesDecision) -> list[LabeledInput]:
    """The inputs of a decision with the effective labels recorded then (one row per category)."""
    return [
        LabeledInput(
            _ref(row.namespace, row.name),
            AssetLabels(
                categories=frozenset(categories),
                consented=frozenset(row.consented or ()),
                aggregated=bool(row.aggregated),
                origins=frozenset(row.origins or ()),
                reclassified_by=frozenset(row.reclassified_by or ()),
            )
            if row.labeled
            else None,
        )
        for row, categories in inputs_by_position(decision.inputs)
    ]


def labels_of(row: PolicyZonesAssetLabels | PolicyZonesAssetLabelEvent) -> AssetLabels:
    """The labels a current-labels row or a history row holds."""
    return AssetLabels(
        categories=frozenset(row.categories),
        consented=frozenset(row.consented),
        aggregated=row.aggregated,
        origins=frozenset(row.origins),
        reclassified_by=frozenset(row.reclassified_by),
    )


def _columns(labels: AssetLabels) -> dict[str, object]:
    return {
        "categories": sorted(labels.categories),
        "consented": sorted(labels.consented),
        "aggregated": labels.aggregated,
        "origins": sorted(labels.origins),
        "reclassified_by": sorted(labels.reclassified_by),
    }


def _event(
    decision: PolicyZonesDecision,
    ref: InputRef,
    labels: AssetLabels,
    *,
    reclassifier: str | None,
    source: str,
    at: datetime,
) -> PolicyZonesAssetLabelEvent:
    return PolicyZonesAssetLabelEvent(
        namespace=ref.namespace,
        name=ref.name,
        **_columns(labels),
        dag_id=decision.dag_id,
        task_id=decision.task_id,
        run_id=decision.run_id,
        map_index=decision.map_index,
        try_number=decision.try_number,
        zone=decision.zone,
        decision_id=decision.id,
        reclassifier=reclassifier,
        policy_version=decision.policy_version,
        recorded_at=at,
        source=source,
    )


def _reclassification(
    decision: PolicyZonesDecision,
    spec: ReclassifierSpec,
    inputs: Sequence[LabeledInput],
    outputs: Sequence[InputRef],
    *,
    zones: Mapping[str, str],
    at: datetime,
) -> PolicyZonesReclassification:
    record = reclassify(
        reclassifier=spec,
        dag_id=decision.dag_id,
        task_id=decision.task_id,
        zone=decision.zone,
        inputs=inputs,
        outputs=outputs,
        reclassifier_zones=zones,
    ).to_dict()
    return PolicyZonesReclassification(
        reclassifier=spec.name,
        zone=spec.zone,
        dag_id=decision.dag_id,
        task_id=decision.task_id,
        run_id=decision.run_id,
        map_index=decision.map_index,
        try_number=decision.try_number,
        decision_id=decision.id,
        inputs=record["inputs"],
        outputs=record["outputs"],
        labels_before=record["before"],
        labels_after=record["after"],
        policy_version=decision.policy_version,
        recorded_at=at,
    )


def _merge_current(
    session: Session, ref: InputRef, labels: AssetLabels, *, zones: Mapping[str, str], at: datetime
) -> None:
    """Fold one write into the asset's summary row, under a row lock (two writers may race)."""
    row = session.scalars(
        select(PolicyZonesAssetLabels)
        .where(PolicyZonesAssetLabels.namespace == ref.namespace, PolicyZonesAssetLabels.name == ref.name)
        .with_for_update()
    ).one_or_none()
    if row is None:
        session.add(
            PolicyZonesAssetLabels(
                namespace=ref.namespace, name=ref.name, **_columns(labels), event_count=1, updated_at=at
            )
        )
        session.flush()
        return
    merged = union_labels(labels_of(row), labels, reclassifier_zones=zones)
    for key, value in _columns(merged).items():
        setattr(row, key, value)
    row.event_count += 1
    row.updated_at = at


def _response(
    decision_id: int, events: Sequence[PolicyZonesAssetLabelEvent], *, already_recorded: bool
) -> OutputsResponse:
    first = events[0] if events else None
    return OutputsResponse(
        decision_id=decision_id,
        reclassifier=first.reclassifier if first else None,
        outputs=[
            OutputLabels.model_validate(
                {"namespace": event.namespace, "name": event.name, **_columns(labels_of(event))}
            )
            for event in events
        ],
        already_recorded=already_recorded,
    )
