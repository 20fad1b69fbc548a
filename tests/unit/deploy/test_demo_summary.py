"""The decisions and violations summary (scripts/demo_summary.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from scripts import demo_summary

DECISIONS = [
    {
        "dag_id": "recs_content_ranking",
        "task_id": "rank_from_purchases",
        "map_index": -1,
        "try_number": 1,
        "zone": "content_recommendations",
        "zone_source": "dag",
        "mode": "enforce",
        "outcome": "deny",
        "violation_count": 1,
        "source": "api",
    },
    {
        "dag_id": "m",
        "task_id": "t",
        "map_index": 3,
        "try_number": 2,
        "zone": None,
        "zone_source": "none",
        "mode": None,
        "outcome": "allow",
        "violation_count": 0,
        "source": "in_process",
    },
]
VIOLATIONS = [
    {
        "dag_id": "recs_content_ranking",
        "task_id": "rank_from_purchases",
        "map_index": -1,
        "try_number": 1,
        "zone": "content_recommendations",
        "outcome": "deny",
        "rule": "category_not_allowed",
        "rules": ["category_not_allowed"],
        "input": "s3://lake/raw/purchases/daily",
        "reason": "carries category 'purchase_events'",
        "remediation": "read a reclassified version",
        "exemption": None,
        "input_source": "observed",
    }
]


def test_summary_of_decisions_and_violations() -> None:
    lines = demo_summary.render(DECISIONS, VIOLATIONS, set(), scope="for the demo's runs", filtered=True)
    text = "\n".join(lines)
    assert "decisions for the demo's runs: 2 (1 allow, 1 deny)" in text
    assert "violations for the demo's runs: 1 (1 deny)" in text
    assert "content_recommendations (dag)" in text
    assert "m.t[3]" in text
    assert "recs_content_ranking.rank_from_purchases <- s3://lake/raw/purchases/daily" in text
    header, row = lines[lines.index(next(line for line in lines if "known" in line)) :][:2]
    assert header.split() == ["task", "try", "zone", "outcome", "rules", "known", "input"]
    assert row.split()[-2:] == ["observed", "s3://lake/raw/purchases/daily"]
    assert "why:  carries category 'purchase_events'" in text
    assert "fix:  read a reclassified version" in text


def test_summary_without_the_tables_says_so() -> None:
    both = {demo_summary.DECISION_TABLE, demo_summary.VIOLATION_TABLE}
    lines = demo_summary.render([], [], both, scope="x")
    assert len(lines) == 1 and "No policyzones_decision, policyzones_violation table" in lines[0]
    assert "airflow db migrate" in lines[0]
    lines = demo_summary.render(DECISIONS, [], {demo_summary.VIOLATION_TABLE}, scope="x")
    assert "No policyzones_violation table" in lines[-1]


def test_summary_flags_runs_without_any_decision() -> None:
    lines = demo_summary.render([], [], set(), scope="for the demo's runs", filtered=True)
    assert demo_summary.NO_DECISIONS_NOTE in "\n".join(lines)
    lines = demo_summary.render([], [], set(), scope="(latest 50)", filtered=False)
    assert demo_summary.NO_DECISIONS_NOTE not in "\n".join(lines)


def test_summary_script_on_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_summary.main(["--db-url", f"sqlite:///{tmp_path}/nope.db"]) == 1
    assert "no database at" in capsys.readouterr().out
    assert not (tmp_path / "nope.db").exists()


def test_summary_script_on_a_database_without_the_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "airflow.db").close()
    assert demo_summary.main(["--db-url", f"sqlite:///{tmp_path}/airflow.db"]) == 0
    assert "No policyzones_decision, policyzones_violation table" in capsys.readouterr().out


@pytest.mark.integration
def test_summary_script_reads_the_providers_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against the provider's real table definitions: the summary and the schema agree."""
    models = pytest.importorskip("airflow_policyzones.db.models")
    from sqlalchemy import create_engine, insert

    url = f"sqlite:///{tmp_path}/airflow.db"
    engine = create_engine(url)
    models.policyzones_metadata.create_all(engine)
    now = datetime.now(timezone.utc)
    decision = {
        **{k: v for k, v in DECISIONS[0].items()},
        "run_id": "manual__1",
        "allowed": False,
        "policy_version": "sha256:abc",
        "claims_digest": "0" * 64,
        "decided_at": now,
        "input_count": 2,
        "finding_count": 1,
    }
    other_run = {**decision, "run_id": "manual__0", "task_id": "earlier"}
    with engine.begin() as conn:
        decision_id = conn.execute(
            insert(models.PolicyZonesDecision.__table__).values(**decision)
        ).inserted_primary_key[0]
        conn.execute(insert(models.PolicyZonesDecision.__table__).values(**other_run))
        conn.execute(
            insert(models.PolicyZonesViolation.__table__).values(
                **VIOLATIONS[0],
                decision_id=decision_id,
                run_id="manual__1",
                mode="enforce",
                policy_version="sha256:abc",
                decided_at=now,
            )
        )
    engine.dispose()
    assert demo_summary.main(["--db-url", url, "--run-id", "manual__1"]) == 0
    out = capsys.readouterr().out
    assert "decisions for the demo's runs: 1 (1 deny)" in out
    assert "earlier" not in out
    assert "violations for the demo's runs: 1 (1 deny)" in out
    assert "category_not_allowed" in out and "s3://lake/raw/purchases/daily" in out
    assert demo_summary.main(["--db-url", url]) == 0
    assert "decisions (latest 50): 2" in capsys.readouterr().out
