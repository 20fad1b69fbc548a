"""``policyzones``: validate (and diff) a policy, explain one decision, check a DAG folder, simulate
a policy, report which policy each component has loaded.

Exit codes are the contract CI relies on:

* 0: the policy is valid / the decision allows the task / every task is allowed;
* 1: a decision denies a task, a DAG file fails to import, a zone annotation is malformed, or
  ``audit`` found a try that ran unchecked (or, with ``--fail-on-blind``, a task that ran blind);
* 2: the policy is invalid, or the command line is (a missing DAG folder, an unknown option).

``validate`` (without ``--against``) and ``explain`` import Airflow only to put catalog uri
patterns through Airflow's asset URI rules, where it is installed; ``check`` parses DAG
files with Airflow's own ``DagBag`` and needs neither an Airflow server nor a metadata database.
``audit``, ``simulate``, ``status``, ``validate --against``, ``policy-history`` and
``verify-records`` read (never write) the metadata database Airflow is configured with
(``verify-records`` exits 1 when a record was altered, inserted or deleted).
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
from airflow_policyzones.cli.evidence import add_commands as add_evidence_commands
from airflow_policyzones.doctor import COMPONENTS as DOCTOR_COMPONENTS
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

VALIDATE_DESCRIPTION = """\
Validate a policy file and summarize it. With --against OLD, also print what changed from OLD,
semantically (zones, categories, catalog entries, flows, reclassifiers, exemptions and settings
added, removed or changed; key order, comments and the order of names do not count), and, when
Airflow's metadata database is reachable from here, replay the recorded decisions under POLICY
(`policyzones simulate`): what it would newly block and newly allow. Exit 0 when POLICY is valid,
2 when POLICY or OLD is invalid."""

AUDIT_DESCRIPTION = """\
Reconcile Airflow's task instances with the decisions this provider recorded, since WHEN:

* unchecked tries: a try that started and has no decision was not checked (enforcement was off,
  or DAG code got around it);
* blind tasks: tasks whose tries finished successfully with a decision that knew no read at all
  (no declared inlet, no table or file in SQL the provider analyzes, nothing a hook or object
  storage reported while the body ran): the check had nothing to decide on. Listed per task, with
  the last blind try and, for contrast, how many successful tries of the task did have reads.

Exit 1 when a try ran unchecked; blind tasks are a warning (exit 0) unless --fail-on-blind is
given. Exit 2 for bad arguments. Reads the metadata database configured for Airflow, so run it
where the scheduler or api-server runs."""

SIMULATE_DESCRIPTION = """\
Replay the decisions recorded in Airflow's metadata database since WHEN under NEW_POLICY, and
report what it would newly block (recorded allow, dry_run or exempted; now deny) and newly allow
(recorded deny; now allow, dry_run or exempted), per zone and per DAG, with examples.

Replay means: each recorded decision (one per task-instance try) is made again by the new
policy's engine from what was recorded: its inputs (names only; their labels come from the new
policy's catalog, joined with the current propagated labels of policyzones_asset_labels when that
table exists), the inlets that named no data and the tables its SQL read that nothing labeled
(as far as the recorded decision reported them), and the recorded zone (a zone that came from the
old policy's default_zone follows the new policy's).
Zone membership is judged on the DAG's tags, owners and file in the dag table now; exemptions at
the time of the recorded decision. Labels are not re-propagated under the new policy.

Nothing is written. Run it where the scheduler or api-server runs (it reads the metadata
database Airflow is configured with). Exit 0 when the replay ran, whatever it found; 2 for an
invalid policy or bad arguments."""


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
        "validate",
        help="validate a policy file (and diff it against the one it replaces)",
        description=VALIDATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("policy", metavar="POLICY", help="the policy file (YAML)")
    validate.add_argument(
        "--against",
        metavar="OLD",
        help="the policy POLICY replaces: print the semantic diff, then simulate it if a metadata database "
        "is reachable",
    )
    validate.add_argument(
        "--since",
        default="30d",
        metavar="WHEN",
        help="with --against: replay decisions recorded since WHEN (default: 30d)",
    )
    validate.add_argument(
        "--no-simulate", action="store_true", help="with --against: print the diff only, do not simulate"
    )
    validate.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format of the diff (default: text)"
    )
    validate.set_defaults(run=_run_validate)

    status = commands.add_parser(
        "status",
        help="which policy each component has loaded, and what is wrong",
        description="Load the policy configured here ([policyzones] policy_file) and, where Airflow's "
        "metadata database is reachable, read the version the dag-processor validated each DAG against; "
        "report a policy that does not load and components that disagree. Exit 0 when everything "
        "agrees, 1 otherwise.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=_run_status)

    doctor = commands.add_parser(
        "doctor",
        help="what weakens enforcement in this deployment, each with its fix",
        description="Read this host's Airflow configuration and environment (run it where tasks run "
        "and on the api-server) and report what lets a task obtain credentials without the zone check: "
        "AIRFLOW_CONN_* variables, secrets backends on workers, the JWT secret or metadata database "
        "visible to tasks, enforcement disabled, a policy that does not load. Changes nothing. "
        "Exit 0 when nothing is found, 1 otherwise.",
    )
    doctor.add_argument(
        "--component",
        choices=DOCTOR_COMPONENTS,
        default="worker",
        help="what runs on this host: 'worker' (default: every check, run it with the environment "
        "tasks get) or 'api-server' (only what concerns it: it needs the JWT secret and the database)",
    )
    doctor.set_defaults(run=_run_doctor)

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
    credential = explain.add_mutually_exclusive_group()
    credential.add_argument(
        "--connection",
        metavar="CONN_ID",
        help="instead of inputs: whether the task may obtain this Airflow connection (the api-server's "
        "check when a task asks for it)",
    )
    credential.add_argument(
        "--variable",
        metavar="KEY",
        help="instead of inputs: whether the task may obtain this Airflow variable",
    )
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
        help="list task-instance tries that ran without a recorded decision, and blind tasks",
        description=AUDIT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    audit.add_argument(
        "--fail-on-blind",
        action="store_true",
        help="exit 1 when a task ran blind, too (by default blind tasks are a warning)",
    )
    audit.set_defaults(run=_run_audit)

    simulate = commands.add_parser(
        "simulate",
        help="what a new policy would newly block and allow, replayed over recorded decisions",
        description=SIMULATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument("policy", metavar="NEW_POLICY", help="the new policy file (YAML)")
    simulate.add_argument(
        "--since",
        default="30d",
        metavar="WHEN",
        help="replay decisions recorded since WHEN: a duration such as 30d or 12h, or an ISO date or "
        "date-time (UTC if no offset); default: 30d",
    )
    simulate.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format (default: text)"
    )
    simulate.add_argument(
        "--examples",
        type=int,
        default=3,
        metavar="N",
        help="examples listed per zone and DAG in the text report (default: 3; JSON lists all)",
    )
    simulate.set_defaults(run=_run_simulate)

    add_evidence_commands(commands)  # policy-history, verify-records
    return parser


# --- commands -----------------------------------------------------------------------------------


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


def _run_validate(args: argparse.Namespace) -> int:
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


def _run_doctor(args: argparse.Namespace) -> int:
    from airflow_policyzones.doctor import diagnose

    found = diagnose(component=args.component)
    for weakness in found:
        print(weakness.format())
    print(f"{len(found)} weakness{'es' if len(found) != 1 else ''} found" if found else "no weakness found")
    return 1 if found else 0


def _run_status(args: argparse.Namespace) -> int:
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


def _run_explain(args: argparse.Namespace) -> int:
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


def _run_audit(args: argparse.Namespace) -> int:
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


def _run_simulate(args: argparse.Namespace) -> int:
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
