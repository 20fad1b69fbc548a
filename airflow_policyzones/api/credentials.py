"""The api-server check on connections and variables: a root middleware around the execution API.

Since Airflow 3 a task's supervisor fetches connections and variables from the api-server
(``GET /execution/connections/{connection_id}``, ``GET /execution/variables/{variable_key}``),
authenticated with the try's own execution token. Airflow's route dependencies
``has_connection_access`` / ``has_variable_access`` allow every task; this middleware sits in front
of them (registered through the plugin's ``fastapi_root_middlewares``, which wrap the whole
api-server app including the ``/execution`` mount) and refuses, with 403, what the try's zone may
not use. The supervisor turns a 403 into ``AirflowSecretsBackendAccessDenied`` and does not fall
back to another secrets backend, so the task's hook fails.

Every other request costs one string comparison. A request for a connection the policy does not
restrict costs a dictionary lookup (no token validation, no database). Otherwise the token is
validated with the execution API's own validator; a token that does not validate is left to
Airflow, which answers 401/403 itself.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from airflow_policyzones import config
from airflow_policyzones.policy import PolicyEngine, PolicyError
from airflow_policyzones.policy.models import CredentialKind

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from airflow.api_fastapi.auth.tokens import JWTValidator

    from airflow_policyzones.credentials import CredentialVerdict

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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


class CredentialGuard:
    """Pure ASGI middleware: the zone check on execution-API connection and variable fetches."""

    def __init__(self, app: ASGIApp, *, enabled: bool | None = None) -> None:
        self.app = app
        self._enabled = enabled
        self._validator: JWTValidator | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        request = credential_request(path)
        if request is None or not self.enabled:
            await self.app(scope, receive, send)
            return
        kind, name = request
        try:
            engine = config.get_engine()
        except PolicyError as error:
            await _answer(
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
        ti_id = await self._task_instance_id(scope)
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
        await _answer(send, 403, _refusal(verdict))

    @property
    def enabled(self) -> bool:
        return config.enabled() if self._enabled is None else self._enabled

    async def _task_instance_id(self, scope: Scope) -> str | None:
        """The ``sub`` of a valid execution-scope token, validated by the execution API's own
        validator (same keys, audience, issuer and leeway as Airflow's routes)."""
        token = _bearer(scope)
        if token is None:
            return None
        if self._validator is None:
            from airflow.api_fastapi.execution_api.app import _jwt_validator

            self._validator = _jwt_validator()  # type: ignore[no-untyped-call]
        try:
            claims = await self._validator.avalidated_claims(token, {})
        except Exception:
            return None
        from airflow.api_fastapi.execution_api.datamodels.token import TIClaims

        try:
            parsed = TIClaims(**{"scope": "execution", **claims})
        except Exception:
            return None
        if parsed.scope != "execution":
            return None
        return str(claims["sub"])


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _check(*, engine: PolicyEngine, ti_id: str, kind: CredentialKind, name: str) -> CredentialVerdict:
    from airflow.utils.session import create_session

    from airflow_policyzones.credentials import check_credential

    with create_session() as session:
        return check_credential(session=session, engine=engine, ti_id=ti_id, kind=kind, name=name)


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


async def _answer(send: Send, status: int, detail: dict[str, Any]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def root_middlewares() -> list[dict[str, Any]]:
    """What the plugin registers as ``fastapi_root_middlewares``."""
    return [{"middleware": CredentialGuard, "args": [], "kwargs": {}, "name": "policyzones credentials"}]
