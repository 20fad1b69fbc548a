"""Differential test: the engine and an independent model of it in AWS Cedar agree.

Random policies (zones, categories, consent and aggregation requirements, inflows, flows with and
without reclassifiers) and random labeled inputs; for every (zone, input) the engine's decision
must equal Cedar's, down to the rule ids that denied it. See ``tests/support/cedar.py`` for the
modelled subset (labeled inputs; no membership, no exemptions).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_policyzones.policy import (
    AssetLabels,
    InputRef,
    LabeledInput,
    Outcome,
    PolicyEngine,
    TaskContext,
    load_policy_bytes,
)
from tests.support.cedar import CedarModel, FlowEncoding

pytestmark = pytest.mark.cedar

PURPOSES = ("ads", "recs", "training")
TASK = TaskContext(dag_id="any_dag", task_id="any_task")
EXAMPLES = 150
MIN_CASES = 1_000


@dataclass(frozen=True)
class Scenario:
    policy_yaml: str
    zones: tuple[str, ...]
    inputs: tuple[AssetLabels, ...]


def _chance(percent: int) -> st.SearchStrategy[bool]:
    return st.integers(0, 99).map(lambda roll: roll < percent)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    zones = [f"z{i}" for i in range(draw(st.integers(2, 5)))]
    categories = [f"c{i}" for i in range(draw(st.integers(2, 6)))]
    reclassifiers: dict[str, dict[str, Any]] = {}
    for zone in zones:
        for k in range(draw(st.integers(0, 2))):
            reclassifiers[f"r_{zone}_{k}"] = {
                "zone": zone,
                "dag_id": f"dag_{zone}",
                "task_id": f"reclassify_{k}",
                "outputs": {"aggregated": True, "consented": [draw(st.sampled_from(PURPOSES))]},
            }
    zone_specs: dict[str, Any] = {}
    for zone in zones:
        others = [z for z in zones if z != zone]
        zone_specs[zone] = {
            "purpose": draw(st.sampled_from(PURPOSES)),
            "allowed_categories": draw(
                st.lists(st.sampled_from(categories), unique=True, min_size=len(categories) // 2)
            ),
            "requires_consent": draw(_chance(30)),
            "aggregated_only": draw(_chance(25)),
            "inflows": draw(st.lists(st.sampled_from(others), unique=True, max_size=2)),
            "members": {"dag_ids": ["*"]},
        }
    flows: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2 * len(zones)))):
        source = draw(st.sampled_from(zones))
        target = draw(st.sampled_from(zones))
        own = sorted(name for name, spec in reclassifiers.items() if spec["zone"] == source)
        via: list[str] = []
        if own and draw(_chance(60)):
            via = draw(st.lists(st.sampled_from(own), unique=True, max_size=2))
        flow: dict[str, Any] = {"from": source, "to": target}
        if via:
            flow["via"] = via
        flows.append(flow)
    policy = {
        "version": 1,
        "categories": {name: {} for name in categories},
        "zones": zone_specs,
        "flows": flows,
        "reclassifiers": reclassifiers,
    }
    origin_names = [*zones, "ghost_zone"]  # an origin the policy does not know: always unsanctioned
    reclassifier_names = sorted(reclassifiers) or ["none"]
    inputs = []
    for _ in range(draw(st.integers(8, 15))):
        origins = (
            draw(st.lists(st.sampled_from(origin_names), unique=True, min_size=1, max_size=2))
            if draw(_chance(45))
            else []
        )
        inputs.append(
            AssetLabels(
                categories=frozenset(draw(st.lists(st.sampled_from(categories), unique=True, max_size=2))),
                consented=frozenset(draw(st.lists(st.sampled_from(PURPOSES), unique=True, max_size=3))),
                aggregated=draw(_chance(50)),
                origins=frozenset(origins),
                reclassified_by=frozenset(
                    draw(st.lists(st.sampled_from(reclassifier_names), unique=True, max_size=2))
                ),
            )
        )
    return Scenario(yaml.safe_dump(policy, sort_keys=False), tuple(zones), tuple(inputs))


def _ref(n: int) -> InputRef:
    return InputRef.asset(f"s3://bucket/input-{n}")


@pytest.mark.parametrize("encoding", ["pairs", "compact"])
def test_engine_agrees_with_cedar(encoding: FlowEncoding) -> None:
    outcomes: Counter[str] = Counter()
    tasks: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(scenarios())
    def check(scenario: Scenario) -> None:
        engine = PolicyEngine(load_policy_bytes(scenario.policy_yaml.encode()))
        cedar = CedarModel(engine, flows=encoding)
        cases = [(zone, labels) for zone in scenario.zones for labels in scenario.inputs]
        cedar_results = cedar.explain(cases)
        per_zone: dict[str, bool] = {}
        for n, ((zone, labels), expected) in enumerate(zip(cases, cedar_results, strict=True)):
            decision = engine.decide(task=TASK, zone=zone, inputs=[LabeledInput(_ref(n), labels)])
            allowed = decision.outcome is Outcome.ALLOW
            rules = frozenset(rule.value for finding in decision.findings for rule in finding.rules)
            assert (allowed, rules) == (expected.allowed, expected.rules), (
                f"engine and Cedar disagree for zone {zone!r}, labels {labels}:\n"
                f"engine: {decision.outcome.value} {sorted(rules)}; "
                f"cedar: {'allow' if expected.allowed else 'deny'} {sorted(expected.rules)}\n"
                f"policy:\n{scenario.policy_yaml}"
            )
            outcomes["allow" if allowed else "deny"] += 1
            per_zone[zone] = per_zone.get(zone, True) and expected.allowed
        # A task is allowed iff every one of its inputs is allowed.
        for zone in scenario.zones:
            task_inputs = [LabeledInput(_ref(n), labels) for n, labels in enumerate(scenario.inputs)]
            decision = engine.decide(task=TASK, zone=zone, inputs=task_inputs)
            assert (decision.outcome is Outcome.ALLOW) == per_zone[zone]
            tasks["allow" if per_zone[zone] else "deny"] += 1

    check()

    total = outcomes["allow"] + outcomes["deny"]
    print(f"{encoding}: {total} (zone, input) cases {dict(outcomes)}; tasks {dict(tasks)}")
    assert total >= MIN_CASES, f"only {total} (zone, input) cases were generated"
    assert outcomes["allow"] >= 0.2 * total, f"allow is too rare to be a test: {dict(outcomes)}"
    assert outcomes["deny"] >= 0.2 * total, f"deny is too rare to be a test: {dict(outcomes)}"
    assert tasks["allow"] and tasks["deny"], f"task-level decisions are one-sided: {dict(tasks)}"
