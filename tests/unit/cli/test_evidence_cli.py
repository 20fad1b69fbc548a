"""`policyzones verify-records` and `policyzones policy-history` against real metadata databases
(SQLite and PostgreSQL): their reports, text and JSON, and exit codes."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_policyzones.cli.main import EXIT_OK, EXIT_USAGE, EXIT_VIOLATIONS, main
from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import TEST_POLICY, Prepared
from tests.support.db_fixtures import backend, engine, policy_path
from tests.unit.db.test_service import CLICKS, PURCHASES, decide, request_for

__all__ = ["backend", "engine", "policy_path"]

pytestmark = pytest.mark.integration

_START = datetime(2070, 1, 1, tzinfo=timezone.utc) + timedelta(days=random.randrange(10**3))
_windows = itertools.count()


@pytest.fixture
def since() -> datetime:
    """Each test records later than the previous ones: --since sees only its own rows."""
    return _START + timedelta(days=next(_windows))


def window(since: datetime) -> tuple[str, ...]:
    return ("--since", since.isoformat(), "--until", (since + timedelta(days=1)).isoformat())


def record(engine: PolicyEngine, at: datetime, *, dag_id: str, zone: str, inputs: list[str]) -> int:
    request = request_for(dag_id, f"cli__{uuid.uuid4().hex}", zone=zone, inputs=inputs)
    return decide(engine, request, source="in_process", now=at).decision_id


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tamper(statement: str, **params: object) -> None:
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(sa.text(statement), params)


def test_verify_records_passes_on_a_clean_history_and_fails_by_id(
    backend: Prepared,
    engine: PolicyEngine,
    since: datetime,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    allowed = record(engine, since, dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    updated = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES])
    pruned = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES])
    code, out, _ = run(capsys, "verify-records", *window(since))
    assert code == EXIT_OK, out
    assert "Verified 3 decision rows and 2 violation rows recorded since" in out
    assert "OK: every verifiable record is as the application wrote it." in out
    assert "Chain head: " in out

    code, out, _ = run(capsys, "verify-records", *window(since), "--format", "json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["ok"] is True and report["problems"] == []
    assert set(report["heads"]) == {"recs_dag", "ads_dag"}
    kept = tmp_path / "heads.json"
    kept.write_text(out)

    tamper("UPDATE policyzones_decision SET outcome = 'allow', allowed = true WHERE id = :id", id=updated)
    tamper("DELETE FROM policyzones_violation WHERE decision_id = :id", id=pruned)
    tamper("DELETE FROM policyzones_decision WHERE id = :id", id=allowed)
    code, out, _ = run(capsys, "verify-records", *window(since), "--against", str(kept))
    assert code == EXIT_VIOLATIONS
    assert f"altered: decision {updated}: its content no longer matches its digest" in out
    assert (
        f"deleted: a violation of decision {pruned}: violation 1 of 1 of decision {pruned} is missing" in out
    )
    assert (
        f"deleted: decision {allowed}: decision {updated} names it as its writer's previous decision" in out
    )
    assert "changed: DAG ads_dag: the head kept over its decisions up to" in out
    assert "Kept heads: 1 of 2 DAGs unchanged" in out
    assert "FAILED" in out

    moved = json.loads(kept.read_text())
    moved["unchained"]["first_chained_id"] = -1  # as if the first chained rows lost their digests since
    kept.write_text(json.dumps(moved))
    code, out, _ = run(capsys, "verify-records", *window(since), "--against", str(kept))
    assert code == EXIT_VIOLATIONS and "changed: chain start: the chain started with decision -1" in out

    code, out, _ = run(capsys, "verify-records", *window(since), "--format", "json")
    assert code == EXIT_VIOLATIONS
    problems = json.loads(out)["problems"]
    assert sorted((p["kind"], p["table"], p["decision_id"]) for p in problems) == [
        ("altered", "decision", updated),
        ("deleted", "decision", allowed),
        ("deleted", "violation", pruned),
    ]


def test_verify_records_rejects_bad_arguments(
    backend: Prepared, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "verify-records", "--since", "last tuesday")
    assert code == EXIT_USAGE and "--since 'last tuesday'" in err
    code, _, err = run(capsys, "verify-records", "--against", str(tmp_path / "missing.json"))
    assert code == EXIT_USAGE and "check the path" in err
    (tmp_path / "bad.json").write_text("{}")
    code, _, err = run(capsys, "verify-records", "--against", str(tmp_path / "bad.json"))
    assert code == EXIT_USAGE and "no 'heads' object" in err and "Traceback" not in err
    (tmp_path / "text.json").write_text("not json")
    code, _, err = run(capsys, "verify-records", "--against", str(tmp_path / "text.json"))
    assert code == EXIT_USAGE and "not JSON" in err


def test_policy_history_lists_shows_and_diffs_versions(
    backend: Prepared,
    engine: PolicyEngine,
    since: datetime,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    record(engine, since, dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    changed = tmp_path / "policy-v2.yaml"
    changed.write_text(TEST_POLICY.replace("allowed_categories: [watch_history]", "allowed_categories: []"))
    newer = PolicyEngine.from_file(changed)
    record(newer, since + timedelta(hours=1), dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    old_short, new_short = (
        version.removeprefix("sha256:")[:12] for version in (engine.version, newer.version)
    )

    code, out, _ = run(capsys, "policy-history")
    assert code == EXIT_OK
    line = next(line for line in out.splitlines() if new_short in line)
    assert f"first {(since + timedelta(hours=1)).isoformat(timespec='seconds')}" in line
    assert f"from {changed}" in line

    code, out, _ = run(capsys, "policy-history", "--format", "json")
    versions = {item["version"]: item for item in json.loads(out)["versions"]}
    assert versions[newer.version]["decisions"] == 1 and versions[newer.version]["text_stored"] is True
    assert versions[engine.version]["last_used_at"] >= since.isoformat()

    code, out, _ = run(capsys, "policy-history", "--show", new_short)
    assert code == EXIT_OK and out == changed.read_text()

    code, out, _ = run(capsys, "policy-history", "--diff", old_short, new_short)
    assert code == EXIT_OK
    assert "zones (1 changed):" in out and "recs" in out and "watch_history" in out

    code, out, _ = run(capsys, "policy-history", "--diff", old_short, new_short, "--format", "json")
    assert json.loads(out)["counts"] == {"zones": {"added": 0, "removed": 0, "changed": 1}}

    code, _, err = run(capsys, "policy-history", "--show", "abcdef0123")
    assert code == EXIT_USAGE
    assert "no policy version 'abcdef0123'" in err and new_short in err and "Traceback" not in err


# --- policyzones evidence ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reclassifying_policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PolicyEngine]:
    from airflow_policyzones.policy.loader import load_policy_bytes
    from tests.unit.db.test_propagation import RECLASSIFYING_POLICY

    path = tmp_path_factory.mktemp("evidence") / "policy.yaml"
    path.write_text(RECLASSIFYING_POLICY)
    return path, PolicyEngine(load_policy_bytes(RECLASSIFYING_POLICY.encode(), source=str(path)))


def test_evidence_text_json_and_html(
    backend: Prepared,
    since: datetime,
    reclassifying_policy: tuple[Path, PolicyEngine],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from tests.unit.db.test_evidence import consented, decide

    path, policy = reclassifying_policy
    output = consented(policy, since)
    decide(policy, "ai_dag", zone="ai", inputs=[output], at=since + timedelta(hours=2))
    decide(policy, "ai_dag", zone="ai", inputs=[PURCHASES], at=since + timedelta(hours=3))
    ask = ("evidence", "--category", "purchase_events", "--zone", "ai", *window(since), "--policy", str(path))

    code, out, err = run(capsys, *ask)
    assert code == EXIT_OK, err
    assert (
        "Verdict: purchase_events reached ai only as aggregated data consented for ai, through reclassifier "
        "ads_consent_filter; 0 other uses; 1 attempt blocked." in out
    )
    assert f"path:       {output} (written by ads_dag.read in ads) ← {PURCHASES}" in out
    assert "allowed by: sanctioned flow ads → ai through reclassifier ads_consent_filter" in out
    assert "consent_missing, not_aggregated on s3://lake/raw/purchases/daily" in out
    assert "Completeness: " in out and "chain head: " in out and "policy versions in force:" in out

    code, out, _ = run(capsys, *ask, "--format", "json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["uses_total"] == 1 and report["blocked_total"] == 1
    assert report["completeness"]["policy_versions"][0]["version"] == policy.version
    assert len(report["completeness"]["chain"]["head"]) == 64
    assert report["uses"][0]["path"][0]["reclassifier"] == "ads_consent_filter"

    target = tmp_path / "evidence.html"
    code, out, _ = run(capsys, *ask, "--format", "html", "--output", str(target))
    assert code == EXIT_OK and f"Wrote the html report to {target}" in out
    html = target.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<style>" in html
    assert (
        "<script" not in html
        and "<link" not in html
        and "src=" not in html
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert 'class="edge observed" data-from="ads" data-to="ai"' in html
    assert report["completeness"]["chain"]["head"] in html and policy.version in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--category", "purchases", "--zone", "ai"), "unknown category 'purchases'"),
        (("--category", "purchase_events", "--zone", "training"), "unknown zone 'training'"),
        (("--zone", "ai"), "say which data"),
        (("--category", "purchase_events", "--until", "2020-01-01"), "empty period"),
        (("--category", "purchase_events", "--until", "yesterday"), "--until 'yesterday' is neither"),
    ],
)
def test_evidence_bad_input_exits_2_without_a_traceback(
    backend: Prepared,
    reclassifying_policy: tuple[Path, PolicyEngine],
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    path, _ = reclassifying_policy
    code, out, err = run(capsys, "evidence", "--since", "2026-01-01", *args, "--policy", str(path))
    assert code == EXIT_USAGE and out == ""
    assert err.startswith("policyzones evidence: error: ") and message in err
    assert "Traceback" not in err
    if "unknown zone" in message:
        assert "ads, ai, marketing, recs" in err


def test_evidence_before_the_provider_was_installed(
    backend: Prepared, reclassifying_policy: tuple[Path, PolicyEngine], capsys: pytest.CaptureFixture[str]
) -> None:
    path, policy = reclassifying_policy
    record(policy, _START, dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    code, out, _ = run(
        capsys,
        "evidence",
        "--category",
        "purchase_events",
        "--zone",
        "ai",
        "--since",
        "1999-01-01",
        "--until",
        "1999-02-01",
        "--policy",
        str(path),
    )
    assert code == EXIT_OK
    assert "Verdict: No decision was recorded between 1999-01-01T00:00:00+00:00" in out
    assert "! The whole period lies before the provider's first recorded decision" in out
