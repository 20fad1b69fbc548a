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
import os
import sys
from collections.abc import Sequence

from airflow_policyzones import __version__
from airflow_policyzones.cli.commands import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATIONS,
    run_audit,
    run_check,
    run_doctor,
    run_explain,
    run_simulate,
    run_status,
    run_validate,
)
from airflow_policyzones.cli.evidence import add_commands as add_evidence_commands
from airflow_policyzones.doctor import COMPONENTS as DOCTOR_COMPONENTS

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "EXIT_VIOLATIONS", "build_parser", "main"]

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
    validate.set_defaults(run=run_validate)

    status = commands.add_parser(
        "status",
        help="which policy each component has loaded, and what is wrong",
        description="Load the policy configured here ([policyzones] policy_file) and, where Airflow's "
        "metadata database is reachable, read the version the dag-processor validated each DAG against; "
        "report a policy that does not load and components that disagree. Exit 0 when everything "
        "agrees, 1 otherwise.",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=run_status)

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
        "tasks get), 'api-server' (only what concerns it: it needs the JWT secret and the database), "
        "'dag-processor' or 'triggerer' (connections and secrets backends their DAG-code children "
        "read without asking)",
    )
    doctor.set_defaults(run=run_doctor)

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
    explain.set_defaults(run=run_explain)

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
    check.set_defaults(run=run_check)

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
    audit.set_defaults(run=run_audit)

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
    simulate.set_defaults(run=run_simulate)

    add_evidence_commands(commands)  # policy-history, verify-records
    return parser
