"""What the provider's root middlewares share around Airflow's execution API: the try a request's
execution token names, and a JSON answer of their own.

The execution API authenticates a task's supervisor with a token the scheduler issued for one
task-instance try (``sub`` = the task instance id). The middlewares validate it with the execution
API's own validator (same keys, audience, issuer and leeway as Airflow's routes); a token that does
not validate is left to Airflow, which refuses it itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from airflow_policyzones import config

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.tokens import JWTValidator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ExecutionTokens:
    """Validates execution tokens; the validator is built on first use (after Airflow's config)."""

    def __init__(self) -> None:
        self._validator: JWTValidator | None = None

    async def task_instance_id(self, scope: Scope) -> str | None:
        """The ``sub`` of the request's valid execution-scope token, else ``None``."""
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
    body = json.dumps({"detail": detail}).encode()
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
