"""The demo's processes: started services recorded in ``.demo/pids/``, stopped exactly; the port.

Standard library only, so ``make demo-stop`` runs with any Python 3.10+.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scripts.localdemo.common import EXIT_USAGE, DemoError, rel, say

# --------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessRecord:
    """A started service: enough to find it again, and to be sure it is still the same process."""

    name: str
    pid: int
    pgid: int
    identity: str
    argv: list[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            identity=str(data["identity"]),
            argv=[str(a) for a in data.get("argv", [])],
        )


def parse_proc_stat(stat: str) -> tuple[str, str]:
    """State (field 3) and start time in clock ticks (field 22) from ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
    """
    after_name = stat.rsplit(")", 1)[1].split()
    return after_name[0], after_name[19]


def process_identity(pid: int) -> str | None:
    """Something that changes when ``pid`` is reused (its start time); ``None``: not running.

    An exited process that was not reaped yet (a zombie) counts as not running.
    """
    _reap(pid)
    try:
        state, start = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    else:
        return None if state in {"Z", "X"} else f"start:{start}"
    try:  # no /proc (macOS): ps reports the start time
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return None
    return f"lstart:{out}" if out else None


def write_record(pids_dir: Path, record: ProcessRecord) -> None:
    pids_dir.mkdir(parents=True, exist_ok=True)
    (pids_dir / f"{record.name}.json").write_text(json.dumps(asdict(record), indent=2) + "\n")


def read_records(pids_dir: Path) -> list[ProcessRecord]:
    records = []
    for path in sorted(pids_dir.glob("*.json")) if pids_dir.is_dir() else []:
        try:
            records.append(ProcessRecord.from_json(json.loads(path.read_text())))
        except (ValueError, KeyError, TypeError):
            say(f"  ignoring unreadable pid file {rel(path)}")
            path.unlink(missing_ok=True)
    return records


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child (when ``up`` stops what it started)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_alive(pgid: int) -> bool:
    """Does any process of the group still exist? (Zombies of orphans are reaped by init.)"""
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _all_exited(records: Sequence[ProcessRecord]) -> bool:
    return all(process_identity(r.pid) is None for r in records)


def _group_gone(pgid: int) -> bool:
    return not group_alive(pgid)


def _signal_leader(record: ProcessRecord, signum: int) -> None:
    if process_identity(record.pid) == record.identity:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signum)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_records(pids_dir: Path, *, timeout: float = 20.0) -> int:
    """Stop the recorded services; returns how many were running.

    Each service first gets SIGTERM on its main process only, so it shuts down its own children
    gracefully (signalling a scheduler's executor workers directly makes it wait for them), and a
    second SIGTERM after half of ``timeout`` (the scheduler's "signal again if you don't want to
    wait"); the api-server goes last, because the others talk to it while they stop. Whatever is
    left of a service's process group then gets SIGTERM, and SIGKILL 5 s later. A record whose
    process is gone, or whose pid now belongs to another process, is only removed: nothing else is
    signalled.
    """
    records = read_records(pids_dir)
    live: list[ProcessRecord] = []
    for record in records:
        identity = process_identity(record.pid)
        if identity is None:
            say(f"  {record.name}: not running (pid {record.pid})")
        elif identity != record.identity:
            say(f"  {record.name}: pid {record.pid} now belongs to another process; not touching it")
        else:
            live.append(record)
    waves = [[r for r in live if r.name != "api-server"], [r for r in live if r.name == "api-server"]]
    for wave in waves:
        for record in wave:
            say(f"  {record.name}: stopping (pid {record.pid})")
            _signal_leader(record, signal.SIGTERM)
        if not _wait(functools.partial(_all_exited, wave), timeout / 2):
            # Airflow's scheduler waits for its executor's workers: "Signal again if you don't want to wait."
            for record in wave:
                if process_identity(record.pid) is not None:
                    say(f"  {record.name}: still stopping after {timeout / 2:.0f} s, signalling again")
                    _signal_leader(record, signal.SIGTERM)
            _wait(functools.partial(_all_exited, wave), timeout / 2)
        for record in wave:
            if group_alive(record.pgid):
                if process_identity(record.pid) is not None:
                    say(f"  {record.name}: still running, terminating its process group")
                _signal_group(record.pgid, signal.SIGTERM)
                if not _wait(functools.partial(_group_gone, record.pgid), 5.0):
                    say(f"  {record.name}: killing what is left of its process group")
                    _signal_group(record.pgid, signal.SIGKILL)
                    _wait(functools.partial(_group_gone, record.pgid), 5.0)
    for record in records:
        (pids_dir / f"{record.name}.json").unlink(missing_ok=True)
    return len(live)


def running_components(pids_dir: Path) -> list[ProcessRecord]:
    return [r for r in read_records(pids_dir) if process_identity(r.pid) == r.identity]


# -------------------------------------------------------------------------------------- port


def port_owner(port: int) -> str | None:
    """Best effort (Linux ``/proc``): which process listens on ``port``, e.g. ``pid 12 (nginx)``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                        return f"pid {proc.name} ({cmd.strip()[:120]})"
    return "a process this user cannot inspect"


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``port`` (or binding it on ``host`` fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ensure_port_free(host: str, port: int) -> None:
    if not port_in_use(host, port):
        return
    owner = port_owner(port)
    raise DemoError(
        f"port {port} is already in use{f' by {owner}' if owner else ''}.\n"
        f"The demo's api-server (the Airflow UI) needs it. Stop that process, or run the demo on "
        f"another port: make demo DEMO_ARGS='--port {port + 1}'",
        EXIT_USAGE,
    )
