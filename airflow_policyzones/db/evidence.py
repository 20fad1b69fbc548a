"""Data-use evidence: did data of a category (or an asset) reach a zone (or purpose) in a period?

Answered from the records only — decisions, their inputs and findings, propagated label events —
with the policy the report runs with naming the valid categories, zones and purposes, the
exemptions' expiry, and which observed flows it forbids. Domain operations beside the tables: no
HTTP here; bad questions raise :class:`EvidenceQueryError` with a message listing what is valid.

What counts (one rule, :func:`_classify`): each recorded input of the asked data in a decision
of the asked zones is either a **use** (the try ran with it: allowed, exempted, dry-run, or an
input without a finding of a try denied only later, by a read observed while its body ran) or a
**blocked attempt** (its finding was a deny, or its try was denied before the body ran).
The records are read by :mod:`airflow_policyzones.db.evidence_queries`; their completeness
(:mod:`airflow_policyzones.db.evidence_completeness`) reuses the reconciliation
(:mod:`airflow_policyzones.db.audit`) and the chain (:mod:`airflow_policyzones.db.chain`); derivation
paths come from the lineage (:mod:`airflow_policyzones.db.propagation`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_policyzones.db.evidence_completeness import records_completeness
from airflow_policyzones.db.evidence_models import (
    SOURCE_ORIGIN,
    AllowedUse,
    Basis,
    BlockedAttempt,
    Completeness,
    DataUseEvidence,
    DerivationStep,
    EvidenceQuery,
    ExemptionRef,
    FlowCell,
)
from airflow_policyzones.db.evidence_queries import (
    Scope,
    as_utc,
    count_decisions,
    use_rows,
    without_jit,
)
from airflow_policyzones.db.models import (
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
)
from airflow_policyzones.db.policy_history import short_version
from airflow_policyzones.db.propagation import DerivationHop, derivation_path, render_derivation
from airflow_policyzones.policy.engine import AssetLabels, InputRef
from airflow_policyzones.policy.vocabulary import Outcome

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_policyzones.policy import PolicyEngine

MAX_BLOCKED = 1_000
"""Blocked attempts listed (newest first); ``blocked_total`` counts them all."""
MAX_USES = 500
"""Allowed-use groups listed (most recent first)."""
MAX_PATHS = 200
"""Derivation paths followed (one per input of the listed uses, most recent first)."""
LIMITS = (
    "Only what the provider recorded is here: a read no hook reported, no SQL named and no inlet "
    "declared is invisible; blind tasks and unchecked tries are how such gaps show.",
    "This report does not recompute the digests of the rows it used; run the verify command in "
    "the chain section for the period and keep its heads.",
    "A derivation path follows the latest write recorded before the use, through the first "
    "labeled input of each writing try.",
    "Names, flows and exemption expiry are judged by the policy this report ran with; the "
    "policy versions in force are listed so their text can be compared.",
)


class EvidenceQueryError(ValueError):
    """The question cannot be asked as given (unknown category or zone, empty period...); the
    message says what is valid."""


def data_use_evidence(
    session: Session,
    *,
    policy: PolicyEngine,
    category: str | None = None,
    asset: str | None = None,
    zone: str | None = None,
    purpose: str | None = None,
    since: datetime,
    until: datetime | None = None,
    readable_dag_ids: Collection[str] | None = None,
    now: datetime | None = None,
) -> DataUseEvidence:
    """The evidence for one question (see :class:`DataUseEvidence` for the shape).

    ``category`` and/or ``asset`` (a glob over recorded input names: ``*`` any characters, ``?``
    one) say which data; ``zone`` or ``purpose`` (every zone with that purpose) say where
    (neither: every zone). ``since`` / ``until`` (default: ``now``) bound the decisions by when
    they were decided, ``[since, until)``, UTC when naive. ``readable_dag_ids`` (``None``: every
    DAG) limits every row to the DAGs a user may read. Reads only; a handful of indexed queries
    plus one per derivation hop of the listed uses.

    Raises :class:`EvidenceQueryError` for no data named, an unknown category, zone or purpose
    (the message lists the valid ones), both zone and purpose, or an empty period.
    """
    moment = as_utc(now) if now is not None else datetime.now(timezone.utc)
    start, end = as_utc(since), as_utc(until) if until is not None else moment
    zones = _check(session, policy, category=category, asset=asset, zone=zone, purpose=purpose)
    if end <= start:
        raise EvidenceQueryError(
            f"empty period: --until {end.isoformat()} is not after --since {start.isoformat()}; "
            "give an end after the start (or none: until now)"
        )
    readable = sorted(readable_dag_ids) if readable_dag_ids is not None else None
    scope = Scope(start=start, end=end, category=category, asset=asset, zones=zones, readable=readable)
    with without_jit(session):
        rows = use_rows(session, scope)
        tally = _tally(rows)
        uses = _uses(session, policy, tally)
        in_zones = count_decisions(session, scope, zones=zones) if zones else None
        completeness = records_completeness(
            session, scope, decision_digests=tally.decision_digests, place=_place(zone, purpose, zones)
        )
    newest = sorted(tally.blocked, key=lambda row: (as_utc(row.decided_at), row.id), reverse=True)
    blocked = [_blocked(row) for row in newest[:MAX_BLOCKED]]
    matrix = _matrix(policy, _unique(rows))
    query = EvidenceQuery(
        category=category,
        asset=asset,
        zone=zone,
        purpose=purpose,
        zones=zones,
        since=start,
        until=end,
        readable_dag_ids=len(readable) if readable is not None else None,
    )
    verdict = _verdict(
        query,
        uses=uses,
        uses_total=tally.use_tries,
        blocked_total=len(tally.blocked),
        decisions_in_zones=in_zones,
        completeness=completeness,
        policy=policy,
    )
    return DataUseEvidence(
        query=query,
        generated_at=moment,
        policy_version=policy.version,
        verdict=verdict,
        uses=uses,
        uses_total=tally.use_tries,
        blocked=blocked,
        blocked_total=len(tally.blocked),
        matrix=matrix,
        completeness=completeness,
        limits=list(LIMITS),
    )


# --- the question ----------------------------------------------------------------------------------


def _check(
    session: Session,
    policy: PolicyEngine,
    *,
    category: str | None,
    asset: str | None,
    zone: str | None,
    purpose: str | None,
) -> list[str]:
    """The reading zones asked about (empty: every zone); raises for names nobody knows."""
    spec = policy.policy
    if category is None and not asset:
        raise EvidenceQueryError(
            "say which data: give a category (one of "
            f"{_listed(spec.categories)}) or an asset pattern, or both"
        )
    if zone is not None and purpose is not None:
        raise EvidenceQueryError("give a zone or a purpose, not both (a purpose stands for its zones)")
    decision, inputs = PolicyZonesDecision, PolicyZonesDecisionInput
    if category is not None and category not in spec.categories:
        recorded = session.scalar(sa.select(inputs.id).where(inputs.category == category).limit(1))
        if recorded is None:  # a category an earlier policy version had still answers
            raise EvidenceQueryError(
                f"unknown category {category!r}: the policy ({short_version(policy.version)}) defines "
                f"{_listed(spec.categories)}, and no decision recorded it"
            )
    if zone is not None:
        if zone not in spec.zones:
            recorded = session.scalar(sa.select(decision.id).where(decision.zone == zone).limit(1))
            if recorded is None:
                raise EvidenceQueryError(
                    f"unknown zone {zone!r}: the policy ({short_version(policy.version)}) defines "
                    f"{_listed(spec.zones)}, and no decision was recorded in it"
                )
        return [zone]
    if purpose is not None:
        zones = sorted(name for name, item in spec.zones.items() if item.purpose == purpose)
        if not zones:
            purposes = sorted({item.purpose for item in spec.zones.values()})
            raise EvidenceQueryError(
                f"unknown purpose {purpose!r}: the policy's zones serve {_listed(purposes)}"
            )
        return zones
    return []


def _listed(names: Iterable[str]) -> str:
    known = sorted(names)
    return ", ".join(known) if known else "none"


def _place(zone: str | None, purpose: str | None, zones: Sequence[str]) -> str:
    if zone is not None:
        return zone
    if purpose is not None:
        return f"purpose {purpose} ({', '.join(zones)})" if zones != [purpose] else purpose
    return "any zone"


def _what(category: str | None, asset: str | None) -> str:
    if category is not None and asset:
        return f"{category} in assets matching {asset!r}"
    return category if category is not None else f"data in assets matching {asset!r}"


# --- uses and blocked attempts ---------------------------------------------------------------------


def _classify(outcome: str, finding: str | None, ran: bool | None) -> Basis | None:
    """Whether the try ran with the input and on what grounds (``None``: it was blocked).

    A finding on the input decides: deny blocks, ``dry_run`` and ``exempted`` ran. Without a
    finding the input was read unless the try was denied before its body ran.
    """
    if finding == Outcome.DENY.value:
        return None
    if finding == Outcome.DRY_RUN.value:
        return "dry_run"
    if finding == Outcome.EXEMPTED.value:
        return "exemption"
    if outcome == Outcome.DENY.value and not ran:
        return None
    return "zone"  # refined to sanctioned_flow from the recorded origins (_basis)


@dataclass(slots=True)
class _Group:
    key: tuple[Any, ...]
    row: Any
    basis: Basis
    categories: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)
    tries: int = 0
    first: Any = None
    last: Any = None
    versions: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Tally:
    groups: dict[tuple[Any, ...], _Group] = field(default_factory=dict)
    blocked: list[Any] = field(default_factory=list)
    """Rows of blocked inputs (made into :class:`BlockedAttempt` only for the listed ones)."""
    use_tries: int = 0
    decision_digests: dict[int, str | None] = field(default_factory=dict)


def _blocked(row: Any) -> BlockedAttempt:
    return BlockedAttempt(
        decision_id=row.id,
        violation_id=row.violation_id,
        dag_id=row.dag_id,
        task_id=row.task_id,
        run_id=row.run_id,
        map_index=row.map_index,
        try_number=row.try_number,
        zone=row.zone,
        decided_at=as_utc(row.decided_at),
        input=row.name,
        rule=row.rule,
        rules=list(row.rules or ([row.rule] if row.rule else [])),
        reason=row.reason
        or "the try was denied for another of its inputs before its body ran: this one was never read",
        policy_version=row.policy_version,
    )


def _unique(rows: Sequence[Any]) -> list[Any]:
    """One row per decision, input and category (an input with several findings: the worst)."""
    unique: dict[tuple[int, int, str | None], Any] = {}
    for row in rows:
        key = (row.id, row.position, row.category)
        if key not in unique or row.finding == Outcome.DENY.value:
            unique[key] = row
    return list(unique.values())


def _tally(rows: Sequence[Any]) -> _Tally:
    """Rows (one per input category and finding) folded into uses and blocked attempts."""
    tally = _Tally()
    seen: dict[tuple[int, int], tuple[Any, set[str]]] = {}
    for row in rows:
        tally.decision_digests[row.id] = row.digest
        key = (row.id, row.position)
        known = seen.get(key)
        if known is None:
            seen[key] = (row, {row.category} if row.category else set())
        else:
            first, categories = known
            if row.category:
                categories.add(row.category)
            if first.finding != Outcome.DENY.value and row.finding == Outcome.DENY.value:
                seen[key] = (row, categories)  # the worst finding on the input decides
    for row, categories in seen.values():
        basis = _classify(row.outcome, row.finding, row.ran)
        if basis is None:
            tally.blocked.append(row)
            continue
        if basis == "zone" and set(row.origins or ()) - {row.zone}:
            basis = "sanctioned_flow"
        tally.use_tries += 1
        group_key = (
            row.dag_id,
            row.task_id,
            row.zone,
            row.namespace,
            row.name,
            basis,
            row.exemption,
            tuple(sorted(row.origins or ())),
            tuple(sorted(row.reclassified_by or ())),
            tuple(sorted(row.consented or ())),
            bool(row.aggregated),
        )
        group = tally.groups.get(group_key)
        if group is None:
            group = tally.groups[group_key] = _Group(key=group_key, row=row, basis=basis, first=row)
        group.categories |= categories
        group.runs.add(row.run_id)
        group.tries += 1
        group.last = row
        group.versions.add(row.policy_version)
    return tally


def _uses(session: Session, policy: PolicyEngine, tally: _Tally) -> list[AllowedUse]:
    groups = sorted(tally.groups.values(), key=lambda group: group.last.id, reverse=True)[:MAX_USES]
    expiry = {item.ticket: item for item in policy.policy.exemptions}
    # One path per input (as of its latest listed use): tasks reading the same input share it.
    latest: dict[tuple[str, str], datetime] = {}
    for group in groups:
        key = (group.row.namespace, group.row.name)
        moment = as_utc(group.last.decided_at)
        if key in latest or len(latest) < MAX_PATHS:
            latest[key] = max(moment, latest.get(key, moment))
    paths: dict[tuple[str, str], tuple[list[DerivationHop], bool]] = {}
    for key, moment in latest.items():
        ref = InputRef(key[0], key[1])  # type: ignore[arg-type]
        hops = derivation_path(session, ref, before=moment)
        # Nothing written before the use (its writer ran later): the path recorded since.
        paths[key] = (hops, True) if hops else (derivation_path(session, ref), False)
    uses = []
    for group in groups:
        row = group.row
        hops, as_of_use = paths.get((row.namespace, row.name), ([], True))
        origins, reclassifiers = sorted(row.origins or ()), sorted(row.reclassified_by or ())
        exemption = None
        if group.basis == "exemption" and row.exemption:
            spec = expiry.get(row.exemption)
            exemption = ExemptionRef(
                ticket=row.exemption,
                expires_at=spec.expires_at if spec is not None else None,
                reason=spec.reason if spec is not None else None,
            )
        uses.append(
            AllowedUse(
                dag_id=row.dag_id,
                task_id=row.task_id,
                zone=row.zone,
                input=row.name,
                namespace=row.namespace,
                categories=sorted(group.categories),
                basis=group.basis,
                basis_text=_basis_text(
                    group.basis, zone=row.zone, origins=origins, via=reclassifiers, exemption=exemption
                ),
                reclassifiers=reclassifiers,
                origins=origins,
                consented=sorted(row.consented or ()),
                aggregated=bool(row.aggregated),
                exemption=exemption,
                runs=len(group.runs),
                tries=group.tries,
                first_at=as_utc(group.first.decided_at),
                last_at=as_utc(group.last.decided_at),
                first_decision_id=group.first.id,
                last_decision_id=group.last.id,
                last_run_id=group.last.run_id,
                policy_versions=sorted(group.versions),
                path=[
                    DerivationStep(
                        asset=hop.ref.name,
                        namespace=hop.ref.namespace,
                        written_by=f"{hop.write.dag_id}.{hop.write.task_id}" if hop.write else None,
                        zone=hop.write.zone if hop.write else None,
                        reclassifier=hop.write.reclassifier if hop.write else None,
                        recorded_at=as_utc(hop.write.recorded_at) if hop.write else None,
                    )
                    for hop in hops
                ],
                path_text=render_derivation(hops),
                path_as_of_use=as_of_use or not hops,
            )
        )
    return uses


def _basis_text(
    basis: Basis,
    *,
    zone: str | None,
    origins: Sequence[str],
    via: Sequence[str],
    exemption: ExemptionRef | None,
) -> str:
    through = f" through reclassifier {', '.join(via)}" if via else ""
    foreign = [origin for origin in origins if origin != zone]
    if basis == "sanctioned_flow":
        return f"sanctioned flow {', '.join(foreign)} → {zone}{through}"
    if basis == "exemption" and exemption is not None:
        expires = f", expires {exemption.expires_at.date().isoformat()}" if exemption.expires_at else ""
        return f"exemption {exemption.ticket}{expires}"
    if basis == "dry_run":
        return f"dry-run: zone {zone} records the finding and lets the task run"
    return f"allowed by zone {zone}{through}"


# --- the flow matrix -------------------------------------------------------------------------------


def _matrix(policy: PolicyEngine, rows: Sequence[Any]) -> list[FlowCell]:
    """Reads of the asked data in the asked zones (every zone when none was asked), per origin
    zone and category: how many reached the zone and how many were blocked (:func:`_classify`,
    one count per recorded input row)."""
    cells: dict[tuple[str, str, str, bool], list[int]] = {}
    judged: dict[tuple[str, str, str, frozenset[str]], bool] = {}  # few distinct flows, many rows
    for row in rows:
        if row.zone is None or row.category is None:
            continue
        basis = _classify(row.outcome, row.finding, row.ran)
        origins = sorted(set(row.origins or ()) - {row.zone}) or [SOURCE_ORIGIN]
        via = frozenset(row.reclassified_by or ())
        for origin in origins:
            flow = (origin, row.zone, row.category, via)
            forbidden = judged.get(flow)
            if forbidden is None:
                forbidden = judged[flow] = _forbidden(
                    policy, origin=origin, zone=row.zone, category=row.category, via=via
                )
            cell = cells.setdefault((origin, row.zone, row.category, forbidden), [0, 0])
            cell[0 if basis is not None else 1] += 1
    return [
        FlowCell(
            origin=origin, zone=zone, category=category, reads=reads, blocked=blocked, forbidden=forbidden
        )
        for (origin, zone, category, forbidden), (reads, blocked) in sorted(cells.items())
    ]


def _forbidden(policy: PolicyEngine, *, origin: str, zone: str, category: str, via: frozenset[str]) -> bool:
    """The policy does not let ``category`` into ``zone``, or not from ``origin`` (with those passes)."""
    spec = policy.policy.zones.get(zone)
    if spec is None:
        return False  # a zone the policy no longer defines: nothing to judge it by
    if category not in spec.allowed_categories:
        return True
    if origin == SOURCE_ORIGIN:
        return False
    labels = AssetLabels(origins=frozenset({origin}), reclassified_by=via)
    return bool(policy.unsanctioned_origins(zone=zone, labels=labels))


# --- the verdict -----------------------------------------------------------------------------------


def _form(use: AllowedUse, *, policy: PolicyEngine, with_zone: bool) -> str:
    """How the data reached the zone, as a phrase: ``aggregated data consented for ai_training,
    through reclassifier r``."""
    spec = policy.policy.zones.get(use.zone or "")
    purpose = spec.purpose if spec is not None else use.zone
    text = ("aggregated" if use.aggregated else "user-level") + " data"
    if purpose in use.consented:
        text += f" consented for {purpose}"
    if use.basis == "exemption":
        text += f", by {use.basis_text}"
    elif use.basis == "dry_run":
        text += ", in dry-run (recorded as a violation, the task ran)"
    elif use.reclassifiers or _path_reclassifiers(use):
        text += f", through reclassifier {', '.join(use.reclassifiers or _path_reclassifiers(use))}"
    else:
        text += f", {use.basis_text}" if use.basis == "sanctioned_flow" else ", allowed by the zone"
    return f"in {use.zone}: {text}" if with_zone else text


def _path_reclassifiers(use: AllowedUse) -> list[str]:
    """Reclassifiers on the input's derivation path (its labels may come from the catalog too)."""
    return sorted({step.reclassifier for step in use.path if step.reclassifier})


def _verdict(
    query: EvidenceQuery,
    *,
    uses: Sequence[AllowedUse],
    uses_total: int,
    blocked_total: int,
    decisions_in_zones: int | None,
    completeness: Completeness,
    policy: PolicyEngine,
) -> str:
    what = _what(query.category, query.asset)
    place = _place(query.zone, query.purpose, query.zones)
    period = f"between {query.since.isoformat()} and {query.until.isoformat()}"
    attempts = f"{blocked_total:,} attempt{'' if blocked_total == 1 else 's'} blocked"
    if completeness.decisions_in_period == 0:
        first = completeness.first_decision_at
        start = (
            f" (the records start at {first.isoformat()})"
            if first is not None
            else " (no decision was ever recorded here)"
        )
        return (
            f"No decision was recorded {period}{start}: the records cannot show whether {what} "
            f"reached {place}."
        )
    if uses_total == 0:
        if blocked_total:
            return f"{what} never reached {place}: {attempts}."
        there = (
            f"none of the {decisions_in_zones:,} decisions recorded in {place} read it"
            if decisions_in_zones
            else f"no try was decided in {place}"
            if decisions_in_zones is not None
            else "no recorded try read it"
        )
        return f"{what} never reached {place} {period}: {there}, and no attempt was blocked."
    forms: Counter[str] = Counter()
    with_zone = len(query.zones) != 1
    for use in uses:
        forms[_form(use, policy=policy, with_zone=with_zone)] += use.tries
    unlisted = uses_total - sum(forms.values())
    tail = f"; {attempts}" if blocked_total else ""
    if len(forms) == 1 and not unlisted:
        [form] = forms
        return f"{what} reached {place} only as {form}; 0 other uses{tail}."
    parts = [f"{count:,} as {form}" for form, count in forms.most_common()]
    if unlisted:
        parts.append(f"{unlisted:,} more not listed")
    return f"{what} reached {place} in {uses_total:,} uses: {'; '.join(parts)}{tail}."
