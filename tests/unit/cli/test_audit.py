"""`policyzones audit`: its arguments, and its reports (unchecked tries, blind tasks), text and
JSON, with their exit codes, against real metadata databases seeded as the blind API tests do
(the bypass that leaves a try unchecked runs against a real deployment in e2e)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from airflow_policyzones.cli.main import EXIT_OK, EXIT_USAGE, EXIT_VIOLATIONS, main
from airflow_policyzones.db.audit import BLIND_EXPLANATION, blind_tasks
from airflow_policyzones.db.audit import parse_since as _parse_since
from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import create_run
from tests.support.db_fixtures import backend, engine, policy_path
from tests.unit.api.test_blind_api import Seeded, Try, our_dags, record, seed

__all__ = ["backend", "engine", "our_dags", "policy_path"]


@pytest.mark.parametrize("text", ["yesterday", "7 days", "d7", "", "2026-13-01", "99999999999d", "\u00b2d"])
def test_an_unreadable_since_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--since", text]) == EXIT_USAGE
    assert "--since" in capsys.readouterr().err


def test_since_accepts_durations_and_iso_dates() -> None:
    now = datetime.now(timezone.utc)
    week = _parse_since("7d")
    assert week is not None and abs((now - week) - timedelta(days=7)) < timedelta(seconds=5)
    hours = _parse_since("12h")
    assert hours is not None and abs((now - hours) - timedelta(hours=12)) < timedelta(seconds=5)
    assert _parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert _parse_since("2026-11-01T10:00:00+01:00") == datetime(2026, 11, 1, 9, tzinfo=timezone.utc)


# --- against a real metadata database (SQLite and PostgreSQL) --------------------------------------


@pytest.fixture(scope="module")
def seeded(our_dags: set[str], engine: PolicyEngine) -> Seeded:
    """The blind API tests' tries, recorded later than theirs (their window ends before this one)."""
    return seed(
        engine, base=datetime(2040, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=random.randrange(10**6))
    )


def audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()  # what seeding logged
    code = main(["audit", *args])
    return code, capsys.readouterr().out


def test_audit_reports_blind_tasks_as_a_warning(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    from airflow.utils.session import create_session

    since = seeded.since.isoformat()
    code, out = audit(capsys, "--since", since, "--format", "json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["unchecked"] == []
    with create_session() as session:
        expected = [task.to_dict() for task in blind_tasks(session=session, since=seeded.since)]
    assert report["blind"] == expected
    ours = {(item["dag_id"], item["task_id"]): item for item in report["blind"]}
    # Every DAG, readable or not: the CLI runs with the metadata database's own access. (The
    # counts are the API tests' to check: the UI tests record tries of these DAGs later on.)
    assert {"blind_ads.quiet", "blind_ads.retried", "blind_hidden.quiet", "mkt_blind.quiet"} <= {
        f"{dag}.{task}" for dag, task in ours
    }
    assert ("blind_ads", "reader") not in ours and ("blind_ads", "observed") not in ours
    assert ("mkt_blind", "undeclared") not in ours and ("blind_ads", "failed") not in ours

    code, out = audit(capsys, "--since", since)
    assert code == EXIT_OK
    assert "0 task-instance tries since" in out
    assert f"Blind tasks (successful tries without a known read) since {since}: {BLIND_EXPLANATION}" in out
    quiet = next(item for item in expected if (item["dag_id"], item["task_id"]) == ("blind_ads", "quiet"))
    line = next(line for line in out.splitlines() if "blind_ads.quiet " in line)
    assert line.split() == [
        "blind_ads.quiet", "zone", "ads", str(quiet["blind_tries"]), "blind,", str(quiet["tries_with_reads"]),
        "with", "reads", "last:", "run", quiet["run_id"], "map", "-1", "try", str(quiet["try_number"]),
        datetime.fromisoformat(quiet["decided_at"]).isoformat(timespec="seconds"),
    ]  # fmt: skip
    assert f"{len(expected)} tasks ran blind since {since} (warning)" in out


def test_fail_on_blind_makes_blind_tasks_a_failure(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    since = seeded.since.isoformat()
    code, out = audit(capsys, "--since", since, "--fail-on-blind")
    assert code == EXIT_VIOLATIONS
    assert "ran blind since" in out and "(error)" in out
    assert audit(capsys, "--since", since, "--fail-on-blind", "--format", "json")[0] == EXIT_VIOLATIONS
    # Nothing blind in the window: the flag changes nothing. (After every date any test module
    # records in this database: the evidence tests record tries decades ahead.)
    later = datetime(2900, 1, 1, tzinfo=timezone.utc).isoformat()
    code, out = audit(capsys, "--since", later, "--fail-on-blind")
    assert code == EXIT_OK
    assert f"0 tasks ran blind since {later}\n" in out


def test_an_unchecked_try_fails_the_audit_and_blind_tasks_are_still_listed(
    seeded: Seeded, engine: PolicyEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.api.test_coverage_api import _start

    run_id = create_run("blind_plain")
    _start("blind_plain", run_id, "quiet", seeded.since + timedelta(minutes=30))
    try:
        code, out = audit(capsys, "--since", seeded.since.isoformat(), "--format", "json")
        assert code == EXIT_VIOLATIONS
        report = json.loads(out)
        assert [(item["dag_id"], item["run_id"]) for item in report["unchecked"]] == [("blind_plain", run_id)]
        assert report["blind"]
        code, out = audit(capsys, "--since", seeded.since.isoformat())
        assert code == EXIT_VIOLATIONS
        assert f"blind_plain.quiet  run {run_id}  map -1  try 1  running" in out
        assert "1 task-instance try since" in out
    finally:
        # Its decision (the try is still running, so it is not blind) keeps other tests' audits clean.
        record(engine, Try("blind_plain", "quiet", 0), run_id=run_id, at=seeded.since + timedelta(minutes=30))
    assert audit(capsys, "--since", seeded.since.isoformat())[0] == EXIT_OK


def test_help_documents_blind_tasks_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--help"]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "--fail-on-blind" in out
    assert "the check had nothing to decide on" in out
    assert "blind tasks are a warning (exit 0) unless --fail-on-blind is given" in out
