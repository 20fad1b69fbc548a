"""How complete the records are for one data-use evidence question
(:mod:`airflow_policyzones.db.evidence`): tries that ran unchecked, blind tasks, a period before the
first recorded decision, enforcement switched off, decisions outside the hash chain.

It reuses the reconciliation (:mod:`airflow_policyzones.db.audit`) and the chain
(:mod:`airflow_policyzones.db.chain`); a gap found here weakens the report's verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from airflow_policyzones.db.chain import chain_head, chain_start
from airflow_policyzones.db.evidence_models import (
    BlindTaskOut,
    ChainHeadOut,
    Completeness,
    UncheckedTryOut,
)
from airflow_policyzones.db.evidence_queries import Scope, as_utc, count_decisions, policy_versions
from airflow_policyzones.db.models import PolicyZonesDecision

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

MAX_UNCHECKED = 50
"""Unchecked tries listed; ``unchecked_tries`` counts them all."""


def _or_every_zone(zones: Sequence[str]) -> list[str | None]:
    return [*zones] if zones else [None]


def records_completeness(
    session: Session, scope: Scope, *, decision_digests: Mapping[int, str | None], place: str
) -> Completeness:
    """What the records of ``scope`` may be missing (``decision_digests``: the digest of each
    decision the report used, by id; ``place``: the asked zones, as the verdict words them)."""
    from airflow_policyzones import config
    from airflow_policyzones.db.audit import BLIND_EXPLANATION, blind_tasks, unchecked_tries

    caveats: list[str] = []
    decision = PolicyZonesDecision
    versions = policy_versions(session, scope)
    # The versions count every decision of the period: without a DAG filter their sum is the count.
    in_period = (
        sum(item.decisions for item in versions)
        if scope.readable is None
        else count_decisions(session, scope)
    )
    first = session.scalar(sa.select(sa.func.min(decision.decided_at)))
    first_at = as_utc(first) if first is not None else None
    if first_at is None:
        caveats.append(
            "No decision was ever recorded in this database: the provider is not installed on the "
            "components that run tasks, or enforcement never ran."
        )
    elif scope.end <= first_at:
        caveats.append(
            f"The whole period lies before the provider's first recorded decision ({first_at.isoformat()}): "
            "it was not installed (or not recording) then, so the records say nothing about it."
        )
    enabled = config.enabled()
    if not enabled:
        caveats.append(
            "[policyzones] enabled is False where this report ran: if the components that run tasks "
            "are configured the same way, nothing is checked or recorded there."
        )
    readable = scope.readable
    unchecked = [
        item
        for item in unchecked_tries(session=session, since=scope.start, dag_ids=readable)
        if item.start_date is None or as_utc(item.start_date) < scope.end
    ]
    notes: list[str] = []
    if first_at is not None and scope.start < first_at < scope.end:
        gap = f"The period starts before the provider's first recorded decision ({first_at.isoformat()})"
        early = [
            item for item in unchecked if item.start_date is not None and as_utc(item.start_date) < first_at
        ]
        if early:
            caveats.append(f"{gap}, and {len(early):,} task tries started before it: they ran unchecked.")
        else:
            notes.append(
                f"{gap}; no task try Airflow still records started before it (tries removed by "
                "`airflow db clean` would not show)."
            )
    if unchecked:
        caveats.append(
            f"{len(unchecked):,} task tr{'y' if len(unchecked) == 1 else 'ies'} started in the period "
            "without a decision (enforcement off, or code that got around the check): what they read "
            "is not in the records, whatever their zone."
        )
    blind = [
        task
        for zone_name in _or_every_zone(scope.zones)
        for task in blind_tasks(
            session=session, since=scope.start, until=scope.end, dag_ids=readable, zone=zone_name
        )
    ]
    if blind:
        caveats.append(
            f"{len(blind):,} task{'' if len(blind) == 1 else 's'} in {place} finished tries without a "
            f"known read ({BLIND_EXPLANATION}): what they read is not in the records."
        )
    start = chain_start(session=session)
    first_chained = start[0] if start is not None else None
    digests = sorted(decision_digests.items())
    chained = [digest for _, digest in digests if digest is not None]
    unchained = len(digests) - len(chained)
    if unchained:
        caveats.append(
            f"{unchained:,} of the decisions used were recorded before the hash chain started "
            "(no digest): they cannot be verified."
        )
    since_text = scope.start.isoformat()
    until_text = scope.end.isoformat()
    chain = ChainHeadOut(
        head=chain_head(chained),
        decisions=len(chained),
        unchained_decisions=unchained,
        last_id=digests[-1][0] if digests else None,
        chain_started_at=as_utc(start[1]) if start is not None else None,
        first_chained_id=first_chained,
        verify_command=f"policyzones verify-records --since {since_text} --until {until_text}",
    )
    statement = (
        "No gap found: every try that started in the period has a decision, none ran blind in "
        f"{place}, enforcement is on where this report ran, the period lies within the records and "
        "every decision used is chained. The answer covers what the provider checked (see the limits)."
        if not caveats
        else f"The answer is only as strong as these records: {len(caveats)} gap"
        f"{'' if len(caveats) == 1 else 's'} below weaken{'s' if len(caveats) == 1 else ''} it."
    )
    return Completeness(
        complete=not caveats,
        statement=statement,
        caveats=caveats,
        notes=notes,
        decisions_in_period=in_period,
        first_decision_at=first_at,
        enforcement_enabled=enabled,
        unchecked_tries=len(unchecked),
        unchecked=[
            UncheckedTryOut(
                dag_id=item.dag_id,
                task_id=item.task_id,
                run_id=item.run_id,
                map_index=item.map_index,
                try_number=item.try_number,
                state=item.state,
                start_date=as_utc(item.start_date) if item.start_date is not None else None,
            )
            for item in unchecked[:MAX_UNCHECKED]
        ],
        blind_tasks=[
            BlindTaskOut(
                dag_id=task.dag_id,
                task_id=task.task_id,
                zone=task.zone,
                blind_tries=task.blind_tries,
                tries_with_reads=task.tries_with_reads,
                last_decision_id=task.decision_id,
            )
            for task in blind
        ],
        policy_versions=versions,
        chain=chain,
    )
