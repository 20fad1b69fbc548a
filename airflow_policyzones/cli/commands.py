"""The command runners of ``policyzones``: one function per subcommand, given the parsed arguments
and returning the exit code (:mod:`airflow_policyzones.cli.main` builds the parser and dispatches).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from airflow_policyzones.policy.engine import InputRef, PolicyEngine, TaskContext
from airflow_policyzones.policy.errors import PolicyError
from airflow_policyzones.policy.loader import LoadedPolicy, gc_paused, load_policy

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from airflow_policyzones.policy.models import CredentialKind

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROGRESS_MIN_FILES = 10
"""Show a progress bar (on a terminal) only when parsing takes long enough to wonder."""
PROGRESS_MIN_DECISIONS = 5_000
"""The same for ``simulate``: replaying fewer decisions takes about a second."""


def _load(path: str, *, show_warnings: bool = True) -> LoadedPolicy | None:
    """The policy, or ``None`` after printing every issue (the caller exits 2).

    Warnings (e.g. an expired exemption) go to stderr: they may explain a surprising decision.
    """
    from airflow_policyzones.asset_uris import airflow_uri_normalizer

    normalize_uri = airflow_uri_normalizer()  # the rules asset URIs are stored by, as on the servers
    try:
        loaded = load_policy(path, normalize_uri=normalize_uri)
    except PolicyError as error:
        print(error.format(), file=sys.stderr)
        return None
    if normalize_uri is None and any(entry.uri is not None for entry in loaded.policy.catalog):
        print(
            f"{path}: note: Airflow is not installed here, so catalog uri patterns are matched as written, "
            "not in the form Airflow stores asset URIs (e.g. postgres://db/a/b/c as postgres://db:5432/a/b/c)",
            file=sys.stderr,
        )
    if show_warnings:
        for issue in loaded.warnings:
            print(issue.format(), file=sys.stderr)
    return loaded


def run_validate(args: argparse.Namespace) -> int:
    from airflow_policyzones.cli.report import render_validate

    loaded = _load(args.policy, show_warnings=False)  # the summary lists them
    if loaded is None:
        return EXIT_USAGE
    engine = PolicyEngine(loaded)  # a policy that loads must also compile; a failure here is a bug
    if args.against is None:
        sys.stdout.write(render_validate(loaded))
        return EXIT_OK
    from airflow_policyzones.policy.diff import diff_policies

    old = _load(args.against, show_warnings=False)
    if old is None:
        print(
            f"policyzones validate: error: OLD policy {args.against} does not load (see above)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    diff = diff_policies(old=old.policy, new=loaded.policy)
    if args.format == "json":
        payload = {"old": old.version, "new": loaded.version, **diff.to_dict()}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(render_validate(loaded))
        print(
            f"\nChanges from {args.against} ({old.short_version}) to {args.policy} ({loaded.short_version}):"
        )
        sys.stdout.write(diff.render())
    if args.no_simulate or not diff:
        return EXIT_OK
    return _simulate_if_reachable(engine, since=args.since, quiet_json=args.format == "json")


def _simulate_if_reachable(engine: PolicyEngine, *, since: str, quiet_json: bool) -> int:
    """Run ``simulate`` when this host reaches a metadata database that records decisions."""
    from airflow_policyzones.db.audit import moment_option

    try:
        moment = moment_option("--since", since)
    except ValueError as error:
        print(f"policyzones validate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        import sqlalchemy as sa
        from airflow.utils.session import create_session

        with create_session() as session:
            reachable = sa.inspect(session.get_bind()).has_table("policyzones_decision")
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"simulation skipped: no metadata database reachable from here ({reason})", file=sys.stderr)
        return EXIT_OK
    if not reachable:
        print(
            "simulation skipped: the metadata database configured here records no decisions (run it where "
            "the scheduler or api-server runs, after `airflow db migrate`)",
            file=sys.stderr,
        )
        return EXIT_OK
    from airflow_policyzones.cli.simulate import render_text, simulate

    with create_session() as session:
        try:
            result = simulate(session=session, engine=engine, since=moment)
        finally:
            session.rollback()
    if not quiet_json:
        print("\nSimulation over the recorded decisions:")
        sys.stdout.write(render_text(result))
    return EXIT_OK


def run_doctor(args: argparse.Namespace) -> int:
    from airflow_policyzones.doctor import diagnose

    found = diagnose(component=args.component)
    for weakness in found:
        print(weakness.format())
    print(f"{len(found)} weakness{'es' if len(found) != 1 else ''} found" if found else "no weakness found")
    return 1 if found else 0


def run_status(args: argparse.Namespace) -> int:
    from airflow_policyzones.db.policy_status import PolicyStatus, policy_status, short

    status: PolicyStatus
    try:
        from airflow.utils.session import create_session

        with create_session() as session:
            status = policy_status(session=session)
    except Exception as error:  # no database here: this host's policy alone
        status = policy_status(session=None)
        status = PolicyStatus(
            policy_file=status.policy_file,
            api_server=status.api_server,
            dag_processor_error=str(error).splitlines()[0] if str(error) else type(error).__name__,
        )
    if args.json:
        sys.stdout.write(json.dumps(status.to_dict(), indent=2) + "\n")
    else:
        here = status.api_server
        print(f"policy file: {status.policy_file or '(none configured)'}")
        print(f"this host:   {short(here.version) if here.loaded else 'does not load'}")
        if status.dag_processor_error:
            print(f"dag-processor: unknown ({status.dag_processor_error})")
        for group in status.dag_processor:
            state = group.state
            seen = "no record" if state is None else short(state.version) if state.loaded else "does not load"
            print(f"dag-processor: {seen} ({group.dag_count} DAGs, e.g. {', '.join(group.example_dag_ids)})")
        for problem in status.problems:
            print(f"error: {problem}")
        for warning in status.warnings:
            print(f"warning: {warning}")
    return EXIT_VIOLATIONS if status.problems or status.warnings else EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    from airflow_policyzones.cli.report import dumps, explain_json, render_explain

    loaded = _load(args.policy)
    if loaded is None:
        return EXIT_USAGE
    engine = PolicyEngine(loaded)
    from airflow_policyzones.asset_uris import stored_form

    # The form a task's Asset(uri) has when the worker asks: what the catalog patterns match.
    inputs = [InputRef.asset(stored_form(uri, normalize_uri=loaded.normalize_uri)) for uri in args.inputs]
    inputs += [InputRef.table(name) for name in args.tables]
    task = TaskContext(
        dag_id=args.dag_id,
        task_id=args.task_id,
        dag_file=args.dag_file,
        tags=frozenset(args.tags),
        owners=frozenset(args.owners),
    )
    if (args.connection or args.variable) and inputs:
        print(
            "policyzones explain: error: give inputs, or one --connection/--variable, not both",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.connection or args.variable:
        kind: CredentialKind = "connection" if args.connection else "variable"
        name = args.connection or args.variable
        decision = engine.decide_credential(kind=kind, name=name, task=task, zone=args.zone)
    else:
        decision = engine.check(task=task, zone=args.zone, inputs=inputs)
    if args.json:
        sys.stdout.write(dumps(explain_json(engine=engine, task=task, decision=decision, inputs=inputs)))
    else:
        sys.stdout.write(render_explain(engine=engine, task=task, decision=decision, inputs=inputs))
    return EXIT_OK if decision.allowed else EXIT_VIOLATIONS


def run_check(args: argparse.Namespace) -> int:
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
    from airflow_policyzones.cli.report import check_json, dumps, render_text, summary_line
    from airflow_policyzones.cli.sarif import check_sarif

    progress = _ProgressBar(sys.stderr)
    try:
        result = check_dag_folder(engine=engine, dag_folder=folder, on_file=progress)
    except DagFolderError as error:
        print(f"policyzones check: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        progress.close()

    with gc_paused():  # paths are built while rendering: many small objects, none of them garbage
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


def run_audit(args: argparse.Namespace) -> int:
    from airflow_policyzones.db.audit import BLIND_EXPLANATION, blind_tasks, moment_option, unchecked_tries

    try:
        since = moment_option("--since", args.since)
    except ValueError as error:
        print(f"policyzones audit: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    from airflow.utils.session import create_session

    with create_session() as session:
        tries = unchecked_tries(session=session, since=since)
        blind = blind_tasks(session=session, since=since)
    if args.format == "json":
        payload = {
            "since": since.isoformat(),
            "unchecked": [item.to_dict() for item in tries],
            "blind": [item.to_dict() for item in blind],
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        when = since.isoformat(timespec="seconds")
        print(f"Unchecked tries (started without a recorded decision) since {when}:")
        for item in tries:
            started = item.start_date.isoformat(timespec="seconds") if item.start_date else "-"
            print(
                f"  {started}  {item.dag_id}.{item.task_id}  run {item.run_id}  map {item.map_index}  "
                f"try {item.try_number}  {item.state}  ({item.operator})"
            )
        print(
            f"{len(tries)} task-instance tr{'y' if len(tries) == 1 else 'ies'} since {when} ran without a "
            "recorded decision"
        )
        print(f"\nBlind tasks (successful tries without a known read) since {when}: {BLIND_EXPLANATION}")
        for task in blind:
            print(
                f"  {task.dag_id}.{task.task_id}  zone {task.zone or '-'}  {task.blind_tries} blind, "
                f"{task.tries_with_reads} with reads  last: run {task.run_id}  map {task.map_index}  "
                f"try {task.try_number}  {task.decided_at.isoformat(timespec='seconds')}"
            )
        severity = "error" if args.fail_on_blind else "warning"
        print(
            f"{len(blind)} task{'' if len(blind) == 1 else 's'} ran blind since {when}"
            + (f" ({severity})" if blind else "")
        )
    if tries or (blind and args.fail_on_blind):
        return EXIT_VIOLATIONS
    return EXIT_OK


def run_simulate(args: argparse.Namespace) -> int:
    from airflow_policyzones.db.audit import moment_option

    loaded = _load(args.policy)
    if loaded is None:
        return EXIT_USAGE
    engine = PolicyEngine(loaded)
    try:
        since = moment_option("--since", args.since)
    except ValueError as error:
        print(f"policyzones simulate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.examples < 0:
        print("policyzones simulate: error: --examples must be 0 or more", file=sys.stderr)
        return EXIT_USAGE

    from airflow.utils.session import create_session
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_policyzones.cli.simulate import dumps, render_text, simulate, to_json

    progress = _ProgressBar(sys.stderr, label="replaying decisions", minimum=PROGRESS_MIN_DECISIONS)
    try:
        with create_session() as session:
            try:
                result = simulate(session=session, engine=engine, since=since, on_progress=progress)
            finally:
                session.rollback()  # read-only: nothing to keep, whatever happened
    except SQLAlchemyError as error:
        reason = str(error).splitlines()[0]
        print(
            "policyzones simulate: error: cannot read the recorded decisions from Airflow's metadata "
            f"database ({reason}); run it where the scheduler or api-server runs, after `airflow db migrate`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    finally:
        progress.close()
    if args.format == "json":
        sys.stdout.write(dumps(to_json(result)))
    else:
        sys.stdout.write(render_text(result, examples=args.examples))
    return EXIT_OK


class _ProgressBar:
    """A transient progress bar on stderr, shown only on a terminal and for long runs."""

    def __init__(
        self, stream: IO[str], *, label: str = "parsing DAG files", minimum: int = PROGRESS_MIN_FILES
    ) -> None:
        self._stream = stream
        self._label = label
        self._minimum = minimum
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int, file: str) -> None:
        if self._progress is None:
            if done != 0 or total < self._minimum or not self._stream.isatty():
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn(self._label),
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
