"""``policyzones``: validate a policy, explain one decision, check a DAG folder.

Exit codes are the contract CI relies on:

* 0: the policy is valid / the decision allows the task / every task is allowed;
* 1: a decision denies a task, a DAG file fails to import, or a zone annotation is malformed;
* 2: the policy is invalid, or the command line is (a missing DAG folder, an unknown option).

``validate`` and ``explain`` never import Airflow; ``check`` parses DAG files with Airflow's own
``DagBag`` and needs neither an Airflow server nor a metadata database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from airflow_policyzones import __version__
from airflow_policyzones.policy.engine import InputRef, PolicyEngine, TaskContext
from airflow_policyzones.policy.errors import PolicyError
from airflow_policyzones.policy.loader import LoadedPolicy, load_policy

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROGRESS_MIN_FILES = 10
"""Show a progress bar (on a terminal) only when parsing takes long enough to wonder."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse reports usage errors (2) and --help (0) this way
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        code: int = args.run(args)
    except BrokenPipeError:  # `policyzones check ... | head`: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_VIOLATIONS
    except KeyboardInterrupt:
        print("policyzones: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policyzones",
        description="Purpose limitation for Apache Airflow: check tasks against a zone policy.",
        epilog="exit codes: 0 ok, 1 violations or DAG import errors, 2 invalid policy or usage",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="validate a policy file", description="Validate a policy file and summarize it."
    )
    validate.add_argument("policy", metavar="POLICY", help="the policy file (YAML)")
    validate.set_defaults(run=_run_validate)

    explain = commands.add_parser(
        "explain",
        help="explain the decision for one task",
        description="Decide whether a task in a zone may read the given inputs, and explain why.",
    )
    explain.add_argument("policy", metavar="POLICY", help="the policy file (YAML)")
    explain.add_argument("--zone", required=True, help="the zone the task runs in")
    explain.add_argument("--dag-id", required=True, help="the task's DAG id (zone membership)")
    explain.add_argument(
        "--task-id", default="task", help="the task id (exemptions may name it; default: task)"
    )
    explain.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="URI",
        help="an input Asset URI (repeatable)",
    )
    explain.add_argument(
        "--table",
        dest="tables",
        action="append",
        default=[],
        metavar="NAME",
        help="an input table name (repeatable)",
    )
    explain.add_argument(
        "--tag", dest="tags", action="append", default=[], metavar="TAG", help="a tag of the DAG (repeatable)"
    )
    explain.add_argument(
        "--owner",
        dest="owners",
        action="append",
        default=[],
        metavar="OWNER",
        help="an owner of the task (repeatable)",
    )
    explain.add_argument("--dag-file", metavar="PATH", help="the DAG file, relative to the DAG folder")
    explain.add_argument("--json", action="store_true", help="print the decision as JSON")
    explain.set_defaults(run=_run_explain)

    check = commands.add_parser(
        "check",
        help="check every task of a DAG folder",
        description="Parse every DAG file in DAG_FOLDER with Airflow (their top-level code runs, as in "
        "the dag-processor) and check each task against the policy. Needs no Airflow server and no "
        "metadata database.",
    )
    check.add_argument("policy", metavar="POLICY", help="the policy file (YAML)")
    check.add_argument("dag_folder", metavar="DAG_FOLDER", help="the folder that holds the DAG files")
    check.add_argument(
        "--format", choices=("text", "json", "sarif"), default="text", help="report format (default: text)"
    )
    check.add_argument("--output", metavar="FILE", help="write the report to FILE instead of stdout")
    check.set_defaults(run=_run_check)

    audit = commands.add_parser(
        "audit",
        help="list task-instance tries that ran without a recorded decision",
        description="Reconcile Airflow's task instances with the decisions this provider recorded: a "
        "try that started after SINCE and has no decision was not checked (enforcement was off, or "
        "DAG code got around it). Reads the metadata database configured for Airflow, so run it where "
        "the scheduler or api-server runs.",
    )
    audit.add_argument(
        "--since",
        required=True,
        metavar="WHEN",
        help="ISO date or date-time (UTC if no offset), e.g. 2026-11-01, or a duration such as 7d or 12h",
    )
    audit.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format (default: text)"
    )
    audit.set_defaults(run=_run_audit)
    return parser


# --- commands -----------------------------------------------------------------------------------


def _load(path: str, *, show_warnings: bool = True) -> LoadedPolicy | None:
    """The policy, or ``None`` after printing every issue (the caller exits 2).

    Warnings (e.g. an expired exemption) go to stderr: they may explain a surprising decision.
    """
    try:
        loaded = load_policy(path)
    except PolicyError as error:
        print(error.format(), file=sys.stderr)
        return None
    if show_warnings:
        for issue in loaded.warnings:
            print(issue.format(), file=sys.stderr)
    return loaded


def _run_validate(args: argparse.Namespace) -> int:
    from airflow_policyzones.cli.report import render_validate

    loaded = _load(args.policy, show_warnings=False)  # the summary lists them
    if loaded is None:
        return EXIT_USAGE
    PolicyEngine(loaded)  # a policy that loads must also compile; a failure here is a bug to surface
    sys.stdout.write(render_validate(loaded))
    return EXIT_OK


def _run_explain(args: argparse.Namespace) -> int:
    from airflow_policyzones.cli.report import dumps, explain_json, render_explain

    loaded = _load(args.policy)
    if loaded is None:
        return EXIT_USAGE
    engine = PolicyEngine(loaded)
    inputs = [InputRef.asset(uri) for uri in args.inputs] + [InputRef.table(name) for name in args.tables]
    task = TaskContext(
        dag_id=args.dag_id,
        task_id=args.task_id,
        dag_file=args.dag_file,
        tags=frozenset(args.tags),
        owners=frozenset(args.owners),
    )
    decision = engine.check(task=task, zone=args.zone, inputs=inputs)
    if args.json:
        sys.stdout.write(dumps(explain_json(engine=engine, task=task, decision=decision, inputs=inputs)))
    else:
        sys.stdout.write(render_explain(engine=engine, task=task, decision=decision, inputs=inputs))
    return EXIT_OK if decision.allowed else EXIT_VIOLATIONS


def _run_check(args: argparse.Namespace) -> int:
    loaded = _load(args.policy)
    if loaded is None:
        return EXIT_USAGE
    engine = PolicyEngine(loaded)
    folder = Path(args.dag_folder)
    if not folder.is_dir():
        reason = "not found" if not folder.exists() else "not a directory"
        print(f"policyzones check: error: DAG folder {args.dag_folder!r}: {reason}", file=sys.stderr)
        return EXIT_USAGE

    from airflow_policyzones.cli.check import DagFolderError, check_dag_folder
    from airflow_policyzones.cli.report import check_json, check_sarif, dumps, render_text, summary_line

    progress = _ProgressBar(sys.stderr)
    try:
        result = check_dag_folder(engine=engine, dag_folder=folder, on_file=progress)
    except DagFolderError as error:
        print(f"policyzones check: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        progress.close()

    if args.format == "json":
        report = dumps(check_json(result))
    elif args.format == "sarif":
        report = dumps(check_sarif(result))
    else:
        report = render_text(result)
    if args.output:
        try:
            Path(args.output).write_text(report, encoding="utf-8")
        except OSError as error:
            print(f"policyzones check: error: cannot write {args.output}: {error.strerror}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{summary_line(result)} (report written to {args.output})", file=sys.stderr)
    else:
        sys.stdout.write(report)
    return result.exit_code


def _run_audit(args: argparse.Namespace) -> int:
    from airflow_policyzones.audit import parse_since, unchecked_tries

    since = parse_since(args.since)
    if since is None:
        print(
            f"policyzones audit: error: --since {args.since!r} is neither an ISO date/date-time nor a "
            "duration such as 7d or 12h",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from airflow.utils.session import create_session

    with create_session() as session:
        tries = unchecked_tries(session=session, since=since)
    if args.format == "json":
        payload = {"since": since.isoformat(), "unchecked": [item.to_dict() for item in tries]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        for item in tries:
            started = item.start_date.isoformat(timespec="seconds") if item.start_date else "-"
            print(
                f"{started}  {item.dag_id}.{item.task_id}  run {item.run_id}  map {item.map_index}  "
                f"try {item.try_number}  {item.state}  ({item.operator})"
            )
        print(
            f"{len(tries)} task-instance tr{'y' if len(tries) == 1 else 'ies'} since "
            f"{since.isoformat(timespec='seconds')} ran without a recorded decision"
        )
    return EXIT_VIOLATIONS if tries else EXIT_OK


class _ProgressBar:
    """A transient progress bar on stderr, shown only on a terminal and for folders with many files."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int, file: str) -> None:
        if self._progress is None:
            if done != 0 or total < PROGRESS_MIN_FILES or not self._stream.isatty():
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("parsing DAG files"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(file=self._stream),
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=done, description=file)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
