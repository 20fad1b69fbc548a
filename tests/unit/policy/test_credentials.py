"""Purpose-scoped credentials in the policy: the ``connections:`` / ``variables:`` sections, their
validation (located errors) and the engine's decision for one (zone, connection id)."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_policyzones.policy import Outcome, PolicyEngine, PolicyError, TaskContext, load_policy_bytes
from airflow_policyzones.policy.patterns import globs_overlap

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)

POLICY = """
    version: 1
    settings:
      unlisted_variables: deny
    categories:
      purchase_events: {}
      watch_history: {}
    catalog:
      - table: "warehouse.raw.purchases"
        categories: [purchase_events]
        consented: [ads_optimization]
      - uri: "s3://lake/raw/watch_history/**"
        categories: [watch_history]
        consented: [content_recommendations, ai_training]
    zones:
      ads_optimization:
        purpose: ads_optimization
        allowed_categories: [purchase_events]
        members: {dag_ids: ["ads_*"]}
      content_recommendations:
        purpose: content_recommendations
        allowed_categories: [watch_history]
        members: {dag_ids: ["recs_*"]}
      ai_training:
        purpose: ai_training
        allowed_categories: [purchase_events, watch_history]
        requires_consent: true
        members: {dag_ids: ["ai_*"]}
      marketing_analytics:
        purpose: marketing_analytics
        allowed_categories: []
        mode: dry_run
        members: {dag_ids: ["marketing_*"]}
    connections:
      warehouse_raw:
        catalog: ["warehouse.raw.purchases"]
      "lake_watch_*":
        categories: [watch_history]
      slack_ads:
        zones: [ads_optimization]
    variables:
      "ads_*":
        zones: [ads_optimization]
      shared_threshold:
        zones: [ads_optimization, content_recommendations]
    exemptions:
      - zone: content_recommendations
        dag: recs_backfill
        asset: "connection:warehouse_raw"
        reason: one-off backfill
        ticket: PRIV-9
        expires: 2030-01-01
"""


def engine(text: str = POLICY) -> PolicyEngine:
    return PolicyEngine(load_policy_bytes(textwrap.dedent(text).encode(), source="inline.yaml", now=NOW))


ENGINE = engine()


@pytest.mark.parametrize(
    ("kind", "name", "dag_id", "zone", "outcome", "rules"),
    [
        # the example: purchase data only for ads
        ("connection", "warehouse_raw", "recs_daily", "content_recommendations", "deny",
         ("connection_not_allowed", "category_not_allowed")),
        ("connection", "warehouse_raw", "ads_daily", "ads_optimization", "allow", ()),
        ("connection", "warehouse_raw", "marketing_daily", "marketing_analytics", "dry_run",
         ("connection_not_allowed", "category_not_allowed")),
        # consent travels with the catalog labels
        ("connection", "warehouse_raw", "ai_daily", "ai_training", "deny",
         ("connection_not_allowed", "consent_missing")),
        # glob pattern, categories only
        ("connection", "lake_watch_eu", "recs_daily", "content_recommendations", "allow", ()),
        ("connection", "lake_watch_eu", "ads_daily", "ads_optimization", "deny",
         ("connection_not_allowed", "category_not_allowed")),
        # zones directly
        ("connection", "slack_ads", "ads_daily", "ads_optimization", "allow", ()),
        ("connection", "slack_ads", "recs_daily", "content_recommendations", "deny",
         ("connection_not_allowed",)),
        # unlisted connections are served (default allow), unlisted variables are not (deny)
        ("connection", "unlisted", "recs_daily", "content_recommendations", "allow", ()),
        ("connection", "unlisted", "anything", None, "allow", ()),
        ("variable", "unlisted", "recs_daily", "content_recommendations", "deny",
         ("variable_not_allowed",)),
        ("variable", "ads_budget", "ads_daily", "ads_optimization", "allow", ()),
        ("variable", "ads_budget", "recs_daily", "content_recommendations", "deny",
         ("variable_not_allowed",)),
        ("variable", "shared_threshold", "recs_daily", "content_recommendations", "allow", ()),
        # identity: a zone the DAG is not a member of, an unknown zone, no zone
        ("connection", "warehouse_raw", "recs_daily", "ads_optimization", "deny",
         ("connection_not_allowed", "zone_membership")),
        ("connection", "warehouse_raw", "ads_daily", "nowhere", "deny",
         ("connection_not_allowed", "unknown_zone")),
        ("connection", "warehouse_raw", "ads_daily", None, "deny",
         ("connection_not_allowed", "unzoned_task")),
        # another spelling of a listed id is the same connection (Airflow's environment-variables
        # backend serves AIRFLOW_CONN_WAREHOUSE_RAW for each of them; MySQL ignores trailing spaces)
        ("connection", "WAREHOUSE_RAW", "recs_daily", "content_recommendations", "deny",
         ("connection_not_allowed", "category_not_allowed")),
        ("connection", "Warehouse_Raw  ", "recs_daily", "content_recommendations", "deny",
         ("connection_not_allowed", "category_not_allowed")),
        ("connection", "LAKE_WATCH_EU", "ads_daily", "ads_optimization", "deny",
         ("connection_not_allowed", "category_not_allowed")),
        ("connection", "Slack_Ads", "ads_daily", "ads_optimization", "allow", ()),
        ("variable", "ADS_BUDGET", "recs_daily", "content_recommendations", "deny",
         ("variable_not_allowed",)),
        # an exemption whose asset glob names the connection
        ("connection", "warehouse_raw", "recs_backfill", "content_recommendations", "exempted",
         ("connection_not_allowed", "category_not_allowed")),
    ],
)  # fmt: skip
def test_decide_credential(
    kind: str, name: str, dag_id: str, zone: str | None, outcome: str, rules: tuple[str, ...]
) -> None:
    decision = ENGINE.decide_credential(
        kind=kind,  # type: ignore[arg-type]
        name=name,
        task=TaskContext(dag_id=dag_id, task_id="t"),
        zone=zone,
        now=NOW,
    )
    assert decision.outcome.value == outcome
    assert tuple(rule.value for finding in decision.findings for rule in finding.rules) == rules
    for finding in decision.findings:
        assert finding.input == f"{kind}:{name}"
        assert name in finding.reason
        assert finding.remediation


def test_refusal_says_what_and_how_to_fix() -> None:
    decision = ENGINE.decide_credential(
        kind="connection",
        name="warehouse_raw",
        task=TaskContext(dag_id="recs_daily", task_id="t"),
        zone="content_recommendations",
        now=NOW,
    )
    (finding,) = decision.findings
    assert "connection 'warehouse_raw' (policy connections.'warehouse_raw')" in finding.reason
    assert "'purchase_events'" in finding.reason and "'content_recommendations'" in finding.reason
    assert "allowed_categories" in finding.remediation
    assert decision.outcome is Outcome.DENY and not decision.allowed


def test_restricts_only_what_may_be_refused() -> None:
    assert ENGINE.restricts(kind="connection", name="warehouse_raw")
    assert ENGINE.restricts(kind="connection", name="lake_watch_x")
    assert not ENGINE.restricts(kind="connection", name="postgres_default")
    for spelling in ("WAREHOUSE_RAW", "Warehouse_raw", "warehouse_raw ", "LAKE_WATCH_X"):
        assert ENGINE.restricts(kind="connection", name=spelling), spelling
    assert ENGINE.restricts(kind="variable", name="anything")  # unlisted_variables: deny


def test_credential_map() -> None:
    table = ENGINE.credential_map(kind="connection")
    assert table["ads_optimization"] == {"warehouse_raw": True, "lake_watch_*": False, "slack_ads": True}
    assert table["content_recommendations"] == {
        "warehouse_raw": False,
        "lake_watch_*": True,
        "slack_ads": False,
    }
    assert table["ai_training"]["warehouse_raw"] is False  # consent


def test_default_policy_restricts_nothing() -> None:
    plain = engine(POLICY.split("    connections:")[0].replace("unlisted_variables: deny", "{}"))
    assert not plain.restricts(kind="connection", name="warehouse_raw")
    assert not plain.restricts(kind="variable", name="x")


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        engine(text)
    return caught.value.format()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("        categories: [watch_history]\n      slack_ads",
         "        categories: [watch_histroy]\n      slack_ads",
         ["inline.yaml:38:18", "connections.lake_watch_*.categories[0]", "unknown category 'watch_histroy'",
          "did you mean 'watch_history'"]),
        ("        zones: [ads_optimization]\n    variables",
         "        zones: [ads_optimisation]\n    variables",
         ["inline.yaml:40:13", "connections.slack_ads.zones[0]", "unknown zone 'ads_optimisation'"]),
        ('        catalog: ["warehouse.raw.purchases"]',
         '        catalog: ["warehouse.raw.purchase"]',
         ["inline.yaml:36:15", "connections.warehouse_raw.catalog[0]",
          "no catalog entry has the pattern 'warehouse.raw.purchase'", "fix: write a catalog entry's"]),
        ("      slack_ads:\n", '      "warehouse_*":\n',
         ["inline.yaml:39:3", "connections.warehouse_*",
          "patterns 'warehouse_raw' and 'warehouse_*' overlap", "fix: make the patterns disjoint"]),
        ("      slack_ads:\n", '      "WAREHOUSE_RAW":\n',
         ["inline.yaml:39:3", "connections.WAREHOUSE_RAW",
          "patterns 'warehouse_raw' and 'WAREHOUSE_RAW' overlap", "ids match in any case"]),
        ("      slack_ads:\n", '      "Lake_Watch_??":\n',
         ["inline.yaml:39:3", "connections.Lake_Watch_??",
          "patterns 'lake_watch_*' and 'Lake_Watch_??' overlap"]),
        ("      slack_ads:\n        zones: [ads_optimization]",
         "      slack_ads:\n        zones: [ads_optimization]\n        categories: [watch_history]",
         ["connections.slack_ads", "give either 'zones' or what it reaches"]),
        ("      slack_ads:\n        zones: [ads_optimization]", "      slack_ads: {description: x}",
         ["connections.slack_ads", "say what it reaches"]),
        ('      "lake_watch_*":', '      "lake_[watch":',
         ["inline.yaml:37:3", "connections.lake_[watch", "'[' is never closed"]),
        ("  unlisted_variables: deny", "  unlisted_variables: maybe",
         ["settings.unlisted_variables", "'deny' or 'allow'"]),
        ("    variables:\n", "    variabels:\n", ["unknown field 'variabels'", "did you mean 'variables'"]),
    ],
)  # fmt: skip
def test_located_errors(old: str, new: str, expected: list[str]) -> None:
    source = POLICY.replace(old, new)
    assert source != POLICY, old
    message = _error(source)
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("warehouse_*", "warehouse_raw", True),
        ("*_raw", "warehouse_*", True),
        ("a*", "b*", False),
        ("a?c", "abd", False),
        ("[ab]x", "bx", True),
        ("[!a]x", "ax", False),
        ("[!a]x", "[!b]x", True),
        ("ab", "abc", False),
        ("a*b", "a*c", False),
        ("*", "anything", True),
        ("a[]]", "a]", True),
        ("pg_[0-9]", "pg_x", False),
        ("pg_[0-9]", "pg_7", True),
    ],
)
def test_globs_overlap(first: str, second: str, overlap: bool) -> None:
    assert globs_overlap(first, second) is overlap
    assert globs_overlap(second, first) is overlap


# Ids as DAG authors write them, with characters whose case mapping is irregular.
_ID_CHARS = st.sampled_from(list("abcxyzABCXYZ019_-.:ßıİſ"))


@given(
    name=st.text(_ID_CHARS, min_size=1, max_size=12),
    pattern_kind=st.sampled_from(["exact", "prefix", "suffix"]),
    flips=st.lists(st.booleans(), min_size=12, max_size=12),
    spaces=st.integers(min_value=0, max_value=2),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_spelling_airflow_serves_as_one_id_matches_its_pattern(
    name: str, pattern_kind: str, flips: list[bool], spaces: int
) -> None:
    """Whatever a task asks for that Airflow's environment-variables backend reads as the same
    ``AIRFLOW_CONN_<ID>`` (and MySQL compares equal) matches the pattern the listed id matches."""
    pattern = {"exact": name, "prefix": name[:3] + "*", "suffix": "*" + name[-3:]}[pattern_kind]
    if not pattern.strip(" *") or pattern.endswith(" "):
        return
    policy = engine(
        POLICY.split("    connections:")[0]
        + f"    connections:\n      {json.dumps(pattern)}:\n        zones: [ads_optimization]\n"
    )
    variant = (
        "".join((char.swapcase() if flip else char) for char, flip in zip(name, flips, strict=False))
        + " " * spaces
    )
    assert policy.restricts(kind="connection", name=name)
    if f"AIRFLOW_CONN_{variant.rstrip(' ').upper()}" == f"AIRFLOW_CONN_{name.upper()}":
        assert policy.restricts(kind="connection", name=variant), (pattern, variant)
        decision = policy.decide_credential(
            kind="connection",
            name=variant,
            task=TaskContext(dag_id="recs_daily", task_id="t"),
            zone="content_recommendations",
            now=NOW,
        )
        assert decision.outcome is Outcome.DENY, (pattern, variant)
