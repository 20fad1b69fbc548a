"""The decision engine: every rule, exemptions, modes, settings, catalog matching and the seed examples."""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_policyzones.policy import (
    AssetLabels,
    Decision,
    InputRef,
    LabeledInput,
    Outcome,
    PolicyEngine,
    Rule,
    TaskContext,
    load_policy,
    load_policy_bytes,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
EXAMPLE_POLICY = Path(__file__).resolve().parents[3] / "dags_examples" / "policy.yaml"


def engine_for(text: str, *, now: datetime = NOW) -> PolicyEngine:
    """Compile an inline policy (YAML text, dedented) the way production code does."""
    return PolicyEngine(load_policy_bytes(textwrap.dedent(text).encode(), source="inline.yaml", now=now))


def rules_of(decision: Decision) -> list[tuple[str, ...]]:
    return [tuple(rule.value for rule in finding.rules) for finding in decision.findings]


def task(dag_id: str, task_id: str = "work", **kwargs: object) -> TaskContext:
    return TaskContext(dag_id=dag_id, task_id=task_id, **kwargs)  # type: ignore[arg-type]


# One policy serves the rule table. Zones:
#   ads      purchases + clicks allowed, members by dag_ids / files / tags / owners
#   recs     clicks only
#   training clicks + purchases, consent for 'training' and aggregated data required
#   open     everything labeled as purchases/clicks, unlabeled data allowed
#   sandbox  clicks only, dry_run
RULES_POLICY = """
    version: 1
    categories:
      purchases: {}
      clicks: {}
    catalog:
      - uri: "s3://lake/raw/purchases/**"
        categories: [purchases]
        consented: [ads]
      - uri: "s3://lake/raw/clicks/**"
        categories: [clicks]
        consented: [ads, training]
      - uri: "s3://lake/agg/clicks_consented/**"
        categories: [clicks]
        consented: [training]
        aggregated: true
      - uri: "s3://lake/agg/clicks_unconsented/**"
        categories: [clicks]
        aggregated: true
      - uri: "s3://lake/agg/purchases_unconsented/**"
        categories: [purchases]
        aggregated: true
      - uri: "s3://lake/raw/both/**"
        categories: [purchases, clicks]
        consented: [recs]
      - uri: "s3://lake/from_recs/**"
        categories: [clicks]
        origin_zones: [recs]
      - table: "warehouse.raw.purchases"
        categories: [purchases]
        consented: [ads]
    zones:
      ads:
        purpose: ads
        allowed_categories: [purchases, clicks]
        members:
          dag_ids: ["ads_*"]
          files: ["ads/*.py"]
          tags: [team-ads]
          owners: [ads-oncall]
      recs:
        purpose: recs
        allowed_categories: [clicks]
        members: {dag_ids: ["recs_*"]}
      training:
        purpose: training
        allowed_categories: [purchases, clicks]
        requires_consent: true
        aggregated_only: true
        members: {dag_ids: ["train_*"]}
      open:
        purpose: open
        allowed_categories: [purchases, clicks]
        unlabeled: allow
        members: {dag_ids: ["open_*"]}
      sandbox:
        purpose: sandbox
        allowed_categories: [clicks]
        mode: dry_run
        members: {dag_ids: ["sandbox_*"]}
"""


@pytest.fixture(scope="module")
def rules_engine() -> PolicyEngine:
    return engine_for(RULES_POLICY)


@dataclass(frozen=True)
class Case:
    zone: str | None
    task: TaskContext
    inputs: tuple[str, ...]
    outcome: Outcome
    rules: tuple[tuple[str, ...], ...] = ()
    finding_input: str | None = None
    reason_mentions: tuple[str, ...] = ()
    remediation_mentions: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


RULE_CASES = [
    pytest.param(
        Case("ads", task("ads_rank"), ("s3://lake/raw/purchases/2026/01.parquet",), Outcome.ALLOW),
        id="allow-allowed-category",
    ),
    pytest.param(Case("ads", task("ads_rank"), (), Outcome.ALLOW), id="allow-no-inputs"),
    pytest.param(
        Case(
            "nowhere",
            task("ads_rank"),
            ("s3://lake/raw/clicks/x",),
            Outcome.DENY,
            rules=(("unknown_zone",),),
            reason_mentions=("'nowhere'",),
            remediation_mentions=("'ads'", "'recs'", "'training'", "'nowhere'"),
        ),
        id="unknown_zone",
    ),
    pytest.param(
        Case(
            "recs",
            task("ads_rank"),
            ("s3://lake/raw/clicks/x",),
            Outcome.DENY,
            rules=(("zone_membership",),),
            reason_mentions=("'ads_rank'", "'recs'"),
            remediation_mentions=("zones.recs.members",),
        ),
        id="zone_membership-dag-not-member",
    ),
    pytest.param(
        Case("ads", task("someone_elses_dag", dag_file="ads/rank.py"), (), Outcome.ALLOW),
        id="zone_membership-member-by-file",
    ),
    pytest.param(
        Case(
            "ads",
            task("someone_elses_dag", dag_file="recs/rank.py"),
            (),
            Outcome.DENY,
            rules=(("zone_membership",),),
        ),
        id="zone_membership-file-not-member",
    ),
    pytest.param(
        Case("ads", task("someone_elses_dag", tags=frozenset({"x", "team-ads"})), (), Outcome.ALLOW),
        id="zone_membership-member-by-tag",
    ),
    pytest.param(
        Case(
            "ads",
            task("someone_elses_dag", tags=frozenset({"team-recs"})),
            (),
            Outcome.DENY,
            rules=(("zone_membership",),),
        ),
        id="zone_membership-tag-not-member",
    ),
    pytest.param(
        Case("ads", task("someone_elses_dag", owners=frozenset({"ads-oncall"})), (), Outcome.ALLOW),
        id="zone_membership-member-by-owner",
    ),
    pytest.param(
        Case(
            "ads",
            task("someone_elses_dag", owners=frozenset({"airflow"})),
            (),
            Outcome.DENY,
            rules=(("zone_membership",),),
        ),
        id="zone_membership-owner-not-member",
    ),
    pytest.param(
        Case(
            "recs",
            task("recs_daily"),
            ("s3://lake/raw/purchases/2026/01.parquet",),
            Outcome.DENY,
            rules=(("category_not_allowed",),),
            finding_input="s3://lake/raw/purchases/2026/01.parquet",
            reason_mentions=("'purchases'", "'recs'", "s3://lake/raw/purchases/2026/01.parquet"),
            remediation_mentions=("zones.recs.allowed_categories", "'purchases'"),
        ),
        id="category_not_allowed",
    ),
    pytest.param(
        Case(
            "recs",
            task("recs_daily"),
            ("s3://lake/raw/both/x",),
            Outcome.DENY,
            rules=(("category_not_allowed",),),
            finding_input="s3://lake/raw/both/x",
            reason_mentions=("'purchases'",),
        ),
        id="category_not_allowed-one-of-two-categories",
    ),
    pytest.param(
        Case(
            "recs",
            task("recs_daily"),
            ("s3://lake/unknown/x",),
            Outcome.DENY,
            rules=(("unlabeled_input",),),
            finding_input="s3://lake/unknown/x",
            reason_mentions=("s3://lake/unknown/x", "'recs'"),
            remediation_mentions=("catalog entry", "zones.recs.unlabeled: allow"),
        ),
        id="unlabeled_input-deny-by-default",
    ),
    pytest.param(
        Case("open", task("open_daily"), ("s3://lake/unknown/x",), Outcome.ALLOW),
        id="unlabeled_input-allow",
    ),
    pytest.param(
        Case(
            "open",
            task("open_daily"),
            ("s3://lake/unknown/x", "s3://lake/raw/clicks/x"),
            Outcome.ALLOW,
        ),
        id="unlabeled-allow-does-not-hide-labeled-inputs-that-pass",
    ),
    pytest.param(
        Case(
            "training",
            task("train_model"),
            ("s3://lake/agg/clicks_unconsented/day=1",),
            Outcome.DENY,
            rules=(("consent_missing",),),
            finding_input="s3://lake/agg/clicks_unconsented/day=1",
            reason_mentions=("no purpose", "'training'"),
            remediation_mentions=("outputs.consented: [training]",),
        ),
        id="consent_missing-no-consent",
    ),
    pytest.param(
        Case(
            "training",
            task("train_model"),
            ("s3://lake/raw/both/x",),
            Outcome.DENY,
            rules=(("consent_missing", "not_aggregated"),),
            reason_mentions=("consented for 'recs'", "user-level rows"),
            remediation_mentions=("consent-filter", "aggregating reclassifier"),
        ),
        id="consent_missing-other-purpose-and-not_aggregated",
    ),
    pytest.param(
        Case(
            "training",
            task("train_model"),
            ("s3://lake/raw/clicks/x",),
            Outcome.DENY,
            rules=(("not_aggregated",),),
            finding_input="s3://lake/raw/clicks/x",
            reason_mentions=("user-level rows", "'training'"),
            remediation_mentions=("outputs.aggregated: true",),
        ),
        id="not_aggregated",
    ),
    pytest.param(
        Case("training", task("train_model"), ("s3://lake/agg/clicks_consented/day=1",), Outcome.ALLOW),
        id="training-allows-consented-aggregates",
    ),
    pytest.param(
        Case(
            "ads",
            task("ads_rank"),
            ("s3://lake/from_recs/x",),
            Outcome.DENY,
            rules=(("unsanctioned_flow",),),
            finding_input="s3://lake/from_recs/x",
            reason_mentions=("'recs'", "recs → ads"),
            remediation_mentions=("flows:", "zones.ads.inflows", "'recs'"),
        ),
        id="unsanctioned_flow-catalog-origin",
    ),
    pytest.param(
        Case("recs", task("recs_daily"), ("s3://lake/from_recs/x",), Outcome.ALLOW),
        id="own-origin-is-always-sanctioned",
    ),
    pytest.param(
        Case(
            "recs",
            task("recs_daily"),
            ("s3://lake/raw/clicks/ok", "s3://lake/raw/purchases/bad", "s3://lake/nothing"),
            Outcome.DENY,
            rules=(("category_not_allowed",), ("unlabeled_input",)),
        ),
        id="one-finding-per-offending-input",
    ),
    pytest.param(
        Case(
            "sandbox",
            task("sandbox_job"),
            ("s3://lake/raw/purchases/x",),
            Outcome.DRY_RUN,
            rules=(("category_not_allowed",),),
            finding_input="s3://lake/raw/purchases/x",
            reason_mentions=("'sandbox'",),
        ),
        id="dry_run-violation",
    ),
    pytest.param(
        Case("sandbox", task("sandbox_job"), ("s3://lake/raw/clicks/x",), Outcome.ALLOW),
        id="dry_run-clean",
    ),
    pytest.param(
        Case(
            "sandbox",
            task("ads_rank"),
            ("s3://lake/raw/clicks/x",),
            Outcome.DENY,  # a DAG claims its zone: a dry_run zone's leniency is for its members only
            rules=(("zone_membership",),),
            reason_mentions=("'ads_rank'", "'sandbox'"),
        ),
        id="dry_run-zone_membership-denied",
    ),
    pytest.param(
        Case(
            None,
            task("ads_rank"),
            ("s3://lake/raw/clicks/x",),
            Outcome.DENY,
            rules=(("unzoned_task",),),
            reason_mentions=("ads_rank.work", "reads inputs"),
            remediation_mentions=("settings.default_zone",),
        ),
        id="unzoned_task-with-inputs",
    ),
    pytest.param(
        Case(None, task("ads_rank"), (), Outcome.ALLOW),
        id="unzoned-task-without-inputs-is-allowed",
    ),
]


@pytest.mark.parametrize("case", RULE_CASES)
def test_rules(rules_engine: PolicyEngine, case: Case) -> None:
    decision = rules_engine.check(
        task=case.task, zone=case.zone, inputs=[InputRef.asset(uri) for uri in case.inputs], now=NOW
    )
    assert decision.outcome is case.outcome, decision
    assert rules_of(decision) == list(case.rules)
    assert decision.allowed is (case.outcome is not Outcome.DENY)
    assert decision.policy_version == rules_engine.version
    if case.finding_input is not None:
        assert decision.findings[0].input == case.finding_input
    for finding in decision.findings:
        assert finding.reason
        assert finding.remediation
        assert finding.exemption is None
    if decision.findings:
        reason, remediation = decision.findings[0].reason, decision.findings[0].remediation
        for text in case.reason_mentions:
            assert text in reason, reason
        for text in case.remediation_mentions:
            assert text in remediation, remediation
    if case.outcome is Outcome.DRY_RUN:
        assert decision.mode == "dry_run"
        assert decision.violations == decision.findings
        assert decision.violations


def test_every_rule_id_is_covered_by_the_table() -> None:
    """Adding a rule to vocabulary.Rule without a test row fails here."""
    covered = {rule for param in RULE_CASES for rules in param.values[0].rules for rule in rules}
    covered |= {Rule.UNCHECKABLE_INPUT.value}  # test_uncheckable_input
    covered |= {Rule.UNDECLARED_INPUT.value}  # test_undeclared_sql_input
    covered |= {Rule.CONNECTION_NOT_ALLOWED.value, Rule.VARIABLE_NOT_ALLOWED.value}  # test_credentials.py
    covered |= {Rule.UNDECIDED_RUN.value}  # test_a_success_without_an_allowing_decision
    # decided by the service against the serialized DAG (tests/unit/db/test_service.py)
    covered |= {Rule.CLAIMS_DIFFER_FROM_PARSED_DAG.value}
    assert covered == {rule.value for rule in Rule}


@pytest.mark.parametrize(
    ("zone", "dag_id", "recorded", "outcome"),
    [
        ("ads", "ads_rank", None, Outcome.DENY),
        ("ads", "ads_rank", "deny", Outcome.DENY),
        ("sandbox", "sandbox_job", None, Outcome.DRY_RUN),  # dry_run: recorded, the success stands
        ("sandbox", "ads_rank", None, Outcome.DENY),  # ... for the zone's members only
        ("nowhere", "ads_rank", None, Outcome.DENY),  # a zone the policy does not define
        (None, "ads_rank", None, Outcome.DENY),
    ],
)
def test_a_success_without_an_allowing_decision(
    rules_engine: PolicyEngine, zone: str | None, dag_id: str, recorded: str | None, outcome: Outcome
) -> None:
    decision = rules_engine.decide_undecided_run(task=task(dag_id), zone=zone, recorded=recorded, now=NOW)
    assert decision.outcome is outcome
    [finding] = decision.findings
    assert rules_of(decision) == [("undecided_run",)]
    assert finding.input is None and finding.exemption is None  # no exemption can cover it
    assert ("without a decision" if recorded is None else f"although its decision was {recorded!r}") in (
        finding.reason
    )
    assert "pre-execute check" in finding.remediation


def test_membership_violation_skips_input_checks(rules_engine: PolicyEngine) -> None:
    decision = rules_engine.check(
        task=task("recs_daily"), zone="ads", inputs=[InputRef.asset("s3://lake/from_recs/x")], now=NOW
    )
    assert rules_of(decision) == [("zone_membership",)]
    assert decision.findings[0].input is None


def test_decision_serializes(rules_engine: PolicyEngine) -> None:
    decision = rules_engine.check(
        task=task("recs_daily"), zone="recs", inputs=[InputRef.asset("s3://lake/raw/purchases/x")], now=NOW
    )
    data = decision.to_dict()
    assert data["outcome"] == "deny"
    assert data["allowed"] is False
    assert data["zone"] == "recs"
    assert data["mode"] == "enforce"
    assert data["policy_version"] == rules_engine.version
    assert data["findings"][0]["rule"] == "category_not_allowed"
    assert data["findings"][0]["input"] == "s3://lake/raw/purchases/x"


# --- uncheckable inputs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "dag_id", "outcome"),
    [
        pytest.param("recs", "recs_daily", Outcome.DENY, id="enforce"),
        pytest.param("sandbox", "sandbox_job", Outcome.DRY_RUN, id="dry_run"),
    ],
)
def test_uncheckable_input(rules_engine: PolicyEngine, zone: str, dag_id: str, outcome: Outcome) -> None:
    decision = rules_engine.check(
        task=task(dag_id),
        zone=zone,
        inputs=[InputRef.asset("s3://lake/raw/clicks/x")],
        uncheckable=["inlet 'some string' is not an Asset"],
        now=NOW,
    )
    assert decision.outcome is outcome
    assert rules_of(decision) == [("uncheckable_input",)]
    assert decision.findings[0].input is None
    assert "'some string'" in decision.findings[0].reason
    assert "Asset" in decision.findings[0].remediation


def test_undeclared_sql_input(rules_engine: PolicyEngine) -> None:
    """A table the SQL reads that nothing labels is a violation even where unlabeled data is allowed."""
    secret = InputRef.table("warehouse.secret")
    decision = rules_engine.decide(
        task=task("open_daily"), zone="open", inputs=[], undeclared=[secret], now=NOW
    )
    assert decision.outcome is Outcome.DENY
    assert rules_of(decision) == [("undeclared_input",)]
    assert decision.findings[0].input == "warehouse.secret"
    assert "table warehouse.secret" in decision.findings[0].reason

    unzoned = rules_engine.decide(task=task("x"), zone=None, inputs=[], undeclared=[secret], now=NOW)
    assert rules_of(unzoned) == [("unzoned_task",)]


def test_unzoned_task_with_only_uncheckable_inputs(rules_engine: PolicyEngine) -> None:
    decision = rules_engine.check(
        task=task("x"), zone=None, inputs=[], uncheckable=["a string inlet"], now=NOW
    )
    assert decision.outcome is Outcome.DENY
    assert rules_of(decision) == [("unzoned_task",)]
    assert "reads inputs" in decision.findings[0].reason


# --- sanctioned flows ---------------------------------------------------------------------------

FLOWS_POLICY = """
    categories:
      events: {}
    zones:
      src:
        purpose: src
        allowed_categories: [events]
        members: {dag_ids: ["*"]}
      by_inflow:
        purpose: by_inflow
        allowed_categories: [events]
        inflows: [src]
        members: {dag_ids: ["*"]}
      by_flow:
        purpose: by_flow
        allowed_categories: [events]
        members: {dag_ids: ["*"]}
      by_via:
        purpose: by_via
        allowed_categories: [events]
        members: {dag_ids: ["*"]}
      closed:
        purpose: closed
        allowed_categories: [events]
        members: {dag_ids: ["*"]}
    reclassifiers:
      anonymize:
        zone: src
        dag_id: src_jobs
        task_id: anonymize
        outputs: {aggregated: true}
      sample:
        zone: src
        dag_id: src_jobs
        task_id: sample
        outputs: {aggregated: false}
    flows:
      - {from: src, to: by_flow}
      - {from: src, to: by_via, via: [anonymize]}
"""


def _events(origins: set[str], reclassified_by: frozenset[str] | set[str] = frozenset()) -> LabeledInput:
    return LabeledInput(
        InputRef.asset("s3://lake/events/x"),
        AssetLabels(
            categories=frozenset({"events"}),
            origins=frozenset(origins),
            reclassified_by=frozenset(reclassified_by),
        ),
    )


@pytest.mark.parametrize(
    ("zone", "item", "outcome", "remediation_mentions"),
    [
        pytest.param(
            "closed", _events({"src"}), Outcome.DENY, ("zones.closed.inflows",), id="unsanctioned-origin"
        ),
        pytest.param("by_inflow", _events({"src"}), Outcome.ALLOW, (), id="sanctioned-by-inflows"),
        pytest.param("by_flow", _events({"src"}), Outcome.ALLOW, (), id="sanctioned-by-flow-without-via"),
        pytest.param(
            "by_via", _events({"src"}, {"anonymize"}), Outcome.ALLOW, (), id="sanctioned-by-via-reclassifier"
        ),
        pytest.param(
            "by_via",
            _events({"src"}, {"sample"}),
            Outcome.DENY,
            ("'anonymize'",),
            id="via-other-reclassifier",
        ),
        pytest.param("by_via", _events({"src"}), Outcome.DENY, ("'anonymize'",), id="via-not-reclassified"),
        pytest.param(
            "by_flow",
            _events({"src", "closed"}),
            Outcome.DENY,
            ("zones.by_flow.inflows",),
            id="one-of-two-origins-unsanctioned",
        ),
        pytest.param("src", _events({"src"}), Outcome.ALLOW, (), id="own-zone"),
        pytest.param(
            "src",
            _events({"by_via"}, {"anonymize"}),
            Outcome.DENY,
            ("'by_via'",),
            id="flows-are-directed",
        ),
    ],
)
def test_unsanctioned_flow(
    zone: str, item: LabeledInput, outcome: Outcome, remediation_mentions: tuple[str, ...]
) -> None:
    engine = engine_for(FLOWS_POLICY)
    decision = engine.decide(task=task("any"), zone=zone, inputs=[item], now=NOW)
    assert decision.outcome is outcome
    if outcome is Outcome.DENY:
        assert rules_of(decision) == [("unsanctioned_flow",)]
        finding = decision.findings[0]
        assert finding.input == "s3://lake/events/x"
        assert f"→ {zone}" in finding.reason
        for text in remediation_mentions:
            assert text in finding.remediation, finding.remediation
    else:
        assert decision.findings == ()


# --- exemptions ---------------------------------------------------------------------------------

EXEMPTIONS_POLICY = """
    categories:
      purchases: {}
      clicks: {}
    catalog:
      - uri: "s3://lake/raw/purchases/**"
        categories: [purchases]
      - uri: "s3://lake/raw/clicks/**"
        categories: [clicks]
    zones:
      recs:
        purpose: recs
        allowed_categories: [clicks]
        members: {dag_ids: ["recs_*"]}
      other:
        purpose: other
        allowed_categories: [clicks]
        members: {dag_ids: ["*"]}
    exemptions:
      - zone: recs
        dag: "recs_backfill*"
        task: "load_*"
        asset: "s3://lake/raw/purchases/**"
        reason: One-off backfill approved by the privacy review board.
        ticket: PRIV-1
        expires: 2030-12-31
      - zone: recs
        dag: "*"
        asset: "s3://lake/raw/purchases/legacy/*"
        reason: Old export, being migrated.
        ticket: PRIV-2
        expires: 2026-01-31T00:00:00Z
      - zone: other
        asset: "*"
        reason: Everything in 'other' is waived.
        ticket: PRIV-3
        expires: 2030-12-31
"""

PURCHASES = "s3://lake/raw/purchases/2026/01.parquet"


@pytest.fixture(scope="module")
def exemptions_engine() -> PolicyEngine:
    return engine_for(EXEMPTIONS_POLICY)


@pytest.mark.parametrize(
    ("dag_id", "task_id", "uris", "now", "outcome", "tickets"),
    [
        pytest.param("recs_backfill", "load_day", [PURCHASES], NOW, Outcome.EXEMPTED, ["PRIV-1"], id="match"),
        pytest.param(
            "recs_backfill_2", "load_day", [PURCHASES], NOW, Outcome.EXEMPTED, ["PRIV-1"], id="match-by-glob"
        ),
        pytest.param(
            "recs_backfill",
            "load_day",
            [PURCHASES],
            datetime(2030, 12, 31, 23, 59, tzinfo=timezone.utc),
            Outcome.EXEMPTED,
            ["PRIV-1"],
            id="date-expiry-covers-its-whole-day",
        ),
        pytest.param(
            "recs_backfill",
            "load_day",
            [PURCHASES],
            datetime(2031, 1, 1, tzinfo=timezone.utc),
            Outcome.DENY,
            [None],
            id="expired",
        ),
        pytest.param(
            "recs_backfill",
            "load_day",
            [PURCHASES],
            datetime(2031, 1, 1),
            Outcome.DENY,
            [None],
            id="expired-naive-now-is-utc",
        ),
        pytest.param("recs_daily", "load_day", [PURCHASES], NOW, Outcome.DENY, [None], id="other-dag"),
        pytest.param("recs_backfill", "train", [PURCHASES], NOW, Outcome.DENY, [None], id="other-task"),
        pytest.param(
            "recs_backfill",
            "load_day",
            ["s3://lake/raw/purchases_v2/x"],
            NOW,
            Outcome.DENY,
            [None],
            id="other-asset",
        ),
        pytest.param(
            "recs_backfill",
            "load_day",
            [PURCHASES, "s3://lake/unknown/x"],
            NOW,
            Outcome.DENY,
            ["PRIV-1", None],
            id="partly-exempted-is-deny",
        ),
        pytest.param(
            "recs_daily",
            "any",
            ["s3://lake/raw/purchases/legacy/a"],
            datetime(2026, 1, 30, tzinfo=timezone.utc),
            Outcome.EXEMPTED,
            ["PRIV-2"],
            id="datetime-expiry-before",
        ),
        pytest.param(
            "recs_daily",
            "any",
            ["s3://lake/raw/purchases/legacy/a"],
            datetime(2026, 1, 31, tzinfo=timezone.utc),
            Outcome.DENY,
            [None],
            id="datetime-expiry-at",
        ),
    ],
)
def test_exemptions(
    exemptions_engine: PolicyEngine,
    dag_id: str,
    task_id: str,
    uris: list[str],
    now: datetime,
    outcome: Outcome,
    tickets: list[str | None],
) -> None:
    decision = exemptions_engine.check(
        task=task(dag_id, task_id), zone="recs", inputs=[InputRef.asset(uri) for uri in uris], now=now
    )
    assert decision.outcome is outcome
    assert [finding.exemption for finding in decision.findings] == tickets
    assert decision.allowed is (outcome is Outcome.EXEMPTED)
    assert [finding.input for finding in decision.violations] == [
        finding.input for finding, ticket in zip(decision.findings, tickets, strict=True) if ticket is None
    ]
    if outcome is Outcome.EXEMPTED:
        assert decision.findings[0].rules == (Rule.CATEGORY_NOT_ALLOWED,)  # the waived rule stays on record
        assert decision.findings[0].exempted
        assert decision.findings[0].to_dict()["exemption"] == tickets[0]


def test_exemptions_never_waive_membership() -> None:
    # The 'other' zone waives every input, but a DAG that is not a member is still denied.
    engine = engine_for(EXEMPTIONS_POLICY.replace('members: {dag_ids: ["*"]}', 'members: {dag_ids: ["o_*"]}'))
    decision = engine.check(task=task("intruder"), zone="other", inputs=[InputRef.asset(PURCHASES)], now=NOW)
    assert decision.outcome is Outcome.DENY
    assert rules_of(decision) == [("zone_membership",)]
    assert decision.findings[0].exemption is None
    member = engine.check(task=task("o_x"), zone="other", inputs=[InputRef.asset(PURCHASES)], now=NOW)
    assert member.outcome is Outcome.EXEMPTED
    assert [finding.exemption for finding in member.findings] == ["PRIV-3"]


def test_exemption_of_one_zone_does_not_apply_in_another(exemptions_engine: PolicyEngine) -> None:
    # PRIV-3 waives every input of every DAG, but only in zone 'other'.
    decision = exemptions_engine.check(
        task=task("recs_x"), zone="recs", inputs=[InputRef.asset(PURCHASES)], now=NOW
    )
    assert decision.outcome is Outcome.DENY
    assert [finding.exemption for finding in decision.findings] == [None]


def test_exemption_expired_at_load_time_warns_and_denies() -> None:
    engine = engine_for(EXEMPTIONS_POLICY, now=datetime(2031, 6, 1, tzinfo=timezone.utc))
    assert [warning.field for warning in engine.loaded.warnings] == [
        "exemptions[0].expires",
        "exemptions[1].expires",
        "exemptions[2].expires",
    ]
    decision = engine.check(
        task=task("recs_backfill", "load_day"),
        zone="recs",
        inputs=[InputRef.asset(PURCHASES)],
        now=datetime(2031, 6, 1, tzinfo=timezone.utc),
    )
    assert decision.outcome is Outcome.DENY


def test_exemption_in_dry_run_zone_wins_over_dry_run() -> None:
    engine = engine_for(EXEMPTIONS_POLICY.replace("purpose: recs", "purpose: recs\n        mode: dry_run"))
    exempted = engine.check(
        task=task("recs_backfill", "load_day"), zone="recs", inputs=[InputRef.asset(PURCHASES)], now=NOW
    )
    assert exempted.outcome is Outcome.EXEMPTED
    logged = engine.check(task=task("recs_daily"), zone="recs", inputs=[InputRef.asset(PURCHASES)], now=NOW)
    assert logged.outcome is Outcome.DRY_RUN
    assert logged.allowed
    assert [finding.input for finding in logged.violations] == [PURCHASES]


# --- settings -----------------------------------------------------------------------------------


def test_default_zone_applies_to_unzoned_tasks() -> None:
    engine = engine_for(RULES_POLICY.replace("version: 1", "version: 1\n    settings: {default_zone: recs}"))
    assert engine.effective_zone(None) == "recs"
    assert engine.effective_zone("ads") == "ads"
    denied = engine.check(task=task("recs_x"), zone=None, inputs=[InputRef.asset(PURCHASES)], now=NOW)
    assert denied.zone == "recs"
    assert rules_of(denied) == [("category_not_allowed",)]
    allowed = engine.check(task=task("recs_x"), zone=None, inputs=[InputRef.asset("s3://lake/raw/clicks/a")])
    assert allowed.outcome is Outcome.ALLOW
    assert allowed.zone == "recs"
    # the default zone's membership still applies
    outsider = engine.check(task=task("ads_x"), zone=None, inputs=[], now=NOW)
    assert rules_of(outsider) == [("zone_membership",)]


@pytest.mark.parametrize(
    ("require_zone", "outcome"),
    [pytest.param(True, Outcome.DENY, id="required"), pytest.param(False, Outcome.ALLOW, id="not-required")],
)
def test_require_zone(require_zone: bool, outcome: Outcome) -> None:
    engine = engine_for(
        RULES_POLICY.replace(
            "version: 1", f"version: 1\n    settings: {{require_zone: {str(require_zone).lower()}}}"
        )
    )
    decision = engine.check(task=task("etl", "load"), zone=None, inputs=[], now=NOW)
    assert decision.outcome is outcome
    assert decision.zone is None
    if require_zone:
        assert rules_of(decision) == [("unzoned_task",)]
        assert "etl.load" in decision.findings[0].reason
        assert "requires" in decision.findings[0].reason


# --- catalog matching ---------------------------------------------------------------------------

CATALOG_POLICY = """
    categories:
      clicks: {}
      purchases: {}
      health: {}
    catalog:
      - uri: "s3://lake/shared/**"
        categories: [clicks]
        consented: [ads, training]
        aggregated: true
      - uri: "s3://lake/shared/pii/**"
        categories: [purchases]
        consented: [training, recs]
        aggregated: false
        origin_zones: [ads]
      - uri: "s3://lake/shared/pii/*.parquet"
        categories: [clicks]
        consented: [training]
        aggregated: true
      - uri: "S3://Lake/raw/purchases/**"
        categories: [purchases]
      - uri_regex: 's3://lake/events/\\d{4}/purchases\\.parquet'
        categories: [purchases]
      - table_regex: 'WAREHOUSE\\.RAW\\.ORDERS_\\d+'
        categories: [purchases]
      - table_regex: 'warehouse\\.health\\.\\w+'
        categories: [health]
      - table: "Warehouse.Raw.Purchases"
        categories: [purchases]
      - table: "warehouse.clicks.*"
        categories: [clicks]
      - table: "warehouse.**.secret"
        categories: [health]
    zones:
      ads:
        purpose: ads
        allowed_categories: [clicks]
        members: {dag_ids: ["*"]}
      training:
        purpose: training
        allowed_categories: [clicks, purchases]
        requires_consent: true
        aggregated_only: true
        members: {dag_ids: ["*"]}
"""


@pytest.fixture(scope="module")
def catalog_engine() -> PolicyEngine:
    return engine_for(CATALOG_POLICY)


def test_asset_labels_merge_is_most_restrictive() -> None:
    left = AssetLabels(
        categories=frozenset({"a"}),
        consented=frozenset({"p", "q"}),
        aggregated=True,
        origins=frozenset({"x"}),
        reclassified_by=frozenset({"r1", "r2"}),
    )
    right = AssetLabels(
        categories=frozenset({"b"}),
        consented=frozenset({"q"}),
        aggregated=False,
        origins=frozenset({"y"}),
        reclassified_by=frozenset({"r2"}),
    )
    merged = left.merge(right)
    assert merged == AssetLabels(
        categories=frozenset({"a", "b"}),
        consented=frozenset({"q"}),
        aggregated=False,
        origins=frozenset({"x", "y"}),
        reclassified_by=frozenset({"r2"}),
    )
    assert right.merge(left) == merged
    assert left.merge(left) == left


def test_several_catalog_entries_merge_most_restrictively(catalog_engine: PolicyEngine) -> None:
    labels = catalog_engine.labels_for(InputRef.asset("s3://lake/shared/pii/users.parquet"))
    assert labels == AssetLabels(
        categories=frozenset({"clicks", "purchases"}),
        consented=frozenset({"training"}),
        aggregated=False,
        origins=frozenset({"ads"}),
    )
    # Only the first entry matches here: its own labels, unmerged.
    assert catalog_engine.labels_for(InputRef.asset("s3://lake/shared/daily")) == AssetLabels(
        categories=frozenset({"clicks"}), consented=frozenset({"ads", "training"}), aggregated=True
    )
    decision = catalog_engine.check(
        task=task("t"),
        zone="training",
        inputs=[InputRef.asset("s3://lake/shared/pii/users.parquet")],
        now=NOW,
    )
    # consent for training survives the merge; aggregation does not, and 'ads' data arrives unsanctioned.
    assert rules_of(decision) == [("not_aggregated", "unsanctioned_flow")]
    assert "'ads'" in decision.findings[0].reason


@pytest.mark.parametrize(
    ("ref", "categories"),
    [
        pytest.param(
            InputRef.asset("s3://lake/events/2026/purchases.parquet"), {"purchases"}, id="uri_regex"
        ),
        pytest.param(
            InputRef.asset("s3://lake/events/2026/purchases.parquet.bak"), None, id="uri_regex-fullmatch"
        ),
        pytest.param(
            InputRef.asset("s3://lake/events/20266/purchases.parquet"), None, id="uri_regex-no-match"
        ),
        pytest.param(
            InputRef.table("warehouse.raw.orders_2026"), {"purchases"}, id="table_regex-upper-case-regex"
        ),
        pytest.param(InputRef.table("Warehouse.Health.Visits"), {"health"}, id="table_regex-upper-case-name"),
        pytest.param(InputRef.table("warehouse.health.visits.old"), None, id="table_regex-fullmatch"),
        pytest.param(InputRef.table('"WAREHOUSE"."RAW"."PURCHASES"'), {"purchases"}, id="table-quoted-upper"),
        pytest.param(InputRef.table("warehouse.raw.purchases"), {"purchases"}, id="table-glob-upper-pattern"),
        pytest.param(InputRef.table("warehouse.clicks.daily"), {"clicks"}, id="table-star"),
        pytest.param(InputRef.table("warehouse.clicks.daily.part"), None, id="table-star-one-part"),
        pytest.param(InputRef.table("warehouse.a.b.secret"), {"health"}, id="table-globstar"),
        pytest.param(InputRef.table("warehouse.secret"), {"health"}, id="table-globstar-zero"),
        pytest.param(InputRef.asset("warehouse.raw.purchases"), None, id="namespaces-are-separate"),
        pytest.param(InputRef.table("s3://lake/raw/purchases/x"), None, id="namespaces-are-separate-2"),
        pytest.param(
            InputRef.asset("s3://lake/raw/purchases/x"), {"purchases"}, id="upper-case-host-in-pattern"
        ),
    ],
)
def test_catalog_patterns(catalog_engine: PolicyEngine, ref: InputRef, categories: set[str] | None) -> None:
    labels = catalog_engine.labels_for(ref)
    if categories is None:
        assert labels is None
    else:
        assert labels is not None
        assert labels.categories == categories


def test_table_input_decision(catalog_engine: PolicyEngine) -> None:
    ref = InputRef.table("Warehouse.RAW.Purchases")
    assert ref == InputRef("table", "warehouse.raw.purchases")
    assert str(ref) == "table warehouse.raw.purchases"
    decision = catalog_engine.check(task=task("t"), zone="ads", inputs=[ref], now=NOW)
    assert decision.outcome is Outcome.DENY
    assert rules_of(decision) == [("category_not_allowed",)]
    assert decision.findings[0].input == "warehouse.raw.purchases"
    assert "table warehouse.raw.purchases" in decision.findings[0].reason


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("s3://lake/raw/purchases/", id="trailing-slash"),
        pytest.param("s3://lake/raw/purchases", id="directory-itself"),
        pytest.param("s3://lake/raw/tmp/../purchases/x", id="dot-dot"),
        pytest.param("s3://lake/raw/clicks/../purchases/x", id="dot-dot-from-allowed-prefix"),
        pytest.param("s3://lake/raw/./purchases/x", id="dot"),
        pytest.param("s3://lake//raw//purchases/x", id="double-slashes"),
        pytest.param("s3://lake/raw/%70urchases/x", id="percent-encoded-letter"),
        pytest.param("s3://lake/raw%2Fpurchases/x", id="percent-encoded-slash"),
        pytest.param("s3://lake/raw/%2E%2E/raw/purchases/x", id="percent-encoded-dot-dot"),
        pytest.param("S3://LAKE/raw/purchases/x", id="upper-case-scheme-and-host"),
        pytest.param("s3://Lake/raw/purchases/x", id="mixed-case-host"),
        pytest.param("  s3://lake/raw/purchases/x\n", id="surrounding-whitespace"),
    ],
)
def test_uri_spelling_cannot_dodge_the_catalog(rules_engine: PolicyEngine, uri: str) -> None:
    decision = rules_engine.check(task=task("recs_daily"), zone="recs", inputs=[InputRef.asset(uri)], now=NOW)
    assert decision.outcome is Outcome.DENY
    assert rules_of(decision) == [("category_not_allowed",)]
    assert decision.findings[0].input is not None
    assert decision.findings[0].input.startswith("s3://lake/raw/purchases")


# --- policy version -----------------------------------------------------------------------------


def test_policy_version_is_sha256_of_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    content = textwrap.dedent(RULES_POLICY).encode()
    path.write_bytes(content)
    engine = PolicyEngine.from_file(path)
    expected = "sha256:" + hashlib.sha256(content).hexdigest()
    assert engine.version == expected
    assert engine.loaded.short_version == expected.removeprefix("sha256:")[:12]
    decision = engine.check(task=task("ads_x"), zone="ads", inputs=[], now=NOW)
    assert decision.policy_version == expected
    # A comment changes the bytes, so it changes the version: what was decided is pinned exactly.
    path.write_bytes(content + b"# reviewed\n")
    assert (
        load_policy(path, now=NOW).version
        == "sha256:" + hashlib.sha256(content + b"# reviewed\n").hexdigest()
    )
    assert load_policy(path, now=NOW).version != expected


# --- the seed examples (README), literally, against dags_examples/policy.yaml ---------------------


@pytest.fixture(scope="module")
def example_engine() -> PolicyEngine:
    loaded = load_policy(EXAMPLE_POLICY, now=NOW)
    assert loaded.warnings == ()
    return PolicyEngine(loaded)


RAW_PURCHASES = "s3://lake/raw/purchases/date=2026-06-01/part-0.parquet"


@pytest.mark.parametrize(
    ("zone", "dag_id", "uri", "outcome", "rules", "mentions"),
    [
        pytest.param(
            "ads_optimization",
            "ads_optimization_daily",
            RAW_PURCHASES,
            Outcome.ALLOW,
            [],
            (),
            id="ads-optimization-reads-purchases-allowed",
        ),
        pytest.param(
            "content_recommendations",
            "recs_content_ranking",
            RAW_PURCHASES,
            Outcome.DENY,
            [("category_not_allowed",)],
            ("'purchase_events'",),
            id="content-recommendations-reads-purchases-blocked",
        ),
        pytest.param(
            "ai_training",
            "ai_training_recsys",
            RAW_PURCHASES,
            Outcome.DENY,
            [("consent_missing", "not_aggregated")],
            ("consented for 'ads_optimization'", "'ai_training'", "aggregated data only"),
            id="ai-training-reads-raw-purchases-blocked",
        ),
        pytest.param(
            "ai_training",
            "ai_training_recsys",
            "s3://lake/derived/purchases_consented_daily/date=2026-06-01/part-0.parquet",
            Outcome.ALLOW,
            [],
            (),
            id="ai-training-reads-consented-daily-aggregates-allowed",
        ),
        pytest.param(
            "marketing_analytics",
            "marketing_attribution",
            RAW_PURCHASES,
            Outcome.DRY_RUN,
            [("category_not_allowed",)],
            ("'purchase_events'",),
            id="marketing-analytics-dry-run-logged",
        ),
    ],
)
def test_seed_examples(
    example_engine: PolicyEngine,
    zone: str,
    dag_id: str,
    uri: str,
    outcome: Outcome,
    rules: list[tuple[str, ...]],
    mentions: tuple[str, ...],
) -> None:
    decision = example_engine.check(task=task(dag_id), zone=zone, inputs=[InputRef.asset(uri)], now=NOW)
    assert decision.outcome is outcome
    assert rules_of(decision) == rules
    assert decision.zone == zone
    assert decision.policy_version == "sha256:" + hashlib.sha256(EXAMPLE_POLICY.read_bytes()).hexdigest()
    if rules:
        assert decision.findings[0].input == uri
        assert f"zone {zone!r}" in decision.findings[0].reason
        for text in mentions:
            assert text in decision.findings[0].reason, decision.findings[0].reason
    assert decision.allowed is (outcome is not Outcome.DENY)


def test_seed_reclassifier_output_flows_into_ai_training(example_engine: PolicyEngine) -> None:
    """The sanctioned path: ads_optimization → ai_training only through purchases_consented_daily."""
    ref = InputRef.asset("s3://lake/derived/purchases_consented_daily/date=2026-06-01")
    propagated = AssetLabels(
        categories=frozenset({"purchase_events"}),
        consented=frozenset({"ai_training"}),
        aggregated=True,
        origins=frozenset({"ads_optimization"}),
        reclassified_by=frozenset({"purchases_consented_daily"}),
    )
    ok = example_engine.decide(
        task=task("ai_training_recsys"), zone="ai_training", inputs=[LabeledInput(ref, propagated)], now=NOW
    )
    assert ok.outcome is Outcome.ALLOW
    bypass = AssetLabels(
        categories=propagated.categories,
        consented=propagated.consented,
        aggregated=True,
        origins=propagated.origins,
    )
    denied = example_engine.decide(
        task=task("ai_training_recsys"), zone="ai_training", inputs=[LabeledInput(ref, bypass)], now=NOW
    )
    assert denied.outcome is Outcome.DENY
    assert rules_of(denied) == [("unsanctioned_flow",)]
    assert "'purchases_consented_daily'" in denied.findings[0].remediation


def test_seed_exemption_in_example_policy(example_engine: PolicyEngine) -> None:
    """PRIV-1042 lets one backfill DAG read ad clicks in content_recommendations, until 2030-12-31."""
    clicks = InputRef.asset("s3://lake/raw/ad_clicks/2026/06/01.json")
    members = task("recs_holiday_backfill")
    assert example_engine.check(
        task=members, zone="content_recommendations", inputs=[clicks], now=NOW
    ).outcome is (Outcome.EXEMPTED)
    later = NOW.replace(year=2031)
    assert (
        example_engine.check(task=members, zone="content_recommendations", inputs=[clicks], now=later).outcome
        is Outcome.DENY
    )
    assert (
        example_engine.check(
            task=task("recs_content_ranking"), zone="content_recommendations", inputs=[clicks], now=NOW
        ).outcome
        is Outcome.DENY
    )


def test_now_defaults_to_the_current_time(example_engine: PolicyEngine) -> None:
    clicks = InputRef.asset("s3://lake/raw/ad_clicks/x")
    decision = example_engine.check(
        task=task("recs_holiday_backfill"), zone="content_recommendations", inputs=[clicks]
    )
    expected = (
        Outcome.EXEMPTED
        if datetime.now(timezone.utc) < datetime(2031, 1, 1, tzinfo=timezone.utc)
        else (Outcome.DENY)
    )
    assert decision.outcome is expected
