"""``policyzones evidence``: did data of a category (or asset) reach a zone (or purpose) in a period?

The answer comes from the recorded decisions and propagated labels
(:func:`airflow_policyzones.db.evidence.data_use_evidence`), with its completeness: run it where
the scheduler or api-server runs (it reads, never writes, the metadata database Airflow is
configured with, and the policy of ``[policyzones] policy_file`` unless ``--policy`` names one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_policyzones.db.evidence_models import DataUseEvidence

EXIT_OK = 0
EXIT_USAGE = 2

DESCRIPTION = """\
Answer "did this data reach this zone?" from the records: which tries of which tasks read data of
CATEGORY (or in assets matching --asset) in ZONE (or in the zones of --purpose) between --since and
--until, how the data got there (the derivation path through writers and reclassifiers) and on what
grounds (the zone, a sanctioned flow, an exemption with its ticket and expiry, dry-run); every
blocked attempt; what flowed between zones; and how complete the records are for the period
(tries that ran without a decision, tasks that ran blind, enforcement switched off, the policy
versions in force, gaps, rows from before the hash chain) with the chain head of the records used.

--format text (default), json or html (one self-contained file that prints to PDF); --output FILE
writes it there. Exit 0 with a report, 2 for an unknown category, zone or purpose (the valid ones
are listed), an empty period or other bad arguments. See docs/evidence.md."""


def add_command(commands: Any) -> None:
    """Add ``evidence`` to the ``policyzones`` sub-command parser."""
    parser = commands.add_parser(
        "evidence",
        help="did data of a category reach a zone? uses, blocked attempts, flows and completeness",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--category", help="the category of data asked about (e.g. purchase_events)")
    parser.add_argument("--asset", metavar="PATTERN", help="inputs whose name matches this glob (* and ?)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--zone", help="the reading zone (default: every zone)")
    where.add_argument("--purpose", help="every zone with this purpose")
    parser.add_argument(
        "--since",
        required=True,
        metavar="WHEN",
        help="decisions recorded since WHEN: an ISO date or date-time (UTC if no offset), or a "
        "duration such as 30d",
    )
    parser.add_argument("--until", metavar="WHEN", help="and before WHEN (same forms; default: now)")
    parser.add_argument(
        "--policy", metavar="FILE", help="the policy to judge by (default: [policyzones] policy_file)"
    )
    parser.add_argument("--format", choices=("text", "json", "html"), default="text", help="report format")
    parser.add_argument(
        "--output", metavar="FILE", help="write the report to FILE instead of standard output"
    )
    parser.set_defaults(run=run)


def _error(message: str) -> int:
    print(f"policyzones evidence: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    from airflow_policyzones.db.audit import moment_options

    try:
        bounds = moment_options(since=args.since, until=args.until)
    except ValueError as error:
        return _error(str(error))
    from airflow_policyzones.policy import PolicyError

    try:
        if args.policy is not None:
            from airflow_policyzones.asset_uris import AirflowUriNormalizer
            from airflow_policyzones.policy import PolicyEngine

            engine = PolicyEngine.from_file(args.policy, normalize_uri=AirflowUriNormalizer())
        else:
            from airflow_policyzones.config import get_engine

            engine = get_engine()
    except PolicyError as error:
        return _error(f"the policy does not load, and names the valid categories and zones: {error}")
    from airflow.utils.session import create_session

    from airflow_policyzones.db.evidence import EvidenceQueryError, data_use_evidence

    try:
        with create_session() as session:
            report = data_use_evidence(
                session,
                policy=engine,
                category=args.category,
                asset=args.asset,
                zone=args.zone,
                purpose=args.purpose,
                since=bounds["since"],
                until=bounds.get("until"),
            )
    except EvidenceQueryError as error:
        return _error(str(error))
    if args.format == "json":
        text = json.dumps(report.model_dump(mode="json"), indent=2) + "\n"
    elif args.format == "html":
        from airflow_policyzones.db.audit_models import policy_out
        from airflow_policyzones.ui.evidence_report import render_evidence_html

        text = render_evidence_html(report, policy=policy_out(engine))
    else:
        text = "\n".join(render_text(report)) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as error:
        return _error(f"--output {args.output!r}: {error.strerror}")
    print(f"Wrote the {args.format} report to {args.output}: {report.verdict}")
    return EXIT_OK


def _when(moment: Any) -> str:
    return str(moment.isoformat(timespec="seconds")) if moment is not None else "-"


def render_text(report: DataUseEvidence) -> list[str]:
    """The report as lines of text (what ``--format text`` prints)."""
    query, completeness = report.query, report.completeness
    what = query.category or ""
    if query.asset:
        what = f"{what} in assets matching {query.asset}".strip()
    place = query.zone or (
        f"purpose {query.purpose} ({', '.join(query.zones)})" if query.purpose else "any zone"
    )
    lines = [
        f"Evidence: {what} in {place}, decisions recorded {_when(query.since)} to {_when(query.until)}",
        f"(policy {report.policy_version[:19]}, generated {_when(report.generated_at)})",
        "",
        f"Verdict: {report.verdict}",
        "",
        f"Allowed uses ({report.uses_total:,} tr{'y' if report.uses_total == 1 else 'ies'}):",
    ]
    for use in report.uses:
        lines.append(
            f"  {use.dag_id}.{use.task_id} in {use.zone}: {use.input}  "
            f"{use.runs:,} run{'' if use.runs == 1 else 's'}, "
            f"{use.tries:,} tr{'y' if use.tries == 1 else 'ies'}, "
            f"{_when(use.first_at)} .. {_when(use.last_at)}"
        )
        lines.append(f"      allowed by: {use.basis_text}")
        later = "" if use.path_as_of_use else "  (written after this use; the records hold no earlier write)"
        lines.append(f"      path:       {use.path_text or 'source data (labeled by the catalog)'}{later}")
    if not report.uses:
        lines.append("  none")
    lines += ["", f"Blocked attempts ({report.blocked_total:,}):"]
    for item in report.blocked:
        lines.append(
            f"  decision {item.decision_id}"
            + (f" violation {item.violation_id}" if item.violation_id is not None else "")
            + f": {item.dag_id}.{item.task_id} run {item.run_id} try {item.try_number} in {item.zone}: "
            f"{', '.join(item.rules) or 'denied'} on {item.input}"
        )
    if report.blocked_total > len(report.blocked):
        lines.append(f"  ... the newest {len(report.blocked):,} listed")
    if not report.blocked:
        lines.append("  none")
    lines += ["", "What flowed (origin -> reading zone, category: reads reached / blocked):"]
    for cell in report.matrix:
        mark = "  FORBIDDEN by the policy" if cell.forbidden else ""
        lines.append(
            f"  {cell.origin} -> {cell.zone}, {cell.category}: {cell.reads:,} / {cell.blocked:,}{mark}"
        )
    if not report.matrix:
        lines.append("  nothing")
    lines += ["", "Completeness: " + completeness.statement]
    lines += [f"  ! {caveat}" for caveat in completeness.caveats]
    lines += [f"  - {note}" for note in completeness.notes]
    lines.append(f"  decisions recorded in the period: {completeness.decisions_in_period:,}")
    first = completeness.first_decision_at
    lines.append(f"  first recorded decision: {_when(first) if first else 'none ever'}")
    lines.append(f"  [policyzones] enabled here: {'yes' if completeness.enforcement_enabled else 'NO'}")
    lines.append(f"  tries that ran without a decision: {completeness.unchecked_tries:,}")
    for unchecked in completeness.unchecked[:10]:
        lines.append(
            f"    {unchecked.dag_id}.{unchecked.task_id} run {unchecked.run_id} try {unchecked.try_number}"
        )
    lines.append(f"  blind tasks: {len(completeness.blind_tasks):,}")
    for blind in completeness.blind_tasks[:10]:
        lines.append(f"    {blind.dag_id}.{blind.task_id} in {blind.zone}: {blind.blind_tries:,} blind tries")
    lines.append("  policy versions in force:")
    for version in completeness.policy_versions:
        stored = "" if version.text_stored else " (text not stored)"
        lines.append(
            f"    {version.short}  {_when(version.first_used_at)} .. {_when(version.last_used_at)}  "
            f"{version.decisions:,} decisions{stored}"
        )
    if not completeness.policy_versions:
        lines.append("    none (no decision in the period)")
    chain = completeness.chain
    lines.append(
        f"  chain head: {chain.head} over {chain.decisions:,} chained decisions used"
        + (f" (last id {chain.last_id})" if chain.last_id is not None else "")
        + (f"; {chain.unchained_decisions:,} used from before the chain" if chain.unchained_decisions else "")
    )
    lines.append(f"  verify the period: {chain.verify_command}")
    lines += ["", "Limits:"] + [f"  - {limit}" for limit in report.limits]
    return lines
