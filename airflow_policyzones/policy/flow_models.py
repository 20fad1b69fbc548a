"""What the static flow analysis (:func:`~airflow_policyzones.policy.flows.analyze_flows`) takes
and gives: the tasks (:class:`TaskNode`), the findings with the paths that explain them, the
warnings, and the report. Pure data with its text and JSON forms; the analysis itself is in
:mod:`airflow_policyzones.policy.flows`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from airflow_policyzones.policy.engine import AssetLabels, Decision, Finding, InputRef, TaskContext
from airflow_policyzones.policy.vocabulary import Outcome, Rule

StepKind = Literal["catalog", "origin", "reclassifier", "propagated", "unlabeled", "no_inputs"]
WarningKind = Literal["written_by_several_zones", "reclassifier_outside_zone"]


class FlowError(ValueError):
    """The task graph given to :func:`~airflow_policyzones.policy.flows.analyze_flows` is
    inconsistent with the policy."""


@dataclass(frozen=True, slots=True)
class TaskNode:
    """One task as the flow analysis sees it: who it is, its zone, what it reads and writes."""

    task: TaskContext
    zone: str | None
    """The task's own zone annotation; ``None`` falls back to the policy's default zone."""
    inputs: tuple[InputRef, ...] = ()
    outputs: tuple[InputRef, ...] = ()
    reclassifier: str | None = None
    """The policy reclassifier this task is (:meth:`PolicyEngine.reclassifier_for`), if any."""
    uncheckable: tuple[str, ...] = ()
    """Inlets that name no checkable data, passed on to :meth:`PolicyEngine.decide`."""

    @property
    def name(self) -> str:
        return f"{self.task.dag_id}.{self.task.task_id}"


@dataclass(frozen=True, slots=True)
class PathStep:
    """One asset on a path, and how the label fact got there."""

    asset: InputRef
    kind: StepKind
    """``catalog``: the catalog says so; ``origin``: written in the zone the data comes from;
    ``reclassifier``: the reclassifier declared it; ``propagated``: carried from the next step
    upstream; ``unlabeled``: no labels at all; ``no_inputs``: written by a task that reads nothing."""
    task: str | None = None
    """The writing task, ``dag_id.task_id``."""
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class FlowPath:
    """Where one offending label fact of an input comes from, source first."""

    rule: Rule
    fact: str
    """The fact explained, e.g. ``category 'purchase_events'`` or ``data from zone 'ads'``."""
    steps: tuple[PathStep, ...]
    reader: str

    def __str__(self) -> str:
        parts: list[str] = []
        previous_zone: str | None = None
        for step in self.steps:
            if step.task is None:
                parts.append(f"{step.asset} ({step.kind})")
                continue
            zone = f"{step.zone}: " if step.zone is not None and step.zone != previous_zone else ""
            note = {"reclassifier": ", reclassifier", "no_inputs": ", reads nothing"}.get(step.kind, "")
            parts.append(f"{step.asset} ({zone}{step.task}{note})")
            previous_zone = step.zone
        parts.append(f"{self.reader} reads {self.steps[-1].asset}")
        return " → ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "fact": self.fact,
            "path": str(self),
            "steps": [
                {"asset": step.asset.name, "namespace": step.asset.namespace, "kind": step.kind}
                | {"task": step.task, "zone": step.zone}
                for step in self.steps
            ],
        }


@dataclass(frozen=True, slots=True)
class FlowFinding:
    """A finding of one task's decision; :attr:`paths` explain its input's offending labels."""

    dag_id: str
    task_id: str
    zone: str | None
    outcome: Outcome
    finding: Finding
    input: InputRef | None
    tracer: _Tracer | None = field(default=None, repr=False, compare=False)
    """Where the paths come from (the analysis' per-asset records); ``None``: no paths."""

    @property
    def paths(self) -> tuple[FlowPath, ...]:
        """One path per offending fact (category, missing consent, user-level rows, origin zone).

        Built on first use from the analysis' records, at the cost of the path's length: a report
        with many findings does not pay for paths nobody prints.
        """
        if self.tracer is None or self.input is None or self.zone is None:
            return ()
        return self.tracer.paths(
            reader=f"{self.dag_id}.{self.task_id}", zone=self.zone, ref=self.input, rules=self.finding.rules
        )

    @property
    def propagated(self) -> bool:
        """Whether propagation produced it (the catalog alone would not have)."""
        return any(len(path.steps) > 1 or path.steps[0].kind != "catalog" for path in self.paths)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "zone": self.zone,
            "outcome": self.outcome.value,
            "finding": self.finding.to_dict(),
            "paths": [path.to_dict() for path in self.paths],
        }


class _Tracer(Protocol):
    def paths(
        self, *, reader: str, zone: str, ref: InputRef, rules: tuple[Rule, ...]
    ) -> tuple[FlowPath, ...]: ...


@dataclass(frozen=True, slots=True)
class FlowWarning:
    """Something legal but worth a look: defined behaviour, reported."""

    kind: WarningKind
    message: str
    remediation: str
    asset: InputRef | None
    tasks: tuple[str, ...]
    zones: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "remediation": self.remediation,
            "asset": None if self.asset is None else self.asset.name,
            "tasks": list(self.tasks),
            "zones": list(self.zones),
        }


@dataclass(frozen=True, slots=True)
class FlowReport:
    """The result of :func:`~airflow_policyzones.policy.flows.analyze_flows`."""

    decisions: tuple[Decision, ...]
    """One per task, in the order given."""
    findings: tuple[FlowFinding, ...]
    warnings: tuple[FlowWarning, ...]
    labels: Mapping[InputRef, AssetLabels | None] = field(repr=False)
    """Effective labels (the union of catalog and propagated) of every asset read or written."""
    propagated: Mapping[InputRef, AssetLabels] = field(repr=False)
    """Propagated labels of every written asset that received some."""
    evaluations: int = 0
    """Task evaluations until the fixpoint (at least one per task that can produce labels)."""
