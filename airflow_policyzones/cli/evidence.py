"""``policyzones policy-history`` and ``policyzones verify-records``: the policy versions that decided
something (their text, and what changed between two), and whether the decision records are as the
application wrote them.

Both read the metadata database Airflow is configured with (never write it): run them where the
scheduler or api-server runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
_CHAIN_START = "chain start"

HISTORY_DESCRIPTION = """\
List every policy version that decided something, with its first and last use (from the recorded
decisions) and the file it was loaded from. --show VERSION prints a version's full text, as the
deciding process loaded it (its bytes hash to VERSION); --diff OLD NEW prints what changed from OLD
to NEW: zones, categories, catalog entries, flows, reclassifiers, exemptions and settings added,
removed or changed (key order, comments and the order of names do not count). A VERSION is its
hash or at least 6 of its hex digits. Exit 0; 2 for an unknown version or bad arguments."""

VERIFY_DESCRIPTION = """\
Recompute the digest of every decision and violation row (since/until WHEN) and report, by id, rows whose
content no longer matches their digest (altered), rows the application did not write (inserted)
and rows that are gone (deleted). Rows recorded before the chain started (before the provider's
migration f2a9c4e7b130) have no digest: they are counted, not verified.

Prints the chain head: a digest over every verified decision row, and (in --format json) one per
DAG with the last decision id it covers. Keep the JSON outside the database; a later run with
--against FILE recomputes each DAG's head over the same decisions and reports the DAGs whose
records changed, even if whoever changed them recomputed the digests. Heads of tries still running
change as they record observed reads: keep heads of finished work.

Exit 0 when everything verifies, 1 when a row was altered, inserted or deleted or a kept head
changed, 2 for bad arguments. See docs/evidence.md for what this does and does not protect
against."""


def add_commands(commands: Any) -> None:
    """Add both commands to the ``policyzones`` sub-command parser."""
    history = commands.add_parser(
        "policy-history",
        help="policy versions that decided something: first/last use, text, diff between two",
        description=HISTORY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = history.add_mutually_exclusive_group()
    action.add_argument("--show", metavar="VERSION", help="print the full text of VERSION")
    action.add_argument(
        "--diff", nargs=2, metavar=("OLD", "NEW"), help="print what changed from version OLD to NEW"
    )
    history.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    history.set_defaults(run=_run_history)

    verify = commands.add_parser(
        "verify-records",
        help="check that decision and violation records are unaltered, print the chain head",
        description=VERIFY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "--since",
        metavar="WHEN",
        help="verify decisions recorded since WHEN: an ISO date or date-time (UTC if no offset), or a "
        "duration such as 30d or 12h; default: all",
    )
    verify.add_argument(
        "--until",
        metavar="WHEN",
        help="and before WHEN (same forms as --since); default: now",
    )
    verify.add_argument(
        "--against",
        metavar="FILE",
        help="the JSON an earlier `verify-records --format json` printed: report DAGs whose head changed",
    )
    verify.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format (default: text)"
    )
    verify.set_defaults(run=_run_verify)

    from airflow_policyzones.cli.data_use import add_command as add_data_use_command

    add_data_use_command(commands)


def _error(command: str, message: str) -> int:
    print(f"policyzones {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _run_history(args: argparse.Namespace) -> int:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.policy_history import (
        UnknownVersion,
        diff_versions,
        policy_text,
        policy_versions,
        resolve,
    )

    as_json = args.format == "json"
    with create_session() as session:
        versions = policy_versions(session=session)
        try:
            if args.show is not None:
                use = resolve(versions=versions, given=args.show)
                text = policy_text(session=session, version=use.version)
                if text is None:
                    return _error(
                        "policy-history",
                        f"the text of {use.short} is not stored: it decided before the policy history "
                        "was kept (migration f2a9c4e7b130)",
                    )
                if as_json:
                    _print_json({**use.to_dict(), "text": text})
                else:
                    sys.stdout.write(text if text.endswith("\n") else text + "\n")
                return EXIT_OK
            if args.diff is not None:
                old, new = (resolve(versions=versions, given=given) for given in args.diff)
                diff = diff_versions(session=session, old=old, new=new)
                if as_json:
                    _print_json({"old": old.to_dict(), "new": new.to_dict(), **diff.to_dict()})
                else:
                    print(f"From {old.version} (first used {_when(old.first_used_at)})")
                    print(f"  to {new.version} (first used {_when(new.first_used_at)}):")
                    sys.stdout.write(diff.render())
                return EXIT_OK
        except UnknownVersion as error:
            return _error("policy-history", str(error))
    if as_json:
        _print_json({"versions": [use.to_dict() for use in versions]})
        return EXIT_OK
    print("Policy versions that decided something (first use first):")
    for use in versions:
        text = f"from {use.source}" if use.source else ""
        if not use.stored:
            text = "text not stored (decided before the policy history was kept)"
        print(
            f"  {use.short}  first {_when(use.first_used_at)}  last {_when(use.last_used_at)}  "
            f"{use.decisions:,} decision{'' if use.decisions == 1 else 's'}  {text}".rstrip()
        )
    print(
        f"{len(versions)} version{'' if len(versions) == 1 else 's'}; "
        "--show VERSION prints one, --diff OLD NEW compares two"
    )
    return EXIT_OK


def _run_verify(args: argparse.Namespace) -> int:
    from airflow_policyzones.db.audit import moment_options
    from airflow_policyzones.db.chain_verify import Head, heads_from, verify_records

    try:
        bounds = moment_options(since=args.since, until=args.until)
    except ValueError as error:
        return _error("verify-records", str(error))
    since, until = bounds.get("since"), bounds.get("until")
    against: dict[str, Head] | None = None
    kept_start: int | None = None
    if args.against is not None:
        try:
            kept = json.loads(Path(args.against).read_text())
            against = heads_from(kept)
            kept_start = (kept.get("unchained") or {}).get("first_chained_id")
        except OSError as error:
            return _error("verify-records", f"--against {args.against!r}: {error.strerror}; check the path")
        except (ValueError, UnicodeDecodeError) as error:
            reason = str(error) if not isinstance(error, json.JSONDecodeError) else f"not JSON ({error.msg})"
            return _error("verify-records", f"--against {args.against!r}: {reason}")
    from airflow.utils.session import create_session

    with create_session() as session:
        report = verify_records(session=session, since=since, until=until, against=against)
    if isinstance(kept_start, int) and (report.first_chained_id or 0) != kept_start:
        # Clearing the digests of the first chained rows would make them look older than the chain.
        report.changed_heads[_CHAIN_START] = (
            f"the chain started with decision {kept_start} when the heads were kept, and now "
            + (f"with decision {report.first_chained_id}" if report.first_chained_id else "not at all")
        )
    if args.format == "json":
        _print_json(report.to_dict())
        return EXIT_OK if report.ok else EXIT_PROBLEMS
    scope = (f" recorded since {_when(since)}" if since else "") + (
        f" before {_when(until)}" if until else ""
    )
    chained_d = report.decisions - report.unchained_decisions
    chained_v = report.violations - report.unchained_violations
    print(f"Verified {chained_d:,} decision rows and {chained_v:,} violation rows{scope}.")
    if report.unchained_decisions or report.unchained_violations:
        started = (
            f"the chain started with decision {report.first_chained_id} ({_when(report.chain_started_at)})"
            if report.first_chained_id is not None
            else "no decision has been recorded since the chain started"
        )
        print(
            f"Not verifiable: {report.unchained_decisions:,} decision rows and "
            f"{report.unchained_violations:,} violation rows were recorded before the chain started "
            f"(no digests; {started})."
        )
    if report.problems:
        print(f"Problems ({len(report.problems)}):")
        for problem in report.problems:
            print(f"  {problem.describe()}")
    for dag_id, change in sorted(report.changed_heads.items()):
        print(f"  changed: {'DAG ' + dag_id if dag_id != _CHAIN_START else dag_id}: {change}")
    if against is not None:
        changed = len(set(report.changed_heads) - {_CHAIN_START})
        print(f"Kept heads: {len(against) - changed} of {len(against)} DAGs unchanged (from {args.against}).")
    last = max((head.last_id for head in report.heads.values()), default=None)
    print(
        f"Chain head: {report.head} over {chained_d:,} decisions"
        + (f" (last id {last})" if last is not None else "")
        + "; keep `--format json` output to compare later with --against."
    )
    if report.ok:
        print("OK: every verifiable record is as the application wrote it.")
        return EXIT_OK
    print("FAILED: records were altered, inserted or deleted outside the application (see above).")
    return EXIT_PROBLEMS


def _when(moment: Any) -> str:
    return str(moment.isoformat(timespec="seconds")) if moment is not None else "-"


def _print_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
