"""The data-use evidence report as one self-contained HTML file, and its picture.

:func:`render_flow_map` draws the policy's zone map (:mod:`.zone_map`) with the flows the records
show for the asked data over it: forbidden ones in red. :func:`render_evidence_html` is the whole
report — verdict, uses with their paths, blocked attempts, the matrix, completeness and the chain
head — with inline CSS and the inline SVG: no script, no external asset, so it prints to PDF from
any browser. Every value is escaped: names come from DAG files and policy files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from markupsafe import Markup

from airflow_policyzones.db.audit_models import PolicyOut
from airflow_policyzones.db.evidence_models import SOURCE_ORIGIN, DataUseEvidence
from airflow_policyzones.ui.zone_map import ObservedFlow, render_zone_map

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #18181b;
  background: #fff; margin: 2rem auto; max-width: 72rem; padding: 0 1.5rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.15rem; margin-top: 2rem;
  border-bottom: 1px solid #e4e4e7; padding-bottom: .25rem; }
.verdict { font-size: 1.15rem; font-weight: 600; padding: .75rem 1rem; border-left: 4px solid #0284c7;
  background: #f0f9ff; }
.muted { color: #52525b; } .bad { color: #b91c1c; } .good { color: #15803d; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid #e4e4e7; }
th { background: #fafafa; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px;
  overflow-wrap: anywhere; }
.caveats li { color: #b91c1c; } .map { overflow-x: auto; border: 1px solid #e4e4e7; padding: .5rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"""


def render_flow_map(evidence: DataUseEvidence, *, policy: PolicyOut, standalone: bool = False) -> str:
    """The policy's zone map with the observed flows of ``evidence.matrix`` drawn over it (one
    arrow per origin zone → reading zone, red when the policy forbids it) and, under each zone,
    how many reads of source data (no origin zone) reached it or were blocked. An ``<svg>``."""
    flows: dict[tuple[str, str, bool], list[int]] = defaultdict(lambda: [0, 0, 0])
    notes: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for cell in evidence.matrix:
        target = (
            notes[cell.zone]
            if cell.origin == SOURCE_ORIGIN
            else flows[cell.origin, cell.zone, cell.forbidden]
        )
        target[0] += cell.reads
        target[1] += cell.blocked
        target[2] |= int(cell.forbidden)
    observed = [
        ObservedFlow(source, target, _counts(reads, blocked), forbidden=bool(forbidden))
        for (source, target, _), (reads, blocked, forbidden) in sorted(flows.items())
    ]
    lines = {
        zone: ("source data: " + _counts(reads, blocked), bool(forbidden and reads) or bool(blocked))
        for zone, (reads, blocked, forbidden) in notes.items()
    }
    return render_zone_map(policy, standalone=standalone, observed=observed, notes=lines)


def _counts(reads: int, blocked: int) -> str:
    return f"{reads:,} read" + (f", {blocked:,} blocked" if blocked else "")


def _rows(cells: Iterable[Iterable[object]]) -> Markup:
    return Markup("").join(
        Markup("<tr>{}</tr>").format(Markup("").join(_cell(value) for value in row)) for row in cells
    )


def _cell(value: object) -> Markup:
    if isinstance(value, Markup):
        return Markup("<td>{}</td>").format(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return Markup('<td class="n">{:,}</td>').format(value)
    return Markup("<td>{}</td>").format("-" if value is None else value)


def _table(headers: Iterable[str], body: Markup, empty: str) -> Markup:
    if not body:
        return Markup('<p class="muted">{}</p>').format(empty)
    head = Markup("").join(Markup("<th>{}</th>").format(header) for header in headers)
    return Markup("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>").format(head, body)


def render_evidence_html(evidence: DataUseEvidence, *, policy: PolicyOut) -> str:
    """The whole report as one HTML document (inline CSS and SVG; prints to PDF)."""
    query, completeness, chain = evidence.query, evidence.completeness, evidence.completeness.chain
    what = query.category or ""
    if query.asset:
        what = f"{what} in {query.asset}".strip()
    place = query.zone or (f"purpose {query.purpose}" if query.purpose else "any zone")
    uses = _rows(
        [
            use.dag_id,
            use.task_id,
            use.zone,
            Markup('<span class="mono">{}</span>').format(use.input),
            use.basis_text,
            use.runs,
            use.tries,
            f"{use.first_at:%Y-%m-%d %H:%M} to {use.last_at:%Y-%m-%d %H:%M}",
            Markup('<span class="mono">{}</span>{}').format(
                use.path_text or "source data (catalog labels)",
                "" if use.path_as_of_use else " (written after this use)",
            ),
        ]
        for use in evidence.uses
    )
    blocked = _rows(
        [
            item.decision_id,
            item.violation_id,
            item.dag_id,
            item.task_id,
            item.run_id,
            item.try_number,
            item.zone,
            ", ".join(item.rules) or None,
            Markup('<span class="mono">{}</span>').format(item.input),
        ]
        for item in evidence.blocked
    )
    matrix = _rows(
        [
            cell.origin,
            cell.zone,
            cell.category,
            cell.reads,
            cell.blocked,
            Markup('<span class="bad">forbidden</span>') if cell.forbidden else "sanctioned",
        ]
        for cell in evidence.matrix
    )
    versions = _rows(
        [
            Markup("<code>{}</code>").format(item.short),
            f"{item.first_used_at:%Y-%m-%d %H:%M}",
            f"{item.last_used_at:%Y-%m-%d %H:%M}",
            item.decisions,
            "stored" if item.text_stored else "not stored",
        ]
        for item in completeness.policy_versions
    )
    unchecked = _rows(
        [item.dag_id, item.task_id, item.run_id, item.try_number, item.state]
        for item in completeness.unchecked
    )
    blind = _rows(
        [item.dag_id, item.task_id, item.zone, item.blind_tries, item.tries_with_reads]
        for item in completeness.blind_tasks
    )
    caveats = Markup("").join(Markup("<li>{}</li>").format(item) for item in completeness.caveats)
    caveats += Markup("").join(
        Markup('<li class="muted">{}</li>').format(item) for item in completeness.notes
    )
    limits = Markup("").join(Markup("<li>{}</li>").format(item) for item in evidence.limits)
    more_blocked = (
        Markup('<p class="muted">{:,} blocked attempts in all; the newest {:,} are listed.</p>').format(
            evidence.blocked_total, len(evidence.blocked)
        )
        if evidence.blocked_total > len(evidence.blocked)
        else Markup("")
    )
    document = Markup(
        """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Data use evidence: {what} &times; {place}</title>
<style>{css}</style></head><body>
<h1>Data use evidence: {what} &times; {place}</h1>
<p class="muted">Decisions recorded from {since} to {until} (UTC) · generated {generated} · policy
<code>{policy_version}</code></p>
<p class="verdict">{verdict}</p>
<h2>Allowed uses ({uses_total:,} tries)</h2>{uses}
<h2>Blocked attempts ({blocked_total:,})</h2>{more_blocked}{blocked}
<h2>What flowed, zone to zone</h2>
<div class="map">{picture}</div>
<p class="muted">Green: flows seen in the records that the policy sanctions; red: flows it forbids.
Blue/grey: the policy's sanctioned flows and inflows.</p>{matrix}
<h2>Completeness</h2>
<p><strong class="{strength}">{statement}</strong></p><ul class="caveats">{caveats}</ul>
<table><tbody>
<tr><th>decisions recorded in the period</th><td class="n">{in_period:,}</td></tr>
<tr><th>first recorded decision</th><td>{first}</td></tr>
<tr><th>[policyzones] enabled (where this report ran)</th><td>{enabled}</td></tr>
<tr><th>tries that ran without a decision</th><td class="n">{unchecked_n:,}</td></tr>
<tr><th>blind tasks</th><td class="n">{blind_n:,}</td></tr>
</tbody></table>
<h3>Policy versions in force</h3>{versions}
<h3>Unchecked tries</h3>{unchecked}
<h3>Blind tasks</h3>{blind}
<h3>Chain head</h3>
<p>Chain head <code>{head}</code> over {chained:,} chained decisions (last id {last_id}); {unchained:,}
decisions used were recorded before the chain started. Verify the period with
<code>{verify}</code>.</p>
<h2>Limits</h2><ul>{limits}</ul>
</body></html>
"""
    ).format(
        css=Markup(_CSS),
        what=what,
        place=place,
        since=query.since.isoformat(timespec="seconds"),
        until=query.until.isoformat(timespec="seconds"),
        generated=evidence.generated_at.isoformat(timespec="seconds"),
        policy_version=evidence.policy_version,
        verdict=evidence.verdict,
        uses_total=evidence.uses_total,
        uses=_table(
            (
                "DAG",
                "task",
                "zone",
                "input",
                "allowed by",
                "runs",
                "tries",
                "first to last",
                "how it got there",
            ),
            uses,
            "No allowed use.",
        ),
        blocked_total=evidence.blocked_total,
        more_blocked=more_blocked,
        blocked=_table(
            ("decision", "violation", "DAG", "task", "run", "try", "zone", "rules", "input"),
            blocked,
            "No blocked attempt.",
        ),
        picture=Markup(render_flow_map(evidence, policy=policy, standalone=True)),
        matrix=_table(
            ("origin", "reading zone", "category", "reads", "blocked", "policy"), matrix, "Nothing flowed."
        ),
        strength="good" if completeness.complete else "bad",
        statement=completeness.statement,
        caveats=caveats,
        in_period=completeness.decisions_in_period,
        first=completeness.first_decision_at.isoformat(timespec="seconds")
        if completeness.first_decision_at
        else "none ever",
        enabled="yes" if completeness.enforcement_enabled else "NO",
        unchecked_n=completeness.unchecked_tries,
        blind_n=len(completeness.blind_tasks),
        versions=_table(("version", "first use", "last use", "decisions", "text"), versions, "None."),
        unchecked=_table(("DAG", "task", "run", "try", "state"), unchecked, "None."),
        blind=_table(("DAG", "task", "zone", "blind tries", "tries with reads"), blind, "None."),
        head=chain.head,
        chained=chain.decisions,
        last_id=chain.last_id if chain.last_id is not None else "-",
        unchained=chain.unchained_decisions,
        verify=chain.verify_command,
        limits=limits,
    )
    return str(document)
