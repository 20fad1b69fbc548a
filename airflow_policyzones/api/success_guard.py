"""The api-server refuses success to a try that was not decided: a root middleware around the
execution API's ``PATCH /execution/task-instances/{id}/state``.

A task's supervisor reports the try's end there, with the try's own execution token. When the
state is ``success`` and the try has no decision that let it run (its check was removed in the task
process, or it ran on past a refusal), :func:`airflow_policyzones.db.undecided.check_success`
records an ``undecided_run`` violation on the try, and in an enforce zone this middleware hands
Airflow a ``failed`` state instead (same end date): the try fails, emits no asset events and
triggers nothing downstream. In a ``dry_run`` zone the success stands and the violation is recorded.

Every other request costs one method and path comparison; a success report costs reading its small
body, the token validation and one query outside a transaction (a try without an allowing decision
is then judged under a row lock).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from airflow_policyzones import config
from airflow_policyzones.api.execution_tokens import (
    ExecutionGuard,
    read_body,
    replay,
    route_path,
    with_length,
)

if TYPE_CHECKING:
    from airflow_policyzones.api.execution_tokens import Receive, Scope, Send
    from airflow_policyzones.policy.engine import Decision

log = logging.getLogger(__name__)

_STATE_ROUTE = re.compile(r"^/execution/task-instances/(?P<ti>[0-9a-fA-F-]{32,36})/state$")


def state_report(path: str) -> str | None:
    """The task instance id when ``path`` (below the root path) reports a try's state."""
    match = _STATE_ROUTE.match(path)
    return match.group("ti") if match else None


class SuccessGuard(ExecutionGuard):
    """Pure ASGI middleware: a try reports success only with a decision that allowed it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "PATCH":
            await self.app(scope, receive, send)
            return
        ti_id = state_report(route_path(scope))
        if ti_id is None or not self.enabled:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        payload = _json(body)
        if payload is None or payload.get("state") != "success":
            await self.app(scope, replay(body, receive), send)
            return
        if await self._tokens.task_instance_id(scope) != ti_id:
            await self.app(scope, replay(body, receive), send)  # Airflow refuses the token itself
            return
        try:
            decision = await run_in_threadpool(_check, ti_id=ti_id)
        except Exception:
            # Fail closed: a success that cannot be checked is not reported as one (the try fails).
            log.exception("policyzones: could not check the success of try %s; failing it", ti_id)
            decision = None
            allowed = False
        else:
            allowed = decision is None or decision.allowed
        if decision is not None:
            log.warning(
                "policyzones: try %s reported success: %s%s",
                ti_id,
                decision.findings[0].reason,
                "" if decision.allowed else "; recorded as failed",
            )
        if allowed:
            await self.app(scope, replay(body, receive), send)
            return
        failed: dict[str, Any] = {"state": "failed", "end_date": payload.get("end_date")}
        if payload.get("rendered_map_index") is not None:
            failed["rendered_map_index"] = payload["rendered_map_index"]
        replaced = json.dumps(failed).encode()
        await self.app(with_length(scope, len(replaced)), replay(replaced, receive), send)


def _check(*, ti_id: str) -> Decision | None:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.tries import read_try
    from airflow_policyzones.db.undecided import check_success

    found = read_try(ti_id)  # one statement, no transaction: the common case ends here
    if found is None or found.allowed:
        return None
    with create_session() as session:
        return check_success(session=session, load_engine=config.get_engine, ti_id=ti_id)


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
