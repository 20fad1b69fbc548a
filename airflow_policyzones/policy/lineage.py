"""Label propagation: what a zoned task's outputs carry, and what an asset is known to hold.

Restrictions travel with the data: what a task writes is at least as restricted as everything it
read, plus its zone as an origin, unless the task is a reclassifier the policy names, whose outputs
get the labels the policy declares. One implementation serves the runtime (the api-server stores
propagated labels after a task succeeds), the static flow check (:mod:`.flows`) and the tests.

**Restriction order.** Labels ``a`` are *at least as restricted as* ``b`` when every zone that may
read ``a`` may also read ``b``: ``a`` has every category and origin of ``b``, no consented purpose
``b`` lacks, is aggregated only if ``b`` is, and holds no reclassifier pass that ``b`` lacks for
data ``b`` carries. :func:`union_labels` is the least restricted labels at least as restricted as
each of its arguments; labels only grow in this order along a path without a reclassifier.

**Reclassifier passes** (``reclassified_by``). A flow ``X → Z via [r]`` admits X's data that went
through ``r``, and the policy requires ``r`` to run in X, so a pass vouches for the data of its own
zone only. Combining sources keeps pass ``r`` only if every source that carries data from ``r``'s
zone carries ``r`` too (raw data of that zone mixed in voids it); a pass whose reclassifier the
policy does not know survives only if every source has it. That is why the functions here need
``reclassifier_zones`` (:attr:`PolicyEngine.reclassifier_zones`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_policyzones.policy.engine import AssetLabels, InputRef, LabeledInput
from airflow_policyzones.policy.models import Policy

UNLABELED = AssetLabels()
"""How an input nobody labeled counts for propagation: no known category, consented for nothing,
not aggregated. Its categories are unknown, so reading it is a violation by default
(``unlabeled: deny``); what the output inherits from it is only its lack of consent."""


class LineageError(ValueError):
    """Labels cannot be propagated as asked; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class ReclassifierSpec:
    """A policy reclassifier compiled for propagation (``reclassifiers.<name>`` in the policy)."""

    name: str
    zone: str
    dag_id: str
    task_id: str
    categories: frozenset[str] | None
    """The output categories, or ``None`` to keep the union of the input categories."""
    consented: frozenset[str]
    aggregated: bool

    @classmethod
    def from_policy(cls, *, policy: Policy, name: str) -> ReclassifierSpec:
        spec = policy.reclassifiers.get(name)
        if spec is None:
            declared = ", ".join(sorted(policy.reclassifiers)) or "none"
            raise LineageError(
                f"unknown reclassifier {name!r}: declare it under 'reclassifiers:' in the policy "
                f"or correct the name (declared: {declared})"
            )
        outputs = spec.outputs
        return cls(
            name=name,
            zone=spec.zone,
            dag_id=spec.dag_id,
            task_id=spec.task_id,
            categories=None if outputs.categories is None else frozenset(outputs.categories),
            consented=frozenset(outputs.consented),
            aggregated=outputs.aggregated,
        )


def union_labels(*labels: AssetLabels, reclassifier_zones: Mapping[str, str]) -> AssetLabels:
    """The labels of data combined from several sources: the most restrictive combination.

    Categories and origins: union. Consented purposes: intersection (data is consented for a
    purpose only if all its sources are). Aggregated: only if every source is. Reclassifier
    passes: see the module docstring. Commutative, associative and idempotent.
    """
    if not labels:
        raise LineageError("union_labels needs at least one AssetLabels (an empty union has no consent)")
    first = labels[0]
    if len(labels) == 1:
        return first
    categories = first.categories.union(*(item.categories for item in labels[1:]))
    consented = first.consented.intersection(*(item.consented for item in labels[1:]))
    origins = first.origins.union(*(item.origins for item in labels[1:]))
    aggregated = all(item.aggregated for item in labels)
    return AssetLabels(
        categories=categories,
        consented=consented,
        aggregated=aggregated,
        origins=origins,
        reclassified_by=_joint_passes(labels, reclassifier_zones),
    )


def _joint_passes(labels: Sequence[AssetLabels], zones: Mapping[str, str]) -> frozenset[str]:
    candidates = frozenset[str]().union(*(item.reclassified_by for item in labels))
    if not candidates:
        return candidates
    kept: list[str] = []
    for name in candidates:
        zone = zones.get(name)
        if all(
            name in item.reclassified_by or (zone is not None and zone not in item.origins) for item in labels
        ):
            kept.append(name)
    return frozenset(kept)


def output_labels(
    *,
    zone: str | None,
    inputs: Sequence[AssetLabels | None],
    reclassifier: ReclassifierSpec | None = None,
    reclassifier_zones: Mapping[str, str],
) -> AssetLabels:
    """The labels of what a task in ``zone`` writes, given its inputs' effective labels.

    Without a reclassifier: the union of the inputs (:func:`union_labels`), with ``zone`` added
    to the origins, and without passes of reclassifiers that run in ``zone`` (the task may have
    added raw data of its own zone). An input labeled ``None`` counts as :data:`UNLABELED`; a task
    without inputs writes :data:`UNLABELED` data of its zone. ``zone=None`` (an unzoned task)
    adds no origin.

    With a reclassifier (the task is the one the policy names, in the policy's zone for it), the
    declared outputs replace: ``consented`` and ``aggregated`` always (an omitted ``consented``
    means no purpose, an omitted ``aggregated`` means false), ``categories`` when declared (else
    the inputs' union is kept). Carried over: origins (history, plus ``zone``) and the passes of
    other zones; ``reclassified_by`` gets the reclassifier's name, replacing passes of other
    reclassifiers of the same zone.
    """
    if reclassifier is not None and zone != reclassifier.zone:
        raise LineageError(
            f"reclassifier {reclassifier.name!r} runs in zone {reclassifier.zone!r} according to the policy, "
            f"but the task ran in zone {zone!r}: run {reclassifier.dag_id}.{reclassifier.task_id} in "
            f"zone {reclassifier.zone!r}, or correct reclassifiers.{reclassifier.name}.zone"
        )
    sources = [UNLABELED if item is None else item for item in inputs]
    joined = union_labels(*sources, reclassifier_zones=reclassifier_zones) if sources else UNLABELED
    origins = joined.origins if zone is None or zone in joined.origins else joined.origins | {zone}
    passes = joined.reclassified_by
    if zone is not None and passes:
        passes = frozenset(name for name in passes if reclassifier_zones.get(name) != zone)
    if reclassifier is None:
        if origins is joined.origins and passes is joined.reclassified_by:
            return joined
        return AssetLabels(
            categories=joined.categories,
            consented=joined.consented,
            aggregated=joined.aggregated,
            origins=origins,
            reclassified_by=passes,
        )
    return AssetLabels(
        categories=joined.categories if reclassifier.categories is None else reclassifier.categories,
        consented=reclassifier.consented,
        aggregated=reclassifier.aggregated,
        origins=origins,
        reclassified_by=passes | {reclassifier.name},
    )


def effective_labels(
    *,
    catalog: AssetLabels | None,
    propagated: AssetLabels | None,
    reclassifier_zones: Mapping[str, str],
) -> AssetLabels | None:
    """What the decision uses for one asset: the union of catalog and propagated labels
    (:func:`union_labels`).

    Either alone when the other is ``None``; ``None`` when nothing is known. A catalog entry can
    thus add restrictions to propagated labels but never lift them, and vice versa.
    """
    if catalog is None:
        return propagated
    if propagated is None:
        return catalog
    return union_labels(catalog, propagated, reclassifier_zones=reclassifier_zones)


def at_least_as_restricted(
    *, downstream: AssetLabels, upstream: AssetLabels, reclassifier_zones: Mapping[str, str]
) -> bool:
    """Whether every zone that may read ``downstream`` may also read ``upstream`` (module docstring)."""
    if not (
        downstream.categories >= upstream.categories
        and downstream.consented <= upstream.consented
        and (upstream.aggregated or not downstream.aggregated)
        and downstream.origins >= upstream.origins
    ):
        return False
    for name in downstream.reclassified_by - upstream.reclassified_by:
        zone = reclassifier_zones.get(name)
        if zone is None or zone in upstream.origins:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Reclassification:
    """One run of a reclassifier, for the audit trail: which task changed which labels, and how."""

    reclassifier: str
    zone: str
    dag_id: str
    task_id: str
    inputs: tuple[LabeledInput, ...]
    outputs: tuple[InputRef, ...]
    before: AssetLabels
    """What the outputs would carry had the task not been a reclassifier (its inputs propagated)."""
    after: AssetLabels
    """What the outputs carry: the policy's declared labels applied."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "reclassifier": self.reclassifier,
            "zone": self.zone,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "inputs": [
                {
                    "namespace": item.ref.namespace,
                    "name": item.ref.name,
                    "labels": None if item.labels is None else item.labels.to_dict(),
                }
                for item in self.inputs
            ],
            "outputs": [{"namespace": ref.namespace, "name": ref.name} for ref in self.outputs],
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }


def reclassify(
    *,
    reclassifier: ReclassifierSpec,
    dag_id: str,
    task_id: str,
    zone: str | None,
    inputs: Iterable[LabeledInput],
    outputs: Iterable[InputRef],
    reclassifier_zones: Mapping[str, str],
) -> Reclassification:
    """Apply a reclassifier to one task's outputs and describe it for the audit trail.

    Raises :class:`LineageError` when the task is not the one the policy names, or runs in
    another zone: a reclassifier changes labels only as the reviewed task in its own zone.
    """
    if (dag_id, task_id) != (reclassifier.dag_id, reclassifier.task_id):
        raise LineageError(
            f"task {dag_id}.{task_id} is not reclassifier {reclassifier.name!r}, which the policy declares "
            f"as {reclassifier.dag_id}.{reclassifier.task_id}: look the reclassifier up by the task "
            "(PolicyEngine.reclassifier_for) instead of naming it"
        )
    items = tuple(inputs)
    labels = [item.labels for item in items]
    before = output_labels(zone=zone, inputs=labels, reclassifier_zones=reclassifier_zones)
    after = output_labels(
        zone=zone, inputs=labels, reclassifier=reclassifier, reclassifier_zones=reclassifier_zones
    )
    return Reclassification(
        reclassifier=reclassifier.name,
        zone=reclassifier.zone,
        dag_id=dag_id,
        task_id=task_id,
        inputs=items,
        outputs=tuple(outputs),
        before=before,
        after=after,
    )
