"""The engine's answer on a connection for a task whose DAG is no member of the zone it runs in:
refused whatever the zone's mode. A DAG names its zone itself (a ``policyzone:`` tag,
``set_zone``), so a ``dry_run`` zone's leniency must not serve DAGs that merely claim it."""

from __future__ import annotations

import pytest

from airflow_policyzones.policy import Outcome, PolicyEngine, TaskContext, load_policy_bytes

POLICY = b"""\
version: 1
name: membership
categories:
  purchase_events: {description: purchases}
  ad_clicks: {description: clicks}
zones:
  ads:
    purpose: ads
    allowed_categories: [purchase_events, ad_clicks]
    members: {files: ["ads/*"]}
  marketing:
    purpose: marketing
    allowed_categories: [ad_clicks]
    mode: dry_run
    members: {dag_ids: ["mkt_*"]}
connections:
  warehouse_raw:
    categories: [purchase_events]
  slack_ads:
    zones: [ads]
"""

IMPOSTOR = TaskContext(
    dag_id="impostor", task_id="read", dag_file="other/impostor.py", tags=frozenset(), owners=frozenset()
)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(load_policy_bytes(POLICY, source="membership.yaml"))


@pytest.mark.parametrize("name", ["warehouse_raw", "slack_ads"])
def test_a_dag_that_is_no_member_of_a_dry_run_zone_obtains_nothing_restricted(
    engine: PolicyEngine, name: str
) -> None:
    decision = engine.decide_credential(kind="connection", name=name, task=IMPOSTOR, zone="marketing")
    assert decision.outcome is Outcome.DENY and not decision.allowed


def test_a_member_of_the_dry_run_zone_is_served_and_the_finding_recorded(engine: PolicyEngine) -> None:
    member = TaskContext(
        dag_id="mkt_dag", task_id="read", dag_file="mkt/mkt_dag.py", tags=frozenset(), owners=frozenset()
    )
    decision = engine.decide_credential(
        kind="connection", name="warehouse_raw", task=member, zone="marketing"
    )
    assert decision.outcome is Outcome.DRY_RUN and decision.allowed
