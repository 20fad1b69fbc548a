"""A try may succeed only with a decision that let it run.

The zone check runs in the task process, where DAG code runs too: an operator can drop its
pre-execute hook, a macro can remove it while the task renders. Whatever happened there, the
try's success is reported to the api-server (``PATCH /execution/task-instances/{id}/state``), and
there :func:`check_success` asks whether the try has a recorded decision that allowed it. If not,
the refusal is recorded on the try (rule ``undecided_run``) and, in an enforce zone, the api-server
records the try as failed instead (:mod:`airflow_policyzones.api.success_guard`): no success, no
asset events, no downstream run.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from airflow_policyzones.db.credentials import record_server_decision
from airflow_policyzones.db.models import CREDENTIALS_ONLY, decision_of_try
from airflow_policyzones.db.tries import lookup_try, try_zone

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from airflow_policyzones.policy.engine import Decision, PolicyEngine


def check_success(
    *,
    session: Session,
    load_engine: Callable[[], PolicyEngine],
    ti_id: str,
    now: datetime | None = None,
) -> Decision | None:
    """``None`` when the try ``ti_id`` (a task instance id, as in its execution token) may succeed:
    it has a decision that allowed it, or no such task instance exists (Airflow answers that).
    Otherwise the decision recorded about it (``allowed`` is false in an enforce zone: fail the
    try). Commits the session when it records something.

    The policy is loaded (``load_engine``) only to judge a try without an allowing decision, so
    a policy that breaks while tries run does not fail those already decided; when it cannot be
    loaded then, ``load_engine``'s error propagates (the caller fails the try closed)."""
    found = lookup_try(session, ti_id)
    if found is None:
        return None
    identity, task = found.identity, found.task
    row = session.scalar(decision_of_try(**identity.model_dump()).with_for_update())
    decided = row is not None and row.claims_digest != CREDENTIALS_ONLY
    if decided and row is not None and row.allowed:
        session.rollback()  # release the row lock
        return None
    moment = now or datetime.now(timezone.utc)
    # Not the zone its decision row names: a refused claim is recorded as claimed.
    zone, zone_source = try_zone(found, session=session)
    decision = load_engine().decide_undecided_run(
        task=task, zone=zone, recorded=row.outcome if decided and row is not None else None, now=moment
    )
    record_server_decision(session, row, identity, decision, zone_source=zone_source, decided_at=moment)
    session.commit()
    return decision
