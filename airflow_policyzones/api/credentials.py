"""The api-server check on connections and variables: a root middleware around the execution API.

Since Airflow 3 a task's supervisor fetches connections and variables from the api-server
(``GET /execution/connections/{connection_id}``, ``GET /execution/variables/{variable_key}``;
``PUT`` and ``DELETE`` of a variable set and delete it, and are checked the same way),
authenticated with the try's own execution token. Airflow's route dependencies
``has_connection_access`` / ``has_variable_access`` allow every task; this middleware sits in front
of them (registered through the plugin's ``fastapi_root_middlewares``, which wrap the whole
api-server app including the ``/execution`` mount) and refuses, with 403, what the try's zone may
not use. The supervisor turns a 403 into ``AirflowSecretsBackendAccessDenied`` and does not fall
back to another secrets backend, so the task's hook fails.

Every other request costs one string comparison. A request for a connection the policy does not
restrict costs a dictionary lookup (no token validation, no database). Otherwise the token is
validated with the execution API's own validator (once per request: Airflow's route reuses the
result); a token that does not validate is left to Airflow, which answers 401/403 itself. A
permitted fetch then costs one select on a pooled connection.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from airflow_policyzones import config
from airflow_policyzones.api.execution_tokens import ExecutionGuard, answer, route_path
from airflow_policyzones.policy import PolicyEngine, PolicyError
from airflow_policyzones.policy.models import CredentialKind

if TYPE_CHECKING:
    from airflow_policyzones.api.execution_tokens import Receive, Scope, Send
    from airflow_policyzones.db.credentials import CredentialVerdict

log = logging.getLogger(__name__)

EXECUTION_PREFIX = "/execution/"
_ROUTES: tuple[tuple[str, CredentialKind], ...] = (
    ("/execution/connections/", "connection"),
    ("/execution/variables/", "variable"),
)


def credential_request(path: str) -> tuple[CredentialKind, str] | None:
    """``(kind, id)`` when ``path`` (below the api-server's root path) fetches one connection or
    variable from the execution API, else ``None``."""
    if not path.startswith(EXECUTION_PREFIX):
        return None
    for prefix, kind in _ROUTES:
        if path.startswith(prefix):
            name = path[len(prefix) :]
            if not name:
                return None
            if kind == "connection" and "/" in name:
                return None  # no such route: Airflow answers 404
            if kind == "variable" and name == "keys":
                return None  # GET /execution/variables/keys lists keys (Airflow's own route)
            return kind, name
    return None


_METHODS: dict[CredentialKind, frozenset[str]] = {
    "connection": frozenset({"GET"}),
    # A zone that may not use a variable may not set or delete it either.
    "variable": frozenset({"GET", "PUT", "DELETE"}),
}


class CredentialGuard(ExecutionGuard):
    """Pure ASGI middleware: the zone check on execution-API connection and variable fetches (and
    variable writes)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS["variable"]:
            await self.app(scope, receive, send)
            return
        request = credential_request(route_path(scope))
        if request is None or scope["method"] not in _METHODS[request[0]] or not self.enabled:
            await self.app(scope, receive, send)
            return
        kind, name = request
        try:
            engine = config.get_engine()
        except PolicyError as error:
            await answer(
                send,
                503,
                {
                    "reason": "policyzones_no_policy",
                    "message": f"the zone policy does not load on the api-server, so no {kind} is "
                    f"served: {error}",
                    "fix": "fix the policy file ([policyzones] policy_file); tasks retry",
                },
            )
            return
        if not engine.restricts(kind=kind, name=name):
            await self.app(scope, receive, send)
            return
        ti_id = await self._tokens.task_instance_id(scope)
        if ti_id is None:
            await self.app(scope, receive, send)  # Airflow refuses the token itself
            return
        verdict = await run_in_threadpool(_check, engine=engine, ti_id=ti_id, kind=kind, name=name)
        if verdict.allowed:
            if verdict.decision is not None and verdict.decision.findings:
                log.warning("policyzones: %s (try %s)", verdict.message, ti_id)
            await self.app(scope, receive, send)
            return
        log.warning("policyzones: %s (try %s)", verdict.message, ti_id)
        await answer(send, 403, _refusal(verdict))


def _check(*, engine: PolicyEngine, ti_id: str, kind: CredentialKind, name: str) -> CredentialVerdict:
    """A try its decision let run that may use the id is served on one read outside any session
    (other tries read the zone their task was parsed in, cached per DAG version); anything to
    record (a refusal, a dry-run or exempted finding) is decided again and recorded in a session."""
    from airflow.utils.session import create_session

    from airflow_policyzones.db.credentials import check_credential, verdict_on_read
    from airflow_policyzones.db.tries import read_try, try_zone

    moment = datetime.now(timezone.utc)
    found = read_try(ti_id)
    zone = try_zone(found)[0] if found is not None else None
    verdict = verdict_on_read(engine, found, zone=zone, ti_id=ti_id, kind=kind, name=name, now=moment)
    if not verdict.to_record:
        return verdict
    with create_session() as session:
        return check_credential(session=session, engine=engine, ti_id=ti_id, kind=kind, name=name, now=moment)


def _refusal(verdict: CredentialVerdict) -> dict[str, Any]:
    finding = verdict.decision.findings[0] if verdict.decision and verdict.decision.findings else None
    return {
        "reason": "policyzones_refused",
        "message": verdict.message,
        verdict.kind: verdict.name,
        "zone": verdict.zone,
        "rule": finding.rule.value if finding is not None else None,
        "fix": verdict.fix,
    }
