#!/usr/bin/env python3
"""``make demo`` / ``make demo-stop``: the example DAGs on a real, local Airflow 3 deployment.

``up`` starts the machine's PostgreSQL and Redis when they are not running
(``scripts/services.sh``), creates the demo's database (``policyzones_demo``), initialises an
isolated Airflow home under ``.demo/`` (CeleryExecutor, SimpleAuthManager), runs
``airflow db migrate``, starts the same components as ``docker-compose.yml`` (api-server,
scheduler, dag-processor, triggerer, celery worker) in the background, waits until they are
healthy, unpauses and triggers every example DAG through the REST API, waits for the runs, and
prints what happened: each task's final state next to what the policy predicts
(``policyzones check``), then the decisions and violations recorded in the metadata database
(``scripts/demo_summary.py``), then ``policyzones doctor`` in the celery worker's environment
(which holds neither the JWT secret nor the database URL) and the api-server's. The UI stays up at
http://localhost:8080.

``stop`` stops exactly the processes ``up`` started: their process groups, recorded in
``.demo/pids/`` with each process's start time, so a recycled pid is never signalled. PostgreSQL
and Redis are the machine's and keep running.

The parts live in ``scripts/localdemo/`` (settings and environment, processes, expected outcomes,
the ``up`` orchestration); ``up`` drives Airflow through the deployment driver the end-to-end tests
share (``scripts/deploy/``). Standard library only at import time (``up`` imports the driver
when it runs), so ``stop`` and ``status`` run with any Python 3.10+.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

if __package__ in (None, ""):  # run as a script: sys.path[0] is scripts/, the parts are `scripts.*`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.localdemo.common import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEMO_DIR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    DemoError,
    rel,
    say,
)
from scripts.localdemo.processes import process_identity, read_records, stop_records
from scripts.localdemo.settings import DemoPaths

# ----------------------------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    from scripts.localdemo.up import run_demo  # the driver needs httpx: only `up` imports it

    return run_demo(args)


def cmd_stop(args: argparse.Namespace) -> int:
    paths = DemoPaths(Path(args.demo_dir).resolve())
    say(f"== Stopping the demo services recorded in {rel(paths.pids)}")
    if not read_records(paths.pids):
        say("  nothing to stop")
        return EXIT_OK
    stop_records(paths.pids)
    say("  stopped")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    paths = DemoPaths(Path(args.demo_dir).resolve())
    records = read_records(paths.pids)
    if not records:
        say("demo: not running")
        return EXIT_FAILED
    alive = 0
    for record in records:
        running = process_identity(record.pid) == record.identity
        alive += running
        say(f"  {record.name:<14} pid {record.pid:<8} {'running' if running else 'NOT RUNNING'}")
    return EXIT_OK if alive == len(records) else EXIT_FAILED


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.py",
        description="Run the example DAGs on a local Airflow 3 (make demo / make demo-stop).",
    )
    parser.add_argument(
        "--demo-dir", default=str(DEMO_DIR), help="where the demo keeps its state (default: .demo/)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,stop,status}")
    up = sub.add_parser("up", help="start Airflow, run every example DAG, print the summary")
    up.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="api-server / UI port (8080)")
    up.add_argument(
        "--host", default=DEFAULT_HOST, help="address the api-server binds (127.0.0.1; 0.0.0.0 for all)"
    )
    up.add_argument(
        "--startup-timeout", type=positive_float, default=240.0, help="seconds to wait for start-up (240)"
    )
    up.add_argument(
        "--run-timeout", type=positive_float, default=300.0, help="seconds to wait for runs (300)"
    )
    up.add_argument("--reset", action="store_true", help="start from an empty Airflow home")
    up.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a task does not end as the policy says, or the doctor finds a weakness",
    )
    up.set_defaults(handler=cmd_up)
    stop = sub.add_parser("stop", help="stop the services `up` started (and nothing else)")
    stop.set_defaults(handler=cmd_stop)
    status = sub.add_parser("status", help="are the demo's services running?")
    status.set_defaults(handler=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except DemoError as error:
        say()
        say(f"make demo: error: {error}")
        return error.exit_code
    except KeyboardInterrupt:
        say()
        say("make demo: interrupted. `make demo-stop` stops whatever the demo left running.")
        return EXIT_INTERRUPTED


def _entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
