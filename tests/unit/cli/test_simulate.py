"""``policyzones simulate`` against real Airflow metadata databases (SQLite and PostgreSQL).

Decisions are recorded the way the api-server records them (``decide_and_record`` on real task
instances of real DAG runs) under the service tests' policy, then replayed under a new policy.
Each backend gets a database of its own, so that the counts are exact.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_policyzones.cli.main import EXIT_OK, EXIT_USAGE, main
from airflow_policyzones.policy import PolicyEngine, load_policy_bytes
from tests.support.airflow_db import (
    TEST_POLICY,
    backend_params,
    create_run,
    parsed_as,
    postgres_database,
    sync_dags,
    use_database,
    write_dags,
)

pytestmark = pytest.mark.integration

PURCHASES = "s3://lake/raw/purchases/daily"
CLICKS = "s3://lake/raw/ad_clicks/2026"
DERIVED = "s3://lake/derived/ads_features/daily"
ORDERS = "warehouse.raw.orders"  # a table SQL reads that only the new policy's catalog knows
NOT_AN_ASSET = "inlet 'purchases' (str) is not an Asset: declare inputs as airflow.sdk.Asset(uri)"

# The new policy: marketing leaves dry-run, AI Training drops its consent and aggregation
# requirements, the recs exemption is gone, unzoned tasks now default to the recs zone, and the
# catalog labels the orders table.
NEW_POLICY = (
    TEST_POLICY.replace("name: service-tests", "name: service-tests-v2")
    .replace(
        "catalog:\n",
        f"catalog:\n  - table: {ORDERS!r}\n    categories: [purchase_events]\n    consented: [ads]\n",
    )
    .replace("  require_zone: false\n", "  require_zone: false\n  default_zone: recs\n")
    .replace("    requires_consent: true\n    aggregated_only: true\n", "")
    .replace("    mode: dry_run\n", "")
    .split("exemptions:")[0]
)


@dataclass(frozen=True)
class Seeded:
    """The runs of the recorded decisions, by the letter the tests use for them."""

    runs: dict[str, str]


@pytest.fixture(scope="module", params=backend_params())
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh metadata database for this module: migrated, the test DAGs synced, nothing else."""
    from airflow.utils import db

    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="policyzones-simulate-")))
        if request.param == "sqlite":
            url = f"sqlite:///{root / 'airflow.db'}"
        else:
            url = stack.enter_context(postgres_database("pz_simulate"))
        folder = root / "dags"
        write_dags(folder)
        stack.enter_context(use_database(url))
        db.initdb()
        sync_dags(folder)
        yield url


@pytest.fixture(scope="module")
def old_engine() -> PolicyEngine:
    return PolicyEngine(load_policy_bytes(TEST_POLICY.encode(), source="old.yaml"))


@pytest.fixture(scope="module")
def new_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("simulate") / "new.yaml"
    path.write_text(NEW_POLICY, encoding="utf-8")
    return path


def record(
    engine: PolicyEngine,
    dag_id: str,
    *,
    zone: str | None,
    inputs: list[str],
    days_ago: float,
    uncheckable: list[str] | None = None,
    sql_reads: list[str] | None = None,
    task_id: str = "read",
    map_index: int = -1,
) -> tuple[str, str]:
    """Record one decision on a new run's task instance, as the api-server does; (run_id, outcome)."""
    from airflow.utils.session import create_session

    from airflow_policyzones.db.service import decide_and_record
    from airflow_policyzones.wire import DecisionRequest

    run_id = create_run(dag_id)
    # The task declares what its try claims (the server compares claims with the parsed DAG).
    parsed_as(dag_id, run_id, task_id=task_id, zone=zone, inlets=inputs)
    request = DecisionRequest.model_validate(
        {
            "task": {
                "dag_id": dag_id,
                "task_id": task_id,
                "run_id": run_id,
                "map_index": map_index,
                "try_number": 1,
            },
            "zone": zone,
            "zone_source": "dag" if zone is not None else "none",
            "inputs": [{"namespace": "asset", "name": name} for name in inputs],
            "uncheckable": uncheckable or [],
            "sql_reads": [{"namespace": "table", "name": name} for name in sql_reads or []],
        }
    )
    with create_session() as session:
        response = decide_and_record(
            session=session,
            engine=engine,
            request=request,
            source="api",
            now=datetime.now(timezone.utc) - timedelta(days=days_ago),
        )
    return run_id, response.outcome


@pytest.fixture(scope="module")
def seeded(database: str, old_engine: PolicyEngine) -> Seeded:
    plan: dict[str, dict[str, Any]] = {
        "A": {"dag_id": "ads_dag", "zone": "ads", "inputs": [PURCHASES], "days_ago": 1},
        "B": {"dag_id": "recs_dag", "zone": "recs", "inputs": [CLICKS], "days_ago": 2},
        "C": {"dag_id": "mkt_dag", "zone": "marketing", "inputs": [PURCHASES], "days_ago": 3},
        "D": {
            "dag_id": "ai_dag",
            "zone": "ai",
            "inputs": [PURCHASES],
            "days_ago": 4,
            "task_id": "mapped",
            "map_index": 2,
        },
        "E": {"dag_id": "impostor", "zone": "ads", "inputs": [PURCHASES], "days_ago": 5},
        "F": {
            "dag_id": "ads_dag",
            "zone": "ads",
            "inputs": [CLICKS],
            "uncheckable": [NOT_AN_ASSET],
            "days_ago": 6,
        },
        "G": {"dag_id": "mkt_dag", "zone": "marketing", "inputs": [PURCHASES], "days_ago": 40},
        "H": {"dag_id": "ads_dag", "zone": None, "inputs": [], "days_ago": 7},
        "I": {
            "dag_id": "ads_dag",
            "zone": "ads",
            "inputs": [PURCHASES],
            "sql_reads": [ORDERS],
            "days_ago": 8,
        },
        "P": {"dag_id": "recs_dag", "zone": "recs", "inputs": [DERIVED], "days_ago": 45},
    }
    runs: dict[str, str] = {}
    outcomes: dict[str, str] = {}
    for letter, spec in plan.items():
        runs[letter], outcomes[letter] = record(old_engine, **spec)
    # What the old policy decided (the service's own tests pin the reasons).
    assert outcomes == {
        "A": "allow",
        "B": "exempted",
        "C": "dry_run",
        "D": "deny",
        "E": "deny",
        "F": "deny",
        "G": "dry_run",
        "H": "allow",
        "I": "deny",  # undeclared_input: nothing labels the orders table
        "P": "allow",  # recs accepts unlabeled data, and nothing had propagated yet
    }
    return Seeded(runs)


def simulate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def brief(change: dict[str, Any], seeded: Seeded) -> str:
    """``dag.task[map] RUN/TRY ZONE: recorded(rules) -> new(rules)``, RUN the seeded run's letter."""
    letter = {run_id: letter for letter, run_id in seeded.runs.items()}[change["run_id"]]
    mapped = f"[{change['map_index']}]" if change["map_index"] >= 0 else ""
    recorded, new = change["recorded"], change["new"]
    return (
        f"{change['dag_id']}.{change['task_id']}{mapped} {letter}/{change['try_number']} {change['zone']}: "
        f"{recorded['outcome']}({'+'.join(recorded['rules'])}) -> {new['outcome']}({'+'.join(new['rules'])})"
    )


# --- the replay ---------------------------------------------------------------------------------


def test_newly_blocked_and_newly_allowed_are_exact(
    seeded: Seeded, new_policy: Path, old_engine: PolicyEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = simulate(capsys, str(new_policy), "--since", "30d", "--format", "json")

    assert code == EXIT_OK, err
    report = json.loads(out)
    assert report["format"] == "policyzones-simulate"
    assert report["policy"]["name"] == "service-tests-v2"
    assert report["summary"] == {
        "decisions": 8,  # G and P are older than 30 days
        "newly_blocked": 3,
        "newly_allowed": 2,
        "other_changes": 0,
        "unchanged": 3,  # A allowed, E not a member, F's uncheckable inlet still denied
    }
    assert [brief(change, seeded) for change in report["newly_blocked"]] == [  # in recording order
        "recs_dag.read B/1 recs: exempted(category_not_allowed) -> deny(category_not_allowed)",
        "mkt_dag.read C/1 marketing: dry_run(category_not_allowed) -> deny(category_not_allowed)",
        # unzoned under the old policy; the new default zone is recs, which ads_dag is no member of
        "ads_dag.read H/1 recs: allow() -> deny(zone_membership)",
    ]
    assert [brief(change, seeded) for change in report["newly_allowed"]] == [
        "ai_dag.mapped[2] D/1 ai: deny(consent_missing+not_aggregated) -> allow()",
        # the table the SQL read is labeled now, and ads may read purchase events
        "ads_dag.read I/1 ads: deny(undeclared_input) -> allow()",
    ]
    assert report["other_changes"] == []
    assert report["zones"] == {
        "ads": {"decisions": 4, "newly_blocked": 0, "newly_allowed": 1, "other_changes": 0},
        "ai": {"decisions": 1, "newly_blocked": 0, "newly_allowed": 1, "other_changes": 0},
        "marketing": {"decisions": 1, "newly_blocked": 1, "newly_allowed": 0, "other_changes": 0},
        "recs": {"decisions": 2, "newly_blocked": 2, "newly_allowed": 0, "other_changes": 0},
    }
    assert report["dags"] == {
        "ads_dag": {"decisions": 4, "newly_blocked": 1, "newly_allowed": 1, "other_changes": 0},
        "ai_dag": {"decisions": 1, "newly_blocked": 0, "newly_allowed": 1, "other_changes": 0},
        "impostor": {"decisions": 1, "newly_blocked": 0, "newly_allowed": 0, "other_changes": 0},
        "mkt_dag": {"decisions": 1, "newly_blocked": 1, "newly_allowed": 0, "other_changes": 0},
        "recs_dag": {"decisions": 1, "newly_blocked": 1, "newly_allowed": 0, "other_changes": 0},
    }
    assert report["recorded_policy_versions"] == {old_engine.version: 8}


def test_a_wider_window_includes_older_decisions(
    seeded: Seeded, new_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = simulate(capsys, str(new_policy), "--since", "42d", "--format", "json")

    report = json.loads(out)
    assert code == EXIT_OK
    assert report["summary"]["decisions"] == 9
    blocked = [(change["dag_id"], change["run_id"]) for change in report["newly_blocked"]]
    assert blocked == [
        ("recs_dag", seeded.runs["B"]),
        ("mkt_dag", seeded.runs["C"]),
        ("mkt_dag", seeded.runs["G"]),
        ("ads_dag", seeded.runs["H"]),
    ]


def test_the_same_policy_changes_nothing(
    seeded: Seeded, old_engine: PolicyEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = tmp_path / "same.yaml"
    same.write_text(TEST_POLICY, encoding="utf-8")

    code, out, _ = simulate(capsys, str(same), "--since", "30d", "--format", "json")

    report = json.loads(out)
    assert code == EXIT_OK
    assert report["policy"]["version"] == old_engine.version
    assert report["summary"] == {
        "decisions": 8,
        "newly_blocked": 0,
        "newly_allowed": 0,
        "other_changes": 0,
        "unchanged": 8,
    }


def test_text_report(seeded: Seeded, new_policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = simulate(capsys, str(new_policy), "--since", "30d", "--examples", "1")

    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].startswith("policyzones simulate: policy 'service-tests-v2' ")
    assert "replayed over 8 decisions recorded since" in lines[0]
    header = lines.index("ZONE       DECISIONS  NEWLY BLOCKED  NEWLY ALLOWED  OTHER CHANGES")
    assert lines[header + 2 : header + 6] == [
        "ads        4          0              1              0",
        "ai         1          0              1              0",
        "marketing  1          1              0              0",
        "recs       2          2              0              0",
    ]
    assert "Newly blocked (recorded allow, dry_run or exempted; now deny): 3" in lines
    blocked = lines.index("Newly blocked (recorded allow, dry_run or exempted; now deny): 3")
    assert [line for line in lines[blocked:] if line.startswith("  zone")][:3] == [
        "  zone marketing, DAG mkt_dag: 1 try",
        "  zone recs, DAG ads_dag: 1 try",
        "  zone recs, DAG recs_dag: 1 try",
    ]
    assert (
        f"    recs_dag.read  run {seeded.runs['B']}  try 1  exempted -> deny  now: category_not_allowed"
        "  was: category_not_allowed"
    ) in lines
    assert f"    ads_dag.read  run {seeded.runs['H']}  try 1  allow -> deny  now: zone_membership" in lines
    assert "Newly allowed (recorded deny; now allow, dry_run or exempted): 2" in lines
    assert (
        f"    ai_dag.mapped  run {seeded.runs['D']} map 2  try 1  deny -> allow"
        "  was: consent_missing, not_aggregated"
    ) in lines
    assert lines[-1] == (
        "8 decisions replayed: 3 newly blocked, 2 newly allowed, 0 other changes, 3 unchanged"
    )


def test_read_only(
    seeded: Seeded, new_policy: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow import settings

    from airflow_policyzones.db.models import table_names

    def counts() -> dict[str, int]:
        names = sorted(table_names() | {"task_instance", "dag_run", "dag"})
        with settings.engine.connect() as conn:
            return {name: int(conn.scalar(sa.text(f"SELECT count(*) FROM {name}")) or 0) for name in names}

    writes: list[str] = []

    def watch(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE", "CREATE", "DROP"}:
            writes.append(statement)

    before = counts()
    sa.event.listen(settings.engine, "before_cursor_execute", watch)
    try:
        code, _, _ = simulate(capsys, str(new_policy), "--since", "100d", "--format", "json")
    finally:
        sa.event.remove(settings.engine, "before_cursor_execute", watch)

    assert code == EXIT_OK
    assert writes == []
    assert counts() == before
    assert before["policyzones_decision"] == 10


def test_propagated_labels_are_joined_when_the_table_exists(
    seeded: Seeded, old_engine: PolicyEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """P read an asset nobody had labeled; labels propagated to it since make the same policy deny it."""
    from airflow_policyzones.db import models

    model = getattr(models, "PolicyZonesAssetLabels", None)
    if model is None:
        pytest.skip("the provider does not define PolicyZonesAssetLabels (yet)")
    from airflow.utils.session import create_session

    same = tmp_path / "same.yaml"
    same.write_text(TEST_POLICY, encoding="utf-8")
    with create_session() as session:
        session.execute(
            sa.insert(model.__table__).values(
                namespace="asset",
                name=DERIVED,
                categories=["purchase_events"],
                consented=["ads"],
                aggregated=False,
                origins=["ads"],
                reclassified_by=[],
                event_count=1,
                updated_at=datetime.now(timezone.utc),
            )
        )
    try:
        code, out, _ = simulate(capsys, str(same), "--since", "50d", "--format", "json")
    finally:
        with create_session() as session:
            session.execute(sa.delete(model.__table__).where(model.__table__.c.name == DERIVED))

    report = json.loads(out)
    assert code == EXIT_OK
    assert report["propagated_labels"] == {"table": "policyzones_asset_labels", "assets": 1}
    assert [brief(change, seeded) for change in report["newly_blocked"]] == [
        "recs_dag.read P/1 recs: allow() -> deny(category_not_allowed+unsanctioned_flow)",
    ]
    assert report["summary"]["decisions"] == 10
    assert report["summary"]["newly_blocked"] == 1 and report["summary"]["newly_allowed"] == 0


# --- bad input ----------------------------------------------------------------------------------


def test_invalid_new_policy_exits_2_with_the_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "new.yaml"
    policy.write_text("version: 1\nzones:\n  ads:\n    purpose: ads\n    colour: blue\n", encoding="utf-8")

    code, out, err = simulate(capsys, str(policy))

    assert code == EXIT_USAGE
    assert out == ""
    assert f"{policy}:5" in err and "unknown field 'colour'" in err
    assert "Traceback" not in err


def test_missing_policy_and_bad_since_exit_2(
    tmp_path: Path, new_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = simulate(capsys, str(tmp_path / "nowhere.yaml"))
    assert (code, out) == (EXIT_USAGE, "")
    assert "nowhere.yaml" in err and "Traceback" not in err

    code, out, err = simulate(capsys, str(new_policy), "--since", "last month")
    assert (code, out) == (EXIT_USAGE, "")
    assert "--since 'last month'" in err


def test_help_says_what_replay_means(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = simulate(capsys, "--help")

    assert code == EXIT_OK
    text = " ".join(out.split())
    assert "Replay means: each recorded decision (one per task-instance try) is made again" in text
    assert "the recorded zone" in text and "policyzones_asset_labels" in text
    assert "Nothing is written." in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_and_examples_cut_short(
    seeded: Seeded, new_policy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_policyzones.cli import commands as cli_commands

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(cli_commands, "PROGRESS_MIN_DECISIONS", 1)

    code, out, _ = simulate(capsys, str(new_policy), "--since", "30d", "--examples", "0")

    assert code == EXIT_OK
    assert "replaying decisions" in terminal.getvalue()
    lines = out.splitlines()
    assert "  zone recs, DAG recs_dag: 1 try" in lines
    assert lines[lines.index("  zone recs, DAG recs_dag: 1 try") + 1] == (
        "    ... and 1 more (--format json lists every one)"
    )


def test_validate_against_prints_the_diff_then_simulates(
    seeded: Seeded, new_policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``validate NEW --against OLD`` where the metadata database is reachable: diff, then replay."""
    old = tmp_path / "old.yaml"
    old.write_text(TEST_POLICY, encoding="utf-8")
    code = main(["validate", str(new_policy), "--against", str(old), "--since", "30d"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert f"Changes from {old} (" in out
    assert "  ~ settings default_zone: default_zone: null -> 'recs'" in out
    assert "  + catalog table warehouse.raw.orders" in out
    assert "Simulation over the recorded decisions:" in out
    assert "8 decisions replayed: 3 newly blocked, 2 newly allowed, 0 other changes, 3 unchanged" in out
    assert out.index("Changes from") < out.index("Simulation over")

    assert main(["validate", str(new_policy), "--against", str(old), "--no-simulate"]) == EXIT_OK
    assert "Simulation over" not in capsys.readouterr().out
