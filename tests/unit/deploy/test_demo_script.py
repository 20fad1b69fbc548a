"""The pure parts of ``make demo`` (scripts/demo.py, scripts/demo_summary.py).

The whole demo (real api-server, scheduler, dag-processor, triggerer) takes about a minute and is
run by hand (`make demo`); these tests cover what it decides and prints, and that ``stop``
signals exactly the processes it recorded.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from scripts import demo, demo_summary
from scripts.demo import build_parser
from scripts.localdemo import outcomes
from scripts.localdemo.common import EXIT_OK, EXIT_USAGE, DemoError
from scripts.localdemo.outcomes import (
    Expected,
    TaskResult,
    expected_outcomes,
    format_task_summary,
    verdict,
)
from scripts.localdemo.processes import (
    ProcessRecord,
    ensure_port_free,
    parse_proc_stat,
    process_identity,
    read_records,
    stop_records,
    write_record,
)
from scripts.localdemo.settings import (
    DemoPaths,
    airflow_settings,
    clean_environment,
    load_or_create_secret,
    write_env_file,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


# ----------------------------------------------------------------------------- arguments


def test_up_defaults() -> None:
    args = build_parser().parse_args(["up"])
    assert (args.port, args.host, args.reset, args.strict) == (8080, "127.0.0.1", False, False)
    assert args.startup_timeout > 0 and args.run_timeout > 0
    assert Path(args.demo_dir) == REPO_ROOT / ".demo"


def test_up_options() -> None:
    args = build_parser().parse_args(
        ["--demo-dir", "/tmp/x", "up", "--port", "8081", "--host", "0.0.0.0", "--run-timeout", "5", "--reset"]
    )
    assert (args.demo_dir, args.port, args.host, args.run_timeout, args.reset) == (
        "/tmp/x",
        8081,
        "0.0.0.0",
        5.0,
        True,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["up", "--port", "0"], "port out of range"),
        (["up", "--port", "http"], "not a port number"),
        (["up", "--run-timeout", "-3"], "must be positive"),
        (["up", "--startup-timeout", "soon"], "not a number"),
        (["down"], "invalid choice"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------ settings


def test_settings_use_absolute_paths_in_the_demo_dir(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path / ".demo")
    settings = airflow_settings(paths=paths, port=8123, jwt_secret="secret")
    assert settings["AIRFLOW_HOME"] == str(paths.home)
    assert settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{paths.home}/airflow.db"
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__POLICYZONES__POLICY_FILE"):
        assert Path(settings[key]).is_absolute() and Path(settings[key]).exists(), key
    assert settings["AIRFLOW__POLICYZONES__POLICY_FILE"] == str(REPO_ROOT / "dags_examples" / "policy.yaml")
    assert settings["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags_examples")
    assert settings["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert settings["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert settings["AIRFLOW__API_AUTH__JWT_SECRET"] == "secret"
    assert settings["POLICYZONES_EVIDENCE_DIR"] == str(paths.root / "evidence")
    assert settings["POLICYZONES_DEMO_DATA_DIR"] == str(paths.root / "data")


def test_clean_environment_drops_the_callers_airflow_settings(tmp_path: Path) -> None:
    settings = {"AIRFLOW_HOME": "/demo", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    caller = {
        "AIRFLOW_HOME": "/home/me/airflow",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://prod",
        "HOME": "/home/me",
        "PATH": "/usr/bin",
    }
    env, dropped = clean_environment(caller, settings)
    assert dropped == ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    assert env["AIRFLOW_HOME"] == "/demo" and env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["HOME"] == "/home/me"
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin"]


def test_secret_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "jwt_secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_env_file_is_private_and_sourceable(tmp_path: Path) -> None:
    path = tmp_path / "demo.env"
    write_env_file(path, {"AIRFLOW_HOME": "/a b/it's", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = subprocess.run(
        [
            "bash",
            "-c",
            f'set -a; . "{path}"; set +a; printf "%s|%s" "$AIRFLOW_HOME" "$AIRFLOW__CORE__LOAD_EXAMPLES"',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "/a b/it's|False"


# -------------------------------------------------------------------------- expectations

CHECK_REPORT: dict[str, Any] = {
    "tasks": [
        {"dag_id": "d", "task_id": "ok", "file": "d.py", "outcome": "allow", "decision": {"findings": []}},
        {
            "dag_id": "d",
            "task_id": "blocked",
            "file": "d.py",
            "outcome": "deny",
            "decision": {
                "findings": [
                    {"rule": "consent_missing", "rules": ["consent_missing", "not_aggregated"]},
                    {"rule": "consent_missing", "rules": ["consent_missing"]},
                ]
            },
        },
        {
            "dag_id": "m",
            "task_id": "logged",
            "file": "sub/m.py",
            "outcome": "dry_run",
            "decision": {"findings": [{"rule": "category_not_allowed", "rules": []}]},
        },
        {"dag_id": "m", "task_id": "mapped", "file": "sub/m.py", "outcome": "not_checked", "decision": None},
    ]
}


def test_expected_outcomes_from_a_check_report() -> None:
    expected = expected_outcomes(CHECK_REPORT)
    assert expected[("d", "ok")] == Expected("d", "ok", "allow", ())
    blocked = expected[("d", "blocked")]
    assert (blocked.state, blocked.rules) == ("failed", ("consent_missing", "not_aggregated"))
    assert blocked.label == "deny (consent_missing, not_aggregated)"
    assert expected[("m", "logged")].state == "success"
    assert expected[("m", "logged")].rules == ("category_not_allowed",)
    assert expected[("m", "mapped")].state is None
    assert outcomes.dag_files(CHECK_REPORT) == {"d": "d.py", "m": "sub/m.py"}


@pytest.mark.integration
def test_expected_outcomes_of_the_example_dags() -> None:
    """What `make demo` must show: the blocked tasks fail, everything else succeeds."""
    settings = {
        "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__POLICYZONES__POLICY_FILE": str(outcomes.POLICY_FILE),
    }
    env, _ = clean_environment(os.environ, settings)
    report = outcomes.policy_check(env)
    states = {key: e.state for key, e in expected_outcomes(report).items()}
    assert states == {
        ("ads_optimization_daily", "build_bid_features"): "success",
        ("purchases_reclassify", "aggregate_consented"): "success",
        ("recs_content_ranking", "rank_from_watch_history"): "success",
        ("recs_content_ranking", "rank_from_purchases"): "failed",
        ("ai_training_recsys", "train_on_raw_purchases"): "failed",
        ("ai_training_recsys", "train_on_consented_aggregates"): "success",
        ("marketing_attribution", "attribute_campaigns"): "success",
        # Scheduled on the Assets above: labels propagated from what their upstream read.
        ("ads_spend_segments", "segment_spenders"): "success",
        ("recs_spend_ranking", "rank_by_spend_segments"): "failed",
        ("ai_training_features", "train_on_bid_features"): "failed",
        # Declares nothing: the check sees no input; its read is decided while it runs (below).
        ("recs_purchase_export", "rank_from_purchase_export"): "success",
        # Declares nothing: the api-server decides when it asks for its connection (below).
        ("recs_purchase_warehouse", "rank_from_purchase_warehouse"): "success",
    }
    observed = outcomes.observed_outcomes(report, env, data=Path("/srv/demo/data"))
    assert observed == {
        ("recs_purchase_export", "rank_from_purchase_export"): Expected(
            "recs_purchase_export",
            "rank_from_purchase_export",
            "deny",
            ("category_not_allowed",),
            observed="read observed",
        ),
        ("recs_purchase_warehouse", "rank_from_purchase_warehouse"): Expected(
            "recs_purchase_warehouse",
            "rank_from_purchase_warehouse",
            "deny",
            ("connection_not_allowed", "category_not_allowed"),
            observed="connection asked for",
        ),
    }
    read, connection = observed.values()
    assert (read.state, read.label) == ("failed", "deny (category_not_allowed), read observed")
    assert (connection.state, connection.label) == (
        "failed",
        "deny (connection_not_allowed, category_not_allowed), connection asked for",
    )


def test_the_demo_writes_the_files_its_observed_readers_read(tmp_path: Path) -> None:
    outcomes.write_data(tmp_path)
    [relative] = outcomes.OBSERVED_READS.values()
    assert (tmp_path / relative).read_text().startswith("user_id,")


def test_verdicts() -> None:
    deny = Expected("d", "t", "deny", ("category_not_allowed",))
    allow = Expected("d", "t", "allow", ())
    assert verdict(TaskResult("d", "t", -1, "failed", 1), deny) == "ok"
    assert verdict(TaskResult("d", "t", -1, "failed", 2), deny).startswith("MISMATCH: retried")
    assert verdict(TaskResult("d", "t", -1, "success", 1), deny) == "MISMATCH: expected failed"
    assert verdict(TaskResult("d", "t", -1, "success", 1), allow) == "ok"
    assert verdict(TaskResult("d", "t", -1, "upstream_failed", 0), allow) == "MISMATCH: expected success"
    assert verdict(TaskResult("d", "t", -1, "success", 1), None) == ""


def test_task_summary_table() -> None:
    expected = expected_outcomes(CHECK_REPORT)
    results = [
        TaskResult("d", "ok", -1, "success", 1, body_ran=True, max_tries=2),
        TaskResult("d", "blocked", -1, "success", 1, body_ran=True),
        TaskResult("m", "mapped", 0, "success", 1),
        TaskResult("m", "unknown", -1, "success", 1, body_ran=False),
    ]
    lines, mismatches = format_task_summary(results, expected)
    assert mismatches == 1
    assert lines[0].split() == ["task", "state", "try", "body", "ran", "policy", "says", "verdict"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["d.blocked"] == [
        "success",
        "1",
        "yes",
        "deny",
        "(consent_missing,",
        "not_aggregated)",
        "MISMATCH:",
        "expected",
        "failed",
    ]
    assert rows["d.ok"] == ["success", "1/3", "yes", "allow", "ok"]
    assert rows["m.mapped[0]"] == ["success", "1", "?", "not_checked"]
    assert rows["m.unknown"] == ["success", "1", "no", "-"]
    # columns line up
    assert len({line.index("success") for line in lines[1:]}) == 1


def test_a_blocked_task_whose_body_ran_is_a_mismatch() -> None:
    deny = Expected("d", "t", "deny", ("category_not_allowed",))
    assert verdict(TaskResult("d", "t", -1, "failed", 1, body_ran=True), deny) == "MISMATCH: its body ran"
    assert verdict(TaskResult("d", "t", -1, "failed", 1, body_ran=False), deny) == "ok"


def test_parse_proc_stat_with_an_awkward_process_name() -> None:
    fields = " ".join(str(n) for n in range(4, 23))  # fields 4..22
    stat_line = f"1234 (airflow (a) b) S {fields} 99 100"
    assert parse_proc_stat(stat_line) == ("S", "22")


# -------------------------------------------------------------------------- processes


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
def test_stop_signals_exactly_the_recorded_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pids = tmp_path / "pids"
    ours, stranger = _sleeper(), _sleeper()
    try:
        identity = process_identity(ours.pid)
        assert identity is not None
        write_record(pids, ProcessRecord("scheduler", ours.pid, ours.pid, identity, ["sleep", "60"]))
        # A record whose pid now belongs to another process (pid reuse): must not be signalled.
        write_record(pids, ProcessRecord("triggerer", stranger.pid, stranger.pid, "start:1", ["x"]))
        write_record(pids, ProcessRecord("api-server", 2**22 + 7, 2**22 + 7, "start:1", ["x"]))
        assert {r.name for r in read_records(pids)} == {"scheduler", "triggerer", "api-server"}

        assert stop_records(pids, timeout=5) == 1
        assert process_identity(ours.pid) is None, "the recorded process was not stopped"
        assert stranger.poll() is None, "a process the demo did not start was signalled"
        assert read_records(pids) == []
        out = capsys.readouterr().out
        assert "now belongs to another process; not touching it" in out
        assert "api-server: not running" in out
    finally:
        for proc in (ours, stranger):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_stop_with_nothing_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--demo-dir", str(tmp_path), "stop"]) == EXIT_OK
    assert "nothing to stop" in capsys.readouterr().out


def test_unreadable_pid_files_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "partial.json").write_text(json.dumps({"name": "x"}))
    assert read_records(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_a_zombie_is_not_running() -> None:
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and process_identity(proc.pid) is not None:
        time.sleep(0.05)
    assert process_identity(proc.pid) is None  # reaped or a zombie: not running either way
    proc.wait()


# ------------------------------------------------------------------------------- port


def test_a_taken_port_is_a_clear_usage_error() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(DemoError) as exc:
            ensure_port_free("127.0.0.1", port)
    assert exc.value.exit_code == EXIT_USAGE
    message = str(exc.value)
    assert f"port {port} is already in use" in message
    assert f"--port {port + 1}" in message
    if Path("/proc/net/tcp").exists():
        assert f"pid {os.getpid()}" in message  # names the process holding it


def test_a_free_port_passes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ensure_port_free("127.0.0.1", port)


@pytest.mark.integration
def test_up_refuses_a_taken_port_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = demo.main(["--demo-dir", str(tmp_path / ".demo"), "up", "--port", str(port)])
    out = capsys.readouterr().out
    assert code == EXIT_USAGE
    assert f"make demo: error: port {port} is already in use" in out
    assert "Traceback" not in out
    assert not (tmp_path / ".demo" / "pids").exists() or not list((tmp_path / ".demo" / "pids").iterdir())


# ---------------------------------------------------------------------------- summary

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
