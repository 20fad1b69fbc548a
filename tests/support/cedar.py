"""A model of the policy-zones engine in AWS Cedar, for differential tests and benchmarks.

Only a subset of the engine is modelled: the category, consent, aggregation and flow rules of
``_Zone.check`` (README, "Decision rules" 3-6) for *labeled* inputs. Zone membership,
unlabeled inputs, modes and exemptions are out of the subset.

One Cedar request per (zone, input):

* principal ``Zone::"<zone>"`` with attributes ``allowed`` (Set of String), ``purpose`` (String),
  ``requires_consent`` and ``aggregated_only`` (Bool), and ``flow_ok`` (Set of String: the zones
  sanctioned into it unconditionally plus the zones that may flow into it through reclassifiers);
* action ``Action::"read"``;
* resource ``Input::"<n>"`` with attributes ``categories``, ``consented``, ``origins``,
  ``reclassified_by`` (Sets of String) and ``aggregated`` (Bool).

The policy is one ``permit`` for everything plus ``forbid`` rules that mirror the engine's rules;
each ``forbid`` carries ``@id("<rule id>")`` so that a Cedar decision names the engine rules that
denied it. A task is allowed iff every one of its inputs is allowed.

Flows are translated in one of two equivalent encodings:

``"pairs"``
    For every ordered pair of zones (X, Z) where X is not sanctioned into Z unconditionally (Z
    itself, Z's inflows, flows X→Z without ``via``), one ``forbid`` for principal Z when
    ``resource.origins.contains("X") && !resource.reclassified_by.containsAny([via of X→Z])``
    (an empty list when there is no ``via`` flow), plus one ``forbid`` for origins that name no
    zone of the policy. Literal, but quadratic in the number of zones.
``"compact"``
    The pairs without ``via`` become one ``forbid`` on ``!principal.flow_ok.containsAll(
    resource.origins)``; the pairs with ``via`` keep their own ``forbid``. Linear in the number of
    flows: the fair encoding to time Cedar against (Cedar evaluates every policy per request).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cedarpy

from airflow_policyzones.policy import AssetLabels, LoadedPolicy, Policy, PolicyEngine, Rule

FlowEncoding = Literal["pairs", "compact"]

ACTION: dict[str, str] = {"type": "Action", "id": "read"}
_ACTION_ENTITY: dict[str, Any] = {"uid": ACTION, "attrs": {}, "parents": []}


def _policy_of(source: Policy | LoadedPolicy | PolicyEngine) -> Policy:
    if isinstance(source, PolicyEngine):
        return source.policy
    if isinstance(source, LoadedPolicy):
        return source.policy
    return source


def _literal(value: str) -> str:
    """A Cedar string literal (Cedar's escapes are a superset of what ``json.dumps`` emits)."""
    return json.dumps(value)


def _set(values: Iterable[str]) -> str:
    return "[" + ", ".join(_literal(v) for v in sorted(values)) + "]"


@dataclass(frozen=True, slots=True)
class _ZoneFlows:
    sanctioned: frozenset[str]
    """Zones whose data may enter unconditionally (the zone itself, inflows, flows without via)."""
    via: dict[str, frozenset[str]]
    """Zones whose data may enter only through these reclassifiers (not sanctioned otherwise)."""


def _zone_flows(policy: Policy, name: str) -> _ZoneFlows:
    """The same reading of ``inflows`` and ``flows`` as ``_Zone.__init__`` in the engine."""
    sanctioned = {name, *policy.zones[name].inflows}
    via: dict[str, set[str]] = {}
    for flow in policy.flows:
        if flow.target != name:
            continue
        if flow.via:
            via.setdefault(flow.source, set()).update(flow.via)
        else:
            sanctioned.add(flow.source)
    return _ZoneFlows(
        frozenset(sanctioned),
        {source: frozenset(names) for source, names in via.items() if source not in sanctioned},
    )


def policy_text(source: Policy | LoadedPolicy | PolicyEngine, *, flows: FlowEncoding = "compact") -> str:
    """The Cedar policy set that models ``source`` (see the module docstring)."""
    policy = _policy_of(source)
    read = 'action == Action::"read"'
    lines = [
        f'@id("permit_all")\npermit (principal is Zone, {read}, resource is Input);',
        f'@id("{Rule.CATEGORY_NOT_ALLOWED.value}")\n'
        f"forbid (principal, {read}, resource)\n"
        "when { !principal.allowed.containsAll(resource.categories) };",
        f'@id("{Rule.CONSENT_MISSING.value}")\n'
        f"forbid (principal, {read}, resource)\n"
        "when { principal.requires_consent && !resource.consented.contains(principal.purpose) };",
        f'@id("{Rule.NOT_AGGREGATED.value}")\n'
        f"forbid (principal, {read}, resource)\n"
        "when { principal.aggregated_only && !resource.aggregated };",
    ]
    flow_id = f'@id("{Rule.UNSANCTIONED_FLOW.value}")'
    zones = list(policy.zones)
    if flows == "compact":
        lines.append(
            f"{flow_id}\nforbid (principal, {read}, resource)\n"
            "when { !principal.flow_ok.containsAll(resource.origins) };"
        )
    else:
        lines.append(
            f"{flow_id}\nforbid (principal, {read}, resource)\n"
            f"when {{ !{_set(zones)}.containsAll(resource.origins) }};"
        )
    for target in zones:
        rules = _zone_flows(policy, target)
        sources = zones if flows == "pairs" else sorted(rules.via)
        for origin in sources:
            if origin in rules.sanctioned:
                continue
            reclassifiers = rules.via.get(origin, frozenset())
            lines.append(
                f"{flow_id}\nforbid (principal == Zone::{_literal(target)}, {read}, resource)\n"
                f"when {{ resource.origins.contains({_literal(origin)}) && "
                f"!resource.reclassified_by.containsAny({_set(reclassifiers)}) }};"
            )
    return "\n\n".join(lines) + "\n"


def zone_entities(source: Policy | LoadedPolicy | PolicyEngine) -> list[dict[str, Any]]:
    """The principal entities (one per zone) and the action entity."""
    policy = _policy_of(source)
    entities: list[dict[str, Any]] = [_ACTION_ENTITY]
    for name, spec in policy.zones.items():
        rules = _zone_flows(policy, name)
        entities.append(
            {
                "uid": {"type": "Zone", "id": name},
                "attrs": {
                    "allowed": sorted(set(spec.allowed_categories)),
                    "purpose": spec.purpose,
                    "requires_consent": spec.requires_consent,
                    "aggregated_only": spec.aggregated_only,
                    "flow_ok": sorted(rules.sanctioned | set(rules.via)),
                },
                "parents": [],
            }
        )
    return entities


def input_entity(uid: str, labels: AssetLabels | None) -> dict[str, Any]:
    """The resource entity for one input; unlabeled inputs are outside the modelled subset."""
    if labels is None:
        raise ValueError("unlabeled inputs are outside the Cedar model: give every input labels")
    return {
        "uid": {"type": "Input", "id": uid},
        "attrs": {
            "categories": sorted(labels.categories),
            "consented": sorted(labels.consented),
            "aggregated": labels.aggregated,
            "origins": sorted(labels.origins),
            "reclassified_by": sorted(labels.reclassified_by),
        },
        "parents": [],
    }


def request(zone: str, uid: str) -> dict[str, Any]:
    """The Cedar request: may zone ``zone`` read input ``uid``?"""
    return {
        "principal": {"type": "Zone", "id": zone},
        "action": ACTION,
        "resource": {"type": "Input", "id": uid},
        "context": {},
    }


@dataclass(frozen=True, slots=True)
class CedarResult:
    allowed: bool
    rules: frozenset[str]
    """The ``@id`` of every ``forbid`` that matched (engine rule ids); empty when allowed."""


def _checked(results: Sequence[cedarpy.AuthzResult]) -> Sequence[cedarpy.AuthzResult]:
    for result in results:
        errors = result.diagnostics.errors
        if errors:
            # A forbid that errors is skipped by Cedar: that would silently turn a deny into allow.
            raise AssertionError(f"Cedar evaluation errors: {errors}")
    return results


def evaluate_batch(
    requests: list[dict[str, Any]],
    policies: str | cedarpy.PolicySet,
    entities: list[dict[str, Any]] | cedarpy.Entities | str,
) -> list[bool]:
    """Allow (``True``) or deny for each request, in order, with ``cedarpy.is_authorized_batch``."""
    results = _checked(cedarpy.is_authorized_batch(requests, policies, entities))
    return [result.allowed for result in results]


class CedarModel:
    """The Cedar translation of one policy: policy set and zone entities parsed once."""

    def __init__(
        self, source: Policy | LoadedPolicy | PolicyEngine, *, flows: FlowEncoding = "compact"
    ) -> None:
        self.text = policy_text(source, flows=flows)
        self.policy_set = cedarpy.PolicySet.from_str(self.text)
        self.base_entities = cedarpy.Entities.from_json_str(json.dumps(zone_entities(source)))

    def _batch(
        self, cases: Sequence[tuple[str, AssetLabels | None]]
    ) -> tuple[list[dict[str, Any]], cedarpy.Entities]:
        inputs = [input_entity(str(n), labels) for n, (_zone, labels) in enumerate(cases)]
        requests = [request(zone, str(n)) for n, (zone, _labels) in enumerate(cases)]
        return requests, self.base_entities.with_added_json_str(json.dumps(inputs))

    def authorize(self, cases: Sequence[tuple[str, AssetLabels | None]]) -> list[bool]:
        """Allow/deny for each (zone, input labels), evaluated as one batch."""
        requests, entities = self._batch(cases)
        return evaluate_batch(requests, self.policy_set, entities)

    def authorize_task(self, zone: str, inputs: Sequence[AssetLabels | None]) -> bool:
        """A task is allowed iff every one of its inputs is allowed."""
        return all(self.authorize([(zone, labels) for labels in inputs]))

    def explain(self, cases: Sequence[tuple[str, AssetLabels | None]]) -> list[CedarResult]:
        """Like :meth:`authorize`, with the engine rule ids of the forbids that matched."""
        requests, entities = self._batch(cases)
        results = _checked(cedarpy.is_authorized_batch(requests, self.policy_set, entities))
        explained: list[CedarResult] = []
        for result in results:
            diagnostics = result.diagnostics
            annotations = diagnostics.id_annotations_by_reason
            rules = frozenset() if result.allowed else frozenset(annotations[r] for r in diagnostics.reasons)
            explained.append(CedarResult(result.allowed, rules))
        return explained
