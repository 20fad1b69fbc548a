"""The demo's processes and port (scripts/localdemo/processes.py): ``stop`` signals exactly the
processes it recorded; a taken port is a clear usage error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from scripts import demo
from scripts.localdemo.common import EXIT_OK, EXIT_USAGE, DemoError
from scripts.localdemo.processes import (
    ProcessRecord,
    ensure_port_free,
    parse_proc_stat,
    process_identity,
    read_records,
    stop_records,
    write_record,
)


def test_parse_proc_stat_with_an_awkward_process_name() -> None:
    fields = " ".join(str(n) for n in range(4, 23))  # fields 4..22
    stat_line = f"1234 (airflow (a) b) S {fields} 99 100"
    assert parse_proc_stat(stat_line) == ("S", "22")


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
