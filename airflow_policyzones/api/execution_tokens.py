"""What the provider's root middlewares share around Airflow's execution API: the try a request's
execution token names, and a JSON answer of their own.

The execution API authenticates a task's supervisor with a token the scheduler issued for one
task-instance try (``sub`` = the task instance id). The middlewares validate it with the execution
API's own validator (same keys, audience, issuer and leeway as Airflow's routes) and leave the
result where Airflow's routes look for it first; a token that does not validate is left to
Airflow, which refuses it itself.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from airflow_policyzones import config

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.tokens import JWTValidator
    from airflow.api_fastapi.execution_api.datamodels.token import TIClaims

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ExecutionTokens:
    """Validates execution tokens; the validator is built on first use (after Airflow's config).

    A token that validates is left on the request's scope where Airflow's own ``JWTBearer``
    caches it, so that the route does not validate it a second time (and a second middleware on
    the same request reuses it).
    """

    def __init__(self) -> None:
        self._validator: JWTValidator | None = None

    async def task_instance_id(self, scope: Scope) -> str | None:
        """The ``sub`` of the request's valid execution-scope token, else ``None``."""
        claims = await self._claims(scope)
        if claims is None or claims.scope != "execution":
            return None
        return str((claims.model_extra or {})["sub"])

    async def _claims(self, scope: Scope) -> TIClaims | None:
        """The claims of the request's token if it validates, else ``None``."""
        from airflow.api_fastapi.execution_api.datamodels.token import TIClaims, TIToken

        key = _scope_token_key()
        cached = scope.get(key) if key is not None else None
        if isinstance(cached, TIToken):
            return cached.claims
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
        try:
            parsed = TIClaims(**{"scope": "execution", **claims})
        except Exception:
            return None
        if key is not None:
            # What JWTBearer would cache for this token (a token it cannot build one from is left
            # to it, to fail the same way).
            with contextlib.suppress(KeyError, ValueError):
                scope[key] = TIToken(id=claims["sub"], claims=parsed)
        return parsed


def _scope_token_key() -> str | None:
    """Where Airflow's execution API caches a request's validated token on its ASGI scope."""
    try:
        from airflow.api_fastapi.execution_api.security import _REQUEST_SCOPE_TOKEN_KEY
    except ImportError:
        return None
    return _REQUEST_SCOPE_TOKEN_KEY


class ExecutionGuard:
    """Base of the provider's pure ASGI middlewares around the execution API: the wrapped app,
    whether enforcement is on (``[policyzones] enabled``, read per request unless given), and
    the token validator."""

    def __init__(self, app: ASGIApp, *, enabled: bool | None = None) -> None:
        self.app = app
        self._enabled = enabled
        self._tokens = ExecutionTokens()

    @property
    def enabled(self) -> bool:
        return config.enabled() if self._enabled is None else self._enabled


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def route_path(scope: Scope) -> str:
    """The request's path below the api-server's root path."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def answer(send: Send, status: int, detail: dict[str, Any]) -> None:
    """Answer the request with ``{"detail": detail}`` (the shape of Airflow's own errors)."""
    await json_response(send, {"detail": detail}, status=status)


async def json_response(send: Send, payload: dict[str, Any], *, status: int = 200) -> None:
    """Answer the request with ``payload`` as JSON."""
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    """The whole request body (a middleware that reads it hands the app :func:`replay` after)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app ``body`` first, then whatever the client sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def with_length(scope: Scope, length: int) -> Scope:
    """``scope`` with its ``content-length`` header set to ``length`` (a replaced body)."""
    headers = [(key, value) for key, value in scope.get("headers", ()) if key != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}
