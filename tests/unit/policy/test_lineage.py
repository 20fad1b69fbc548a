"""Label propagation: output labels, effective labels, the restriction order, reclassification records."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
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
from airflow_policyzones.policy.lineage import (
    UNLABELED,
    LineageError,
    ReclassifierSpec,
    at_least_as_restricted,
    effective_labels,
    output_labels,
    reclassify,
    union_labels,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
LINEAGE_POLICY = Path(__file__).resolve().parents[2] / "fixtures" / "lineage" / "policy.yaml"
# Which zone each reclassifier runs in: 'anonymize' and 'sample' in ads, 'watch_agg' in recs.
ZONES = {"anonymize": "ads", "sample": "ads", "watch_agg": "recs"}


def labels(
    categories: str = "",
    consented: str = "",
    *,
    aggregated: bool = False,
    origins: str = "",
    passes: str = "",
) -> AssetLabels:
    """Compact labels: space-separated names."""
    return AssetLabels(
        categories=frozenset(categories.split()),
        consented=frozenset(consented.split()),
        aggregated=aggregated,
        origins=frozenset(origins.split()),
        reclassified_by=frozenset(passes.split()),
    )


PURCHASES_DAILY = ReclassifierSpec(
    name="purchases_daily",
    zone="ads",
    dag_id="purchases_reclassify",
    task_id="aggregate",
    categories=None,
    consented=frozenset({"ai"}),
    aggregated=True,
)


@pytest.fixture(scope="module")
def lineage_engine() -> PolicyEngine:
    return PolicyEngine.from_file(LINEAGE_POLICY)


# --- output_labels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "inputs", "expected"),
    [
        pytest.param(
            "ads",
            [labels("purchases", "ads")],
            labels("purchases", "ads", origins="ads"),
            id="one-input-gets-the-zone-as-origin",
        ),
        pytest.param(
            "mix",
            [
                labels("purchases", "ads ai", aggregated=True, origins="x"),
                labels("watch", "ai recs", aggregated=True, origins="y"),
            ],
            labels("purchases watch", "ai", aggregated=True, origins="mix x y"),
            id="categories-union-consent-intersection-origins-union",
        ),
        pytest.param(
            "ads",
            [labels("a", aggregated=True), labels("b", aggregated=False)],
            labels("a b", origins="ads"),
            id="aggregated-only-if-every-input-is",
        ),
        pytest.param("ads", [], labels(origins="ads"), id="no-inputs-own-zone-data-consented-for-nothing"),
        pytest.param(
            "ads",
            [labels("purchases", "ai", aggregated=True), None],
            labels("purchases", origins="ads"),
            id="unlabeled-input-voids-consent-and-aggregation",
        ),
        pytest.param(
            None, [labels("a", "p", origins="x")], labels("a", "p", origins="x"), id="unzoned-adds-no-origin"
        ),
        pytest.param(
            "ai",
            [labels(origins="ads", passes="anonymize")],
            labels(origins="ads ai", passes="anonymize"),
            id="pass-carried-into-another-zone",
        ),
        pytest.param(
            "ai",
            [labels(origins="ads", passes="anonymize"), labels(origins="ads")],
            labels(origins="ads ai"),
            id="pass-voided-by-raw-data-of-its-zone",
        ),
        pytest.param(
            "ai",
            [labels(origins="ads", passes="anonymize"), labels("watch")],
            labels("watch", origins="ads ai", passes="anonymize"),
            id="pass-kept-beside-data-of-no-zone",
        ),
        pytest.param(
            "ai",
            [labels(origins="ads", passes="anonymize"), labels(origins="recs", passes="watch_agg")],
            labels(origins="ads ai recs", passes="anonymize watch_agg"),
            id="passes-of-two-zones-both-kept",
        ),
        pytest.param(
            "ads",
            [labels(origins="ads", passes="anonymize")],
            labels(origins="ads"),
            id="own-zone-pass-dropped-a-copy-is-not-the-reclassifier-output",
        ),
        pytest.param(
            "ai",
            [labels(passes="legacy"), labels(passes="legacy")],
            labels(origins="ai", passes="legacy"),
            id="unknown-pass-kept-when-every-input-has-it",
        ),
        pytest.param(
            "ai",
            [labels(passes="legacy"), labels()],
            labels(origins="ai"),
            id="unknown-pass-dropped-otherwise",
        ),
    ],
)
def test_output_labels_without_reclassifier(
    zone: str | None, inputs: list[AssetLabels | None], expected: AssetLabels
) -> None:
    assert output_labels(zone=zone, inputs=inputs, reclassifier_zones=ZONES) == expected


@pytest.mark.parametrize(
    ("spec", "inputs", "expected"),
    [
        pytest.param(
            PURCHASES_DAILY,
            [labels("purchases", "ads"), labels("refunds", "ads recs", origins="upstream")],
            labels(
                "purchases refunds", "ai", aggregated=True, origins="ads upstream", passes="purchases_daily"
            ),
            id="declared-consent-and-aggregation-replace-categories-kept-origins-history",
        ),
        pytest.param(
            ReclassifierSpec(
                name="stats",
                zone="ads",
                dag_id="d",
                task_id="t",
                categories=frozenset({"purchase_stats"}),
                consented=frozenset({"ai", "recs"}),
                aggregated=True,
            ),
            [labels("purchases", "ads")],
            labels("purchase_stats", "ai recs", aggregated=True, origins="ads", passes="stats"),
            id="declared-categories-replace",
        ),
        pytest.param(
            ReclassifierSpec(
                name="sample",
                zone="ads",
                dag_id="d",
                task_id="t",
                categories=None,
                consented=frozenset(),
                aggregated=False,
            ),
            [labels("purchases", "ads ai", aggregated=True)],
            labels("purchases", origins="ads", passes="sample"),
            id="omitted-consent-and-aggregation-mean-none-and-false",
        ),
        pytest.param(
            PURCHASES_DAILY,
            [labels(origins="ads recs", passes="anonymize watch_agg")],
            labels("", "ai", aggregated=True, origins="ads recs", passes="purchases_daily watch_agg"),
            id="replaces-same-zone-passes-keeps-other-zones-passes",
        ),
    ],
)
def test_output_labels_of_a_reclassifier(
    spec: ReclassifierSpec, inputs: list[AssetLabels], expected: AssetLabels
) -> None:
    assert (
        output_labels(zone=spec.zone, inputs=inputs, reclassifier=spec, reclassifier_zones=ZONES) == expected
    )


def test_reclassifier_outside_its_zone_is_refused() -> None:
    with pytest.raises(LineageError) as caught:
        output_labels(zone="recs", inputs=[], reclassifier=PURCHASES_DAILY, reclassifier_zones=ZONES)
    assert str(caught.value) == (
        "reclassifier 'purchases_daily' runs in zone 'ads' according to the policy, but the task ran in "
        "zone 'recs': run purchases_reclassify.aggregate in zone 'ads', or correct "
        "reclassifiers.purchases_daily.zone"
    )


# --- union and effective labels -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("catalog", "propagated", "expected"),
    [
        pytest.param(None, None, None, id="nothing-known"),
        pytest.param(labels("a", "p"), None, labels("a", "p"), id="catalog-only"),
        pytest.param(None, labels("a", origins="x"), labels("a", origins="x"), id="propagated-only"),
        pytest.param(
            labels("purchases", "ai", aggregated=True),
            labels("purchases", "ai ads", origins="ads", passes="anonymize"),
            labels("purchases", "ai", origins="ads", passes="anonymize"),
            id="most-restrictive-of-both",
        ),
        pytest.param(
            labels("purchases", origins="ads"),
            labels("purchases", origins="ads", passes="anonymize"),
            labels("purchases", origins="ads"),
            id="catalog-origin-without-pass-voids-the-pass",
        ),
    ],
)
def test_effective_labels(
    catalog: AssetLabels | None, propagated: AssetLabels | None, expected: AssetLabels | None
) -> None:
    assert effective_labels(catalog=catalog, propagated=propagated, reclassifier_zones=ZONES) == expected


def test_union_of_nothing_is_refused() -> None:
    with pytest.raises(LineageError, match="at least one"):
        union_labels(reclassifier_zones=ZONES)


def test_unlabeled_is_the_empty_labels() -> None:
    assert AssetLabels() == UNLABELED


# --- restriction order ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("downstream", "upstream", "expected"),
    [
        pytest.param(labels("a", "p"), labels("a", "p"), True, id="equal"),
        pytest.param(labels("a b", "p"), labels("a", "p"), True, id="more-categories"),
        pytest.param(labels("a", "p"), labels("a b", "p"), False, id="fewer-categories"),
        pytest.param(labels("a", ""), labels("a", "p"), True, id="less-consent"),
        pytest.param(labels("a", "p q"), labels("a", "p"), False, id="more-consent"),
        pytest.param(labels(aggregated=False), labels(aggregated=True), True, id="de-aggregated"),
        pytest.param(labels(aggregated=True), labels(aggregated=False), False, id="aggregated"),
        pytest.param(labels(origins="x y"), labels(origins="x"), True, id="more-origins"),
        pytest.param(labels(origins="x"), labels(origins="x y"), False, id="fewer-origins"),
        pytest.param(
            labels(origins="ads", passes="anonymize"),
            labels(origins="ads"),
            False,
            id="pass-for-carried-zone",
        ),
        pytest.param(
            labels(origins="ads recs", passes="anonymize"),
            labels(origins="recs"),
            True,
            id="pass-for-zone-upstream-does-not-carry",
        ),
        pytest.param(labels(passes="legacy"), labels(), False, id="unknown-pass"),
        pytest.param(labels(), labels(passes="anonymize"), True, id="pass-dropped"),
    ],
)
def test_at_least_as_restricted(downstream: AssetLabels, upstream: AssetLabels, expected: bool) -> None:
    assert (
        at_least_as_restricted(downstream=downstream, upstream=upstream, reclassifier_zones=ZONES) is expected
    )


# --- reclassifiers and their records --------------------------------------------------------------


def test_reclassifier_spec_from_policy(lineage_engine: PolicyEngine) -> None:
    spec = ReclassifierSpec.from_policy(policy=lineage_engine.policy, name="purchases_consented_daily")
    assert spec == ReclassifierSpec(
        name="purchases_consented_daily",
        zone="ads_optimization",
        dag_id="purchases_reclassify",
        task_id="aggregate_consented",
        categories=None,
        consented=frozenset({"ai_training"}),
        aggregated=True,
    )
    with pytest.raises(LineageError) as caught:
        ReclassifierSpec.from_policy(policy=lineage_engine.policy, name="purchases_daily")
    assert "unknown reclassifier 'purchases_daily'" in str(caught.value)
    assert "declared: purchases_consented_daily, watch_aggregates" in str(caught.value)


def test_reclassify_records_labels_before_and_after(lineage_engine: PolicyEngine) -> None:
    spec = ReclassifierSpec.from_policy(policy=lineage_engine.policy, name="purchases_consented_daily")
    raw = InputRef.asset("s3://lake/raw/purchases/2026-06-01")
    output = InputRef.asset("s3://lake/derived/purchases_consented_daily/2026-06-01")
    record = reclassify(
        reclassifier=spec,
        dag_id="purchases_reclassify",
        task_id="aggregate_consented",
        zone="ads_optimization",
        inputs=lineage_engine.label([raw]),
        outputs=[output],
        reclassifier_zones=lineage_engine.reclassifier_zones,
    )
    assert record.before == labels("purchase_events", "ads_optimization", origins="ads_optimization")
    assert record.after == labels(
        "purchase_events",
        "ai_training",
        aggregated=True,
        origins="ads_optimization",
        passes="purchases_consented_daily",
    )
    data = json.loads(json.dumps(record.to_dict()))
    assert data["reclassifier"] == "purchases_consented_daily"
    assert data["inputs"] == [
        {
            "namespace": "asset",
            "name": "s3://lake/raw/purchases/2026-06-01",
            "labels": {
                "categories": ["purchase_events"],
                "consented": ["ads_optimization"],
                "aggregated": False,
                "origins": [],
                "reclassified_by": [],
            },
        }
    ]
    assert data["outputs"] == [{"namespace": "asset", "name": output.name}]
    assert data["after"]["reclassified_by"] == ["purchases_consented_daily"]
    # The record's output labels are what ai_training may read; the labels before are not.
    task = TaskContext(dag_id="ai_training_recsys", task_id="train")
    for labels_, outcome in ((record.after, Outcome.ALLOW), (record.before, Outcome.DENY)):
        decision = lineage_engine.decide(
            task=task, zone="ai_training", inputs=[LabeledInput(output, labels_)], now=NOW
        )
        assert decision.outcome is outcome


def test_reclassify_refuses_another_task(lineage_engine: PolicyEngine) -> None:
    spec = ReclassifierSpec.from_policy(policy=lineage_engine.policy, name="purchases_consented_daily")
    with pytest.raises(LineageError) as caught:
        reclassify(
            reclassifier=spec,
            dag_id="ads_daily",
            task_id="aggregate",
            zone="ads_optimization",
            inputs=[],
            outputs=[],
            reclassifier_zones=lineage_engine.reclassifier_zones,
        )
    assert "task ads_daily.aggregate is not reclassifier 'purchases_consented_daily'" in str(caught.value)
    assert "purchases_reclassify.aggregate_consented" in str(caught.value)


# --- engine additions used by propagation ---------------------------------------------------------


def test_engine_knows_reclassifier_zones_and_tasks(lineage_engine: PolicyEngine) -> None:
    assert dict(lineage_engine.reclassifier_zones) == {
        "purchases_consented_daily": "ads_optimization",
        "watch_aggregates": "content_recommendations",
    }
    assert (
        lineage_engine.reclassifier_for(dag_id="purchases_reclassify", task_id="aggregate_consented")
        == "purchases_consented_daily"
    )
    assert lineage_engine.reclassifier_for(dag_id="purchases_reclassify", task_id="other") is None


@pytest.mark.parametrize(
    ("zone", "item", "expected"),
    [
        pytest.param("ai_training", labels(origins="ads_optimization"), ("ads_optimization",), id="no-pass"),
        pytest.param(
            "ai_training",
            labels(origins="ads_optimization", passes="purchases_consented_daily"),
            (),
            id="through-its-reclassifier",
        ),
        pytest.param(
            "ai_training",
            labels(origins="content_recommendations ads_optimization", passes="purchases_consented_daily"),
            ("content_recommendations",),
            id="one-of-two-origins",
        ),
        pytest.param("ads_optimization", labels(origins="ads_optimization"), (), id="own-zone"),
        pytest.param(
            "content_recommendations",
            labels(origins="ai_training ads_optimization"),
            ("ads_optimization", "ai_training"),
            id="sorted",
        ),
    ],
)
def test_unsanctioned_origins(
    lineage_engine: PolicyEngine, zone: str, item: AssetLabels, expected: tuple[str, ...]
) -> None:
    assert lineage_engine.unsanctioned_origins(zone=zone, labels=item) == expected


def test_unsanctioned_origins_of_an_unknown_zone(lineage_engine: PolicyEngine) -> None:
    with pytest.raises(KeyError, match="zone 'nowhere' is not defined"):
        lineage_engine.unsanctioned_origins(zone="nowhere", labels=labels())


# --- properties -----------------------------------------------------------------------------------

# A policy where every kind of flow exists: direct (src → open), by inflows (src → inflow), through
# a reclassifier (src → guarded via 'anonymize'), and none (closed); 'guarded' also requires consent
# and aggregation.
PROPERTY_POLICY = """
    categories: {a: {}, b: {}}
    zones:
      src:     {purpose: src, allowed_categories: [a, b], members: {dag_ids: ["*"]}}
      open:    {purpose: open, allowed_categories: [a, b], members: {dag_ids: ["*"]}}
      inflow:  {purpose: inflow, allowed_categories: [a], inflows: [src], members: {dag_ids: ["*"]}}
      guarded:
        purpose: guarded
        allowed_categories: [a, b]
        requires_consent: true
        aggregated_only: true
        members: {dag_ids: ["*"]}
      closed:  {purpose: closed, allowed_categories: [a], unlabeled: allow, members: {dag_ids: ["*"]}}
    reclassifiers:
      anonymize: {zone: src, dag_id: d, task_id: t, outputs: {aggregated: true, consented: [guarded]}}
      other: {zone: open, dag_id: d, task_id: u, outputs: {aggregated: true}}
    flows:
      - {from: src, to: open}
      - {from: src, to: guarded, via: [anonymize]}
      - {from: open, to: guarded, via: [other]}
"""
PROPERTY_ENGINE = PolicyEngine(
    load_policy_bytes(textwrap.dedent(PROPERTY_POLICY).encode(), source="property.yaml", now=NOW)
)
PROPERTY_ZONES = PROPERTY_ENGINE.reclassifier_zones
ZONE_NAMES = ["src", "open", "inflow", "guarded", "closed"]


def _names(values: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(values), max_size=len(values))


asset_labels = st.builds(
    AssetLabels,
    categories=_names(["a", "b"]),
    consented=_names(ZONE_NAMES),
    aggregated=st.booleans(),
    origins=_names(ZONE_NAMES),
    reclassified_by=_names(["anonymize", "other", "legacy"]),
)


def _allowed(zone: str, item: AssetLabels) -> bool:
    ref = InputRef.asset("s3://x")
    task = TaskContext(dag_id="d", task_id="t")
    return PROPERTY_ENGINE.decide(task=task, zone=zone, inputs=[LabeledInput(ref, item)], now=NOW).allowed


@settings(max_examples=300, deadline=None)
@given(asset_labels, asset_labels, asset_labels)
def test_union_is_a_join(left: AssetLabels, middle: AssetLabels, right: AssetLabels) -> None:
    def union(*items: AssetLabels) -> AssetLabels:
        return union_labels(*items, reclassifier_zones=PROPERTY_ZONES)

    assert union(left, right) == union(right, left)
    assert (
        union(union(left, middle), right) == union(left, union(middle, right)) == union(left, middle, right)
    )
    assert union(left, left) == left
    joined = union(left, middle, right)
    for item in (left, middle, right):
        assert at_least_as_restricted(downstream=joined, upstream=item, reclassifier_zones=PROPERTY_ZONES)


@settings(max_examples=300, deadline=None)
@given(asset_labels, st.lists(asset_labels | st.none(), max_size=3), st.sampled_from([*ZONE_NAMES, None]))
def test_outputs_are_at_least_as_restricted_and_never_readable_where_inputs_are_not(
    upstream: AssetLabels, others: list[AssetLabels | None], zone: str | None
) -> None:
    """The engine agrees with the order: no zone may read an output whose input it may not read."""
    output = output_labels(zone=zone, inputs=[upstream, *others], reclassifier_zones=PROPERTY_ZONES)
    assert at_least_as_restricted(downstream=output, upstream=upstream, reclassifier_zones=PROPERTY_ZONES)
    for reader in ZONE_NAMES:
        if _allowed(reader, output):
            assert _allowed(reader, upstream), reader


@settings(max_examples=500, deadline=None)
@given(asset_labels, asset_labels, _names(["anonymize", "other", "legacy"]), asset_labels)
def test_restriction_order_is_sound_for_the_engine(
    upstream: AssetLabels, extra: AssetLabels, dropped: frozenset[str], unrelated: AssetLabels
) -> None:
    """Labels at least as restricted as others are readable in no zone the others are not."""
    joined = union_labels(upstream, extra, reclassifier_zones=PROPERTY_ZONES)
    downstream = AssetLabels(
        categories=joined.categories,
        consented=joined.consented,
        aggregated=joined.aggregated,
        origins=joined.origins,
        reclassified_by=joined.reclassified_by - dropped,
    )
    assert at_least_as_restricted(downstream=downstream, upstream=upstream, reclassifier_zones=PROPERTY_ZONES)
    for candidate in (downstream, unrelated):
        if at_least_as_restricted(downstream=candidate, upstream=upstream, reclassifier_zones=PROPERTY_ZONES):
            for reader in ZONE_NAMES:
                if _allowed(reader, candidate):
                    assert _allowed(reader, upstream), reader
