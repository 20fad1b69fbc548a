"""``policyzones simulate``: what a new policy would have decided over the recorded decisions.

**Replay.** Every decision recorded since a moment (one row of ``policyzones_decision`` per
task-instance try) is decided again with the new policy's engine, from what was recorded:

* the inputs (``policyzones_decision_input``: namespace and name; labels are *not* taken from the
  row, they are what the new policy's catalog says, plus propagated labels, see below);
* the inlets that named no data and the tables a task's SQL read that nothing labeled, as far as
  the recorded decision reported them (``uncheckable_input`` and ``undeclared_input`` findings; a
  decision denied for its zone or membership first did not report them). Such a table that the
  new policy labels is checked like any input; SQL reads the old policy labeled were recorded as
  inputs, so under a new policy that no longer labels them they count as unlabeled inputs;
* the zone: the recorded one when the task claimed it; when the zone came from the old policy's
  ``default_zone`` (or there was none), the new policy's default zone applies;
* the task's identity for zone membership (tags, owners, file) from the ``dag`` table now, as the
  decision service reads it;
* the moment: exemptions are judged at the time of the recorded decision.

Then the new outcome is compared with the recorded one. *Newly blocked*: recorded ``allow``,
``dry_run`` or ``exempted``, now ``deny``. *Newly allowed*: recorded ``deny``, now not.
Any other change of outcome (e.g. ``allow`` → ``dry_run``: a violation newly logged) is counted as
an *other change*. Nothing is written: the command only reads.

**Propagated labels**: when the database has the current-labels table
(``policyzones_asset_labels``; ``airflow db migrate`` adds it), each input's *current* propagated
labels from that table are joined with the new catalog's labels (:func:`~airflow_policyzones.policy.lineage.
effective_labels`), as the decision service does. These are the labels as propagated under the
policies that were in force, not re-propagated under the new one. Without the table: catalog only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_policyzones import __version__
from airflow_policyzones.db import models
from airflow_policyzones.db.models import (
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesViolation,
)
from airflow_policyzones.db.propagation import propagated_labels
from airflow_policyzones.policy.engine import (
    AssetLabels,
    Decision,
    InputRef,
    LabeledInput,
    PolicyEngine,
    TaskContext,
)
from airflow_policyzones.policy.lineage import effective_labels
from airflow_policyzones.policy.vocabulary import Namespace, Outcome, Rule

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

BATCH = 1_000
"""Decisions read and replayed per query."""

ProgressCallback = Callable[[int, int, str], None]

NOT_DENY = (Outcome.ALLOW.value, Outcome.DRY_RUN.value, Outcome.EXEMPTED.value)
_CLAIMED_ZONE_SOURCES = ("task", "group", "dag")
"""Zone sources of a zone the task itself claimed; ``default`` and ``none`` follow the policy."""


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded decision whose outcome the new policy changes."""

    kind: str
    """``newly_blocked``, ``newly_allowed`` or ``other``."""
    decision_id: int
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    zone: str | None
    """The zone of the new decision (else the recorded one)."""
    decided_at: datetime
    recorded_outcome: str
    recorded_policy_version: str
    new_outcome: str
    new_rules: tuple[str, ...]
    """Rule ids of the new decision's findings not waived by an exemption."""
    recorded_rules: tuple[str, ...] = ()
    """Rule ids of the recorded findings, waived ones included (read for the changes only)."""

    @property
    def task(self) -> str:
        return f"{self.dag_id}.{self.task_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
            "zone": self.zone,
            "decided_at": self.decided_at.isoformat(),
            "recorded": {
                "outcome": self.recorded_outcome,
                "rules": list(self.recorded_rules),
                "policy_version": self.recorded_policy_version,
            },
            "new": {"outcome": self.new_outcome, "rules": list(self.new_rules)},
        }


@dataclass
class Tally:
    """Counts for one zone or one DAG."""

    decisions: int = 0
    newly_blocked: int = 0
    newly_allowed: int = 0
    other: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "decisions": self.decisions,
            "newly_blocked": self.newly_blocked,
            "newly_allowed": self.newly_allowed,
            "other_changes": self.other,
        }


@dataclass
class SimulationResult:
    """Everything one ``policyzones simulate`` found."""

    engine: PolicyEngine
    since: datetime
    decisions: int = 0
    changes: list[Change] = field(default_factory=list)
    zones: dict[str, Tally] = field(default_factory=dict)
    dags: dict[str, Tally] = field(default_factory=dict)
    recorded_versions: Counter[str] = field(default_factory=Counter)
    propagated_source: str | None = None
    """The table propagated labels came from, or ``None`` (catalog only)."""
    propagated_assets: int = 0
    """Assets read by the replayed decisions that have propagated labels."""

    def of(self, kind: str) -> list[Change]:
        return [change for change in self.changes if change.kind == kind]

    @property
    def unchanged(self) -> int:
        return self.decisions - len(self.changes)


def simulate(
    *,
    session: Session,
    engine: PolicyEngine,
    since: datetime,
    on_progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Replay every decision recorded at or after ``since`` under ``engine`` (read-only)."""
    table = PolicyZonesDecision.__table__.c
    total = int(
        session.scalar(
            sa.select(sa.func.count()).select_from(PolicyZonesDecision).where(table.decided_at >= since)
        )
        or 0
    )
    result = SimulationResult(engine=engine, since=since)
    labels = _Labels(session, engine)
    result.propagated_source = labels.source
    contexts: dict[str, TaskContext] = {}
    last_id = 0
    done = 0
    if on_progress is not None:
        on_progress(0, total, "")
    while True:
        rows = session.execute(
            sa.select(
                table.id,
                table.dag_id,
                table.task_id,
                table.run_id,
                table.map_index,
                table.try_number,
                table.zone,
                table.zone_source,
                table.outcome,
                table.policy_version,
                table.decided_at,
            )
            .where(table.decided_at >= since, table.id > last_id)
            .order_by(table.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        ids = [row.id for row in rows]
        inputs = _inputs(session, ids)
        uncheckable, undeclared = _reported(session, ids)
        labels.prefetch(ref for refs in (*inputs.values(), *undeclared.values()) for ref in refs)
        for row in rows:
            context = contexts.get(row.dag_id)
            if context is None:
                context = contexts[row.dag_id] = _dag_context(session, row.dag_id)
            sql_reads = [labels.labeled(ref) for ref in undeclared.get(row.id, ())]
            decision = engine.decide(
                task=TaskContext(
                    dag_id=row.dag_id,
                    task_id=row.task_id,
                    dag_file=context.dag_file,
                    tags=context.tags,
                    owners=context.owners,
                ),
                zone=row.zone if row.zone_source in _CLAIMED_ZONE_SOURCES else None,
                inputs=[labels.labeled(ref) for ref in inputs.get(row.id, ())]
                + [item for item in sql_reads if item.labels is not None],
                uncheckable=uncheckable.get(row.id, ()),
                undeclared=[item.ref for item in sql_reads if item.labels is None],
                now=_utc(row.decided_at),
            )
            _tally(result, row, decision)
        done += len(rows)
        if on_progress is not None:
            on_progress(done, total, "")
    result.propagated_assets = labels.propagated_count
    _recorded_rules(session, result)
    return result


def _tally(result: SimulationResult, row: Any, decision: Decision) -> None:
    result.decisions += 1
    result.recorded_versions[row.policy_version] += 1
    zone = decision.zone or row.zone or "-"
    zone_tally = result.zones.setdefault(zone, Tally())
    dag_tally = result.dags.setdefault(row.dag_id, Tally())
    zone_tally.decisions += 1
    dag_tally.decisions += 1
    recorded, new = row.outcome, decision.outcome.value
    if recorded == new:
        return
    if new == Outcome.DENY.value and recorded in NOT_DENY:
        kind = "newly_blocked"
    elif recorded == Outcome.DENY.value and new in NOT_DENY:
        kind = "newly_allowed"
    else:
        kind = "other"
    for tally in (zone_tally, dag_tally):
        setattr(tally, kind, getattr(tally, kind) + 1)
    rules: list[str] = []
    for finding in decision.violations:
        rules.extend(rule.value for rule in finding.rules if rule.value not in rules)
    result.changes.append(
        Change(
            kind=kind,
            decision_id=row.id,
            dag_id=row.dag_id,
            task_id=row.task_id,
            run_id=row.run_id,
            map_index=row.map_index,
            try_number=row.try_number,
            zone=zone if zone != "-" else None,
            decided_at=_utc(row.decided_at),
            recorded_outcome=recorded,
            recorded_policy_version=row.policy_version,
            new_outcome=new,
            new_rules=tuple(rules),
        )
    )


def _inputs(session: Session, ids: Sequence[int]) -> dict[int, list[InputRef]]:
    """Each decision's inputs, once each, in recorded order (one row per input and category)."""
    column = PolicyZonesDecisionInput.__table__.c
    found: dict[int, dict[InputRef, None]] = {}
    for decision_id, namespace, name in session.execute(
        sa.select(column.decision_id, column.namespace, column.name)
        .where(column.decision_id.in_(ids))
        .order_by(column.decision_id, column.position, column.id)
    ):
        found.setdefault(decision_id, {}).setdefault(InputRef(namespace, name), None)
    return {decision_id: list(refs) for decision_id, refs in found.items()}


def _reported(session: Session, ids: Sequence[int]) -> tuple[dict[int, list[str]], dict[int, list[InputRef]]]:
    """What the recorded decisions reported and their input rows do not hold: inlets that named
    no data (their descriptions), and tables and files the SQL read that nothing labeled (violation
    rows keep the name only: a file is the one with a URI scheme)."""
    column = PolicyZonesViolation.__table__.c
    uncheckable: dict[int, list[str]] = {}
    undeclared: dict[int, list[InputRef]] = {}
    for decision_id, rule, name, reason in session.execute(
        sa.select(column.decision_id, column.rule, column.input, column.reason)
        .where(
            column.decision_id.in_(ids),
            column.rule.in_((Rule.UNCHECKABLE_INPUT.value, Rule.UNDECLARED_INPUT.value)),
        )
        .order_by(column.id)
    ):
        if rule == Rule.UNCHECKABLE_INPUT.value:
            uncheckable.setdefault(decision_id, []).append(reason)
        elif name is not None:
            namespace: Namespace = "asset" if "://" in name else "table"
            undeclared.setdefault(decision_id, []).append(InputRef(namespace, name))
    return uncheckable, undeclared


def _recorded_rules(session: Session, result: SimulationResult) -> None:
    """Fill in the recorded rule ids of the changes (one query per batch of changes)."""
    column = PolicyZonesViolation.__table__.c
    rules: dict[int, list[str]] = {}
    ids = [change.decision_id for change in result.changes]
    for start in range(0, len(ids), BATCH):
        for decision_id, names in session.execute(
            sa.select(column.decision_id, column.rules)
            .where(column.decision_id.in_(ids[start : start + BATCH]))
            .order_by(column.id)
        ):
            known = rules.setdefault(decision_id, [])
            known.extend(name for name in names or () if name not in known)
    result.changes = [
        replace(change, recorded_rules=tuple(rules.get(change.decision_id, ()))) for change in result.changes
    ]


def _dag_context(session: Session, dag_id: str) -> TaskContext:
    """Membership facts of a DAG from the ``dag`` table, as the decision service reads them."""
    from airflow.models.dag import DagModel, DagTag

    from airflow_policyzones.db.tries import dag_task_context

    found = session.execute(
        sa.select(DagModel.relative_fileloc, DagModel.owners).where(DagModel.dag_id == dag_id)
    ).first()
    if found is None:  # a DAG the database no longer knows: only its id can match
        return TaskContext(dag_id=dag_id, task_id="")
    tags = session.scalars(sa.select(DagTag.name).where(DagTag.dag_id == dag_id)).all()
    return dag_task_context(dag_id=dag_id, task_id="", relative_fileloc=found[0], owners=found[1], tags=tags)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


class _Labels:
    """Labels of inputs under the new policy: its catalog, joined with propagated labels if any."""

    def __init__(self, session: Session, engine: PolicyEngine) -> None:
        self._session = session
        self._engine = engine
        self._known: dict[InputRef, LabeledInput] = {}
        self._propagated: dict[InputRef, AssetLabels] = {}
        self.source = _propagated_table(session)
        """The propagated-labels table, or None when the database does not have it yet."""
        self.propagated_count = 0

    def prefetch(self, refs: Iterable[InputRef]) -> None:
        missing = {ref for ref in refs if ref not in self._known}
        if self.source is not None and missing:
            self._propagated.update(propagated_labels(self._session, missing))
        for ref in missing:
            self._known[ref] = self._label(ref)

    def labeled(self, ref: InputRef) -> LabeledInput:
        found = self._known.get(ref)
        if found is None:
            found = self._known[ref] = self._label(ref)
        return found

    def _label(self, ref: InputRef) -> LabeledInput:
        propagated = self._propagated.get(ref)
        if propagated is not None:
            self.propagated_count += 1
        catalog = self._engine.labels_for(ref)
        return LabeledInput(
            ref,
            effective_labels(
                catalog=catalog, propagated=propagated, reclassifier_zones=self._engine.reclassifier_zones
            ),
        )


def _propagated_table(session: Session) -> str | None:
    """``policyzones_asset_labels`` if the database has it (``airflow db migrate`` adds it)."""
    name = models.PolicyZonesAssetLabels.__tablename__
    schema = models.policyzones_metadata.schema
    return name if sa.inspect(session.connection()).has_table(name, schema=schema) else None


# --- rendering ----------------------------------------------------------------------------------

KIND_TITLES = {
    "newly_blocked": "Newly blocked (recorded allow, dry_run or exempted; now deny)",
    "newly_allowed": "Newly allowed (recorded deny; now allow, dry_run or exempted)",
    "other": "Other changes of outcome",
}


def summary_line(result: SimulationResult) -> str:
    return (
        f"{_plural(result.decisions, 'decision')} replayed: {len(result.of('newly_blocked'))} newly blocked, "
        f"{len(result.of('newly_allowed'))} newly allowed, {len(result.of('other'))} other changes, "
        f"{result.unchanged} unchanged"
    )


def render_text(result: SimulationResult, *, examples: int = 3) -> str:
    loaded = result.engine.loaded
    name = f" {loaded.policy.name!r}" if loaded.policy.name else ""
    since = result.since.isoformat(timespec="seconds")
    out = [
        f"policyzones simulate: policy{name} {loaded.short_version} ({loaded.source}) replayed over "
        f"{_plural(result.decisions, 'decision')} recorded since {since}",
    ]
    if result.recorded_versions:
        versions = ", ".join(
            f"{_short(version)} ({count})" for version, count in result.recorded_versions.most_common()
        )
        out.append(f"recorded under policy versions: {versions}")
    if result.propagated_source is None:
        out.append("labels: the new policy's catalog (no propagated labels in this database)")
    else:
        out.append(
            f"labels: the new policy's catalog and the current propagated labels in "
            f"{result.propagated_source} ({_plural(result.propagated_assets, 'asset')} read had some)"
        )
    for title, tallies in (("ZONE", result.zones), ("DAG", result.dags)):
        rows = [
            (key, str(t.decisions), str(t.newly_blocked), str(t.newly_allowed), str(t.other))
            for key, t in sorted(tallies.items())
        ]
        if rows:
            out.append("")
            out.extend(_table((title, "DECISIONS", "NEWLY BLOCKED", "NEWLY ALLOWED", "OTHER CHANGES"), rows))
    for kind, title in KIND_TITLES.items():
        changes = result.of(kind)
        if not changes:
            continue
        out.extend(["", f"{title}: {len(changes)}"])
        groups: dict[tuple[str, str], list[Change]] = {}
        for change in changes:
            groups.setdefault((change.zone or "-", change.dag_id), []).append(change)
        for (zone, dag_id), group in sorted(groups.items()):
            out.append(f"  zone {zone}, DAG {dag_id}: {_plural(len(group), 'try', 'tries')}")
            for change in group[:examples]:
                out.append(f"    {_describe(change)}")
            if len(group) > examples:
                out.append(f"    ... and {len(group) - examples} more (--format json lists every one)")
    out.extend(["", summary_line(result)])
    return "\n".join(out) + "\n"


def _describe(change: Change) -> str:
    """``dag.task  run R [map M]  try N  recorded -> new  now: rules  was: rules``."""
    mapped = f" map {change.map_index}" if change.map_index >= 0 else ""
    text = (
        f"{change.task}  run {change.run_id}{mapped}  try {change.try_number}  "
        f"{change.recorded_outcome} -> {change.new_outcome}"
    )
    if change.new_rules:
        text += f"  now: {', '.join(change.new_rules)}"
    if change.recorded_rules:
        text += f"  was: {', '.join(change.recorded_rules)}"
    return text


def to_json(result: SimulationResult) -> dict[str, Any]:
    loaded = result.engine.loaded
    return {
        "format": "policyzones-simulate",
        "format_version": 1,
        "tool": {"name": "policyzones", "version": __version__},
        "policy": {
            "file": loaded.source,
            "name": loaded.policy.name,
            "version": loaded.version,
            "short_version": loaded.short_version,
        },
        "since": result.since.isoformat(),
        "propagated_labels": {"table": result.propagated_source, "assets": result.propagated_assets},
        "recorded_policy_versions": dict(result.recorded_versions.most_common()),
        "summary": {
            "decisions": result.decisions,
            "newly_blocked": len(result.of("newly_blocked")),
            "newly_allowed": len(result.of("newly_allowed")),
            "other_changes": len(result.of("other")),
            "unchanged": result.unchanged,
        },
        "zones": {zone: tally.to_dict() for zone, tally in sorted(result.zones.items())},
        "dags": {dag_id: tally.to_dict() for dag_id, tally in sorted(result.dags.items())},
        "newly_blocked": [change.to_dict() for change in result.of("newly_blocked")],
        "newly_allowed": [change.to_dict() for change in result.of("newly_allowed")],
        "other_changes": [change.to_dict() for change in result.of("other")],
    }


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _short(version: str) -> str:
    return version.split(":", 1)[-1][:12]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)]


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count:,} {singular if count == 1 else (plural or singular + 's')}"
