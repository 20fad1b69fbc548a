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
