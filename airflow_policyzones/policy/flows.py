"""Static flow analysis for ``policyzones check``: unsanctioned flows found before deploy.

Tasks are joined through the assets they declare: an asset one task writes and another reads is
an edge, across DAGs. Labels propagate along the edges to a fixpoint with
:func:`~airflow_policyzones.policy.lineage.output_labels` (the runtime's own rule), then every
task is decided by :meth:`PolicyEngine.decide` on its inputs' effective labels (catalog and
propagated), so the check and the runtime cannot disagree about a rule. Each finding comes with
the path that produced it, e.g.::

    purchases_raw (ads_optimization: ads.build_raw) → features (ads.aggregate) → recs.train reads features

Defined behaviour for awkward graphs:

* Cycles terminate: an asset's labels only grow (each update is a union with what it had) in a
  finite lattice, so every asset changes a bounded number of times. An asset written only inside
  a cycle that no labeled data enters stays unlabeled.
* An asset written by several tasks carries the union of what each writes; when they run in
  different zones the report also warns (``written_by_several_zones``).
* A task the caller names as a reclassifier but that runs outside the reclassifier's zone is not
  treated as one (its outputs keep their inputs' labels) and the report warns
  (``reclassifier_outside_zone``).

Speed (the check may add little to DAG parsing): one worklist pass in topological order (cycles
add re-visits only where labels change), interned labels with memoized unions, and one
predecessor record per asset and label fact; a finding's paths are rebuilt from those records
when first read, at the cost of their length. 20,000 tasks took about 0.3 s in development,
most of it the engine's decisions.

The types it takes and returns (:class:`~airflow_policyzones.policy.flow_models.TaskNode`, the
findings, paths, warnings and the report) are in :mod:`airflow_policyzones.policy.flow_models`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from airflow_policyzones.policy.engine import (
    AssetLabels,
    Decision,
    InputRef,
    LabeledInput,
    PolicyEngine,
)
from airflow_policyzones.policy.flow_models import (
    FlowError,
    FlowFinding,
    FlowPath,
    FlowReport,
    FlowWarning,
    PathStep,
    TaskNode,
)
from airflow_policyzones.policy.lineage import (
    LineageError,
    ReclassifierSpec,
    output_labels,
    union_labels,
)
from airflow_policyzones.policy.loader import gc_paused
from airflow_policyzones.policy.vocabulary import Rule


def analyze_flows(
    *, engine: PolicyEngine, tasks: Sequence[TaskNode], now: datetime | None = None
) -> FlowReport:
    """Propagate labels through ``tasks`` to a fixpoint, decide each task, explain each finding.

    Raises :class:`FlowError` when a task names a reclassifier the policy does not declare, or
    one the policy declares for another task.
    """
    with gc_paused():  # hundreds of thousands of small, long-lived objects and no garbage
        analysis = _Analysis(engine, tasks)
        analysis.propagate()
        return analysis.report(now)


# --- implementation -------------------------------------------------------------------------------

_Atom = tuple[str, str]
"""One label fact: ("c", category), ("o", origin zone), ("x", purpose not consented), ("n", "") not
aggregated."""


@dataclass(frozen=True, slots=True)
class _Cause:
    task: int
    inputs: tuple[tuple[int, AssetLabels | None], ...]
    """The inputs the task read when it changed the asset, with their labels then."""


def _has(labels: AssetLabels | None, atom: _Atom) -> bool:
    if labels is None:
        return False
    kind, value = atom
    if kind == "c":
        return value in labels.categories
    if kind == "o":
        return value in labels.origins
    if kind == "x":
        return value not in labels.consented
    return not labels.aggregated


def _declares(spec: ReclassifierSpec, atom: _Atom) -> bool:
    kind, value = atom
    if kind == "c":
        return spec.categories is not None and value in spec.categories
    if kind == "x":
        return value not in spec.consented
    if kind == "n":
        return not spec.aggregated
    return False


def _new_atoms(old: AssetLabels, new: AssetLabels) -> list[_Atom]:
    atoms: list[_Atom] = [("c", name) for name in new.categories - old.categories]
    atoms.extend(("o", name) for name in new.origins - old.origins)
    atoms.extend(("x", name) for name in old.consented - new.consented)
    if old.aggregated and not new.aggregated:
        atoms.append(("n", ""))
    return atoms


class _Analysis:
    def __init__(self, engine: PolicyEngine, tasks: Sequence[TaskNode]) -> None:
        self.engine = engine
        self.tasks = tasks
        self.zones_of = engine.reclassifier_zones
        self.interned: dict[AssetLabels, AssetLabels] = {}
        self.unions: dict[tuple[int, int], AssetLabels] = {}
        self.outputs: dict[tuple[object, ...], AssetLabels] = {}
        index: dict[InputRef, int] = {}
        number = index.setdefault  # an asset's number: its position in first-seen order
        self.task_inputs: list[tuple[int, ...]] = []
        self.task_outputs: list[tuple[int, ...]] = []
        self.task_zone: list[str | None] = []
        self.task_spec: list[ReclassifierSpec | None] = []
        self.warnings: list[FlowWarning] = []
        specs: dict[str, ReclassifierSpec] = {}
        for node in tasks:
            self.task_inputs.append(tuple(number(ref, len(index)) for ref in node.inputs))
            self.task_outputs.append(tuple(number(ref, len(index)) for ref in node.outputs))
            zone = engine.effective_zone(node.zone)
            self.task_zone.append(zone)
            self.task_spec.append(self._reclassifier(node, zone, specs))
        self.refs: list[InputRef] = list(index)
        self.readers: list[list[int]] = [[] for _ in self.refs]
        self.writers: list[list[int]] = [[] for _ in self.refs]
        for position, (inputs, outputs) in enumerate(zip(self.task_inputs, self.task_outputs, strict=True)):
            for item in set(inputs):
                self.readers[item].append(position)
            for item in set(outputs):
                self.writers[item].append(position)
        self.index = index
        self.catalog: list[AssetLabels | None] = [
            self._intern_opt(engine.labels_for(ref)) for ref in self.refs
        ]
        self.propagated: list[AssetLabels | None] = [None] * len(self.refs)
        self.effective: list[AssetLabels | None] = list(self.catalog)
        self.first_cause: list[_Cause | None] = [None] * len(self.refs)
        self.later_causes: dict[int, dict[_Atom, _Cause]] = {}
        self.evaluations = 0
        self.names = [node.name for node in tasks]
        self.traces: dict[tuple[int, _Atom], tuple[PathStep, ...]] = {}
        self.wanted: dict[tuple[str, int, tuple[Rule, ...]], tuple[tuple[Rule, str, _Atom], ...]] = {}

    def _reclassifier(
        self, node: TaskNode, zone: str | None, specs: dict[str, ReclassifierSpec]
    ) -> ReclassifierSpec | None:
        if node.reclassifier is None:
            return None
        spec = specs.get(node.reclassifier)
        if spec is None:
            try:
                spec = specs[node.reclassifier] = ReclassifierSpec.from_policy(
                    policy=self.engine.policy, name=node.reclassifier
                )
            except LineageError as error:
                raise FlowError(f"task {node.name}: {error}") from None
        if (spec.dag_id, spec.task_id) != (node.task.dag_id, node.task.task_id):
            raise FlowError(
                f"task {node.name} is given as reclassifier {spec.name!r}, which the policy declares as "
                f"{spec.dag_id}.{spec.task_id}: name reclassifiers with PolicyEngine.reclassifier_for"
            )
        if zone != spec.zone:
            self.warnings.append(
                FlowWarning(
                    kind="reclassifier_outside_zone",
                    message=(
                        f"task {node.name} is reclassifier {spec.name!r}, which the policy runs in zone "
                        f"{spec.zone!r}, but the task runs in zone {zone!r}: its outputs keep the labels "
                        "of its inputs"
                    ),
                    remediation=(
                        f"run the task in zone {spec.zone!r}, or correct reclassifiers.{spec.name}.zone"
                    ),
                    asset=None,
                    tasks=(node.name,),
                    zones=tuple(sorted({spec.zone, *([zone] if zone is not None else [])})),
                )
            )
            return None
        return spec

    # --- labels ---------------------------------------------------------------------------------

    def _intern(self, labels: AssetLabels) -> AssetLabels:
        return self.interned.setdefault(labels, labels)

    def _intern_opt(self, labels: AssetLabels | None) -> AssetLabels | None:
        return None if labels is None else self._intern(labels)

    def _union(self, left: AssetLabels, right: AssetLabels) -> AssetLabels:
        """Union of two interned labels, interned and memoized (ids are stable: interned objects live)."""
        if left is right:
            return left
        key = (id(left), id(right))
        found = self.unions.get(key)
        if found is None:
            found = self.unions[key] = self._intern(
                union_labels(left, right, reclassifier_zones=self.zones_of)
            )
        return found

    def _output(self, task: int, inputs: list[AssetLabels | None]) -> AssetLabels:
        spec = self.task_spec[task]
        zone = self.task_zone[task]
        key = (zone, None if spec is None else spec.name, *map(id, inputs))
        found = self.outputs.get(key)
        if found is None:
            found = self.outputs[key] = self._intern(
                output_labels(zone=zone, inputs=inputs, reclassifier=spec, reclassifier_zones=self.zones_of)
            )
        return found

    # --- fixpoint -------------------------------------------------------------------------------

    def _order(self) -> list[int]:
        """Reverse postorder of a depth-first walk from writers to readers: a topological order
        when there is no cycle, and one that visits most of a cycle's upstream first when there is."""
        count = len(self.tasks)
        readers = self.readers
        outputs = self.task_outputs
        visited = [False] * count
        postorder: list[int] = []
        for root in range(count):
            if visited[root]:
                continue
            visited[root] = True
            stack = [(root, (reader for item in outputs[root] for reader in readers[item]))]
            while stack:
                task, successors = stack[-1]
                for successor in successors:
                    if not visited[successor]:
                        visited[successor] = True
                        stack.append(
                            (successor, (reader for item in outputs[successor] for reader in readers[item]))
                        )
                        break
                else:
                    stack.pop()
                    postorder.append(task)
        postorder.reverse()
        return postorder

    def propagate(self) -> None:
        queue = deque(self._order())
        queued = [True] * len(self.tasks)
        writers = self.writers
        while queue:
            task = queue.popleft()
            queued[task] = False
            read: list[int] = []
            labels: list[AssetLabels | None] = []
            for item in self.task_inputs[task]:
                current = self.effective[item]
                if current is None and writers[item]:
                    continue  # written by a task whose labels are not known yet
                read.append(item)
                labels.append(current)
            if self.task_inputs[task] and not read:
                continue
            self.evaluations += 1
            produced = self._output(task, labels)
            cause: _Cause | None = None
            for item in self.task_outputs[task]:
                old = self.propagated[item]
                new = produced if old is None else self._union(old, produced)
                if new is old:
                    continue
                if cause is None:
                    cause = _Cause(task, tuple(zip(read, labels, strict=True)))
                self.propagated[item] = new
                if old is None:
                    self.first_cause[item] = cause
                else:
                    causes = self.later_causes.setdefault(item, {})
                    for atom in _new_atoms(old, new):
                        causes.setdefault(atom, cause)
                catalog = self.catalog[item]
                effective = new if catalog is None else self._union(catalog, new)
                if effective is not self.effective[item]:
                    self.effective[item] = effective
                    for reader in self.readers[item]:
                        if not queued[reader]:
                            queued[reader] = True
                            queue.append(reader)

    # --- report ---------------------------------------------------------------------------------

    def report(self, now: datetime | None) -> FlowReport:
        engine = self.engine
        labeled = [LabeledInput(ref, self.effective[item]) for item, ref in enumerate(self.refs)]
        decisions: list[Decision] = []
        findings: list[FlowFinding] = []
        for position, node in enumerate(self.tasks):
            inputs = self.task_inputs[position]
            decision = engine.decide(
                task=node.task,
                zone=node.zone,
                inputs=[labeled[item] for item in inputs],
                uncheckable=node.uncheckable,
                now=now,
            )
            decisions.append(decision)
            for finding in decision.findings:
                item = next((i for i in inputs if self.refs[i].name == finding.input), None)
                findings.append(
                    FlowFinding(
                        dag_id=node.task.dag_id,
                        task_id=node.task.task_id,
                        zone=decision.zone,
                        outcome=decision.outcome,
                        finding=finding,
                        input=None if item is None else self.refs[item],
                        tracer=self,
                    )
                )
        return FlowReport(
            decisions=tuple(decisions),
            findings=tuple(findings),
            warnings=tuple(self.warnings) + self._shared_assets(),
            labels={ref: self.effective[item] for item, ref in enumerate(self.refs)},
            propagated={
                ref: labels
                for ref, labels in zip(self.refs, self.propagated, strict=True)
                if labels is not None
            },
            evaluations=self.evaluations,
        )

    def _shared_assets(self) -> tuple[FlowWarning, ...]:
        warnings: list[FlowWarning] = []
        for item, writers in enumerate(self.writers):
            if len(writers) < 2:
                continue
            zones = {zone for zone in (self.task_zone[task] for task in writers) if zone is not None}
            if len(zones) < 2:
                continue
            ref = self.refs[item]
            names = tuple(sorted(self.tasks[task].name for task in writers))
            warnings.append(
                FlowWarning(
                    kind="written_by_several_zones",
                    message=(
                        f"{ref} is written in zones {', '.join(repr(zone) for zone in sorted(zones))} "
                        f"(by {', '.join(names)}): it carries the union of their labels, so every reader "
                        "must be allowed to read what each of them writes"
                    ),
                    remediation="write one asset per zone, or move the writers into one zone",
                    asset=ref,
                    tasks=names,
                    zones=tuple(sorted(zones)),
                )
            )
        return tuple(warnings)

    def paths(
        self, *, reader: str, zone: str, ref: InputRef, rules: tuple[Rule, ...]
    ) -> tuple[FlowPath, ...]:
        item = self.index.get(ref)
        labels = None if item is None else self.effective[item]
        if item is None or labels is None:
            return ()
        key = (zone, id(labels), rules)  # labels are interned: equal labels, one entry
        wanted = self.wanted.get(key)
        if wanted is None:
            wanted = self.wanted[key] = self._wanted(zone, labels, rules)
        return tuple(
            FlowPath(rule=rule, fact=fact, steps=self._trace(item, atom), reader=reader)
            for rule, fact, atom in wanted
        )

    def _wanted(
        self, zone: str, labels: AssetLabels, rules: tuple[Rule, ...]
    ) -> tuple[tuple[Rule, str, _Atom], ...]:
        """The label facts that break each rule of a finding, each to be traced to its source."""
        spec = self.engine.policy.zones.get(zone)
        if spec is None:
            return ()
        wanted: list[tuple[Rule, str, _Atom]] = []
        for rule in rules:
            if rule is Rule.CATEGORY_NOT_ALLOWED:
                allowed = set(spec.allowed_categories)
                wanted.extend(
                    (rule, f"category {name!r}", ("c", name))
                    for name in sorted(labels.categories)
                    if name not in allowed
                )
            elif rule is Rule.CONSENT_MISSING:
                wanted.append((rule, f"no consent for {spec.purpose!r}", ("x", spec.purpose)))
            elif rule is Rule.NOT_AGGREGATED:
                wanted.append((rule, "user-level rows", ("n", "")))
            elif rule is Rule.UNSANCTIONED_FLOW:
                wanted.extend(
                    (rule, f"data from zone {origin!r}", ("o", origin))
                    for origin in self.engine.unsanctioned_origins(zone=zone, labels=labels)
                )
        return tuple(wanted)

    def _trace(self, item: int, atom: _Atom) -> tuple[PathStep, ...]:
        """The path of ``atom`` into ``item``, source first (memoized per asset and fact).

        Each asset records, per fact, the input that had the fact before the asset got it, so
        the walk back only goes back in time and ends; the bound is a guard, not a limit reached
        in practice. Every asset on the walk memoizes its own path, so findings that share an
        upstream cost one lookup each.
        """
        known = self.traces.get((item, atom))
        if known is not None:
            return known
        chain: list[tuple[int, PathStep]] = []
        tail: tuple[PathStep, ...] = ()
        for _ in range(len(self.refs) + 1):
            known = self.traces.get((item, atom))
            if known is not None:
                tail = known
                break
            step, upstream, root = self._step(item, atom)
            chain.append((item, step))
            if upstream is None:
                tail = root
                break
            item = upstream
        for asset, step in reversed(chain):
            tail = (*tail, step)
            self.traces[(asset, atom)] = tail
        return tail

    def _step(self, item: int, atom: _Atom) -> tuple[PathStep, int | None, tuple[PathStep, ...]]:
        """How ``atom`` entered ``item``: its step, the upstream asset to follow, or a root before it."""
        ref = self.refs[item]
        if _has(self.catalog[item], atom):
            return PathStep(ref, "catalog"), None, ()
        cause = self.later_causes.get(item, {}).get(atom) or self.first_cause[item]
        if cause is None or not _has(self.propagated[item], atom):
            return PathStep(ref, "unlabeled"), None, ()
        name = self.names[cause.task]
        zone = self.task_zone[cause.task]
        spec = self.task_spec[cause.task]
        if spec is not None and _declares(spec, atom):
            return PathStep(ref, "reclassifier", name, zone), None, ()
        for source, labels in cause.inputs:
            if _has(labels, atom):
                return PathStep(ref, "propagated", name, zone), source, ()
        if atom == ("o", zone):
            return PathStep(ref, "origin", name, zone), None, ()
        for source, labels in cause.inputs:
            if labels is None:  # unlabeled data: no consent, not aggregated
                return (
                    PathStep(ref, "propagated", name, zone),
                    None,
                    (PathStep(self.refs[source], "unlabeled"),),
                )
        return PathStep(ref, "no_inputs", name, zone), None, ()
