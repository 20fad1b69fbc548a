"""Worker authentication for the decision service, as providers/edge3 authenticates its workers.

A request must carry ``Authorization: Bearer <jwt>`` signed with ``[api_auth] jwt_secret`` (see
:func:`airflow_policyzones.api.tokens.sign_worker_token`), for our audience, unexpired (with
``[api_auth] jwt_leeway``), whose ``method`` claim names the endpoint called. The route then
checks the ``ti`` claim against the body. A missing token is 401; any token that does not verify
is 403 with the reason, which names no secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Header, HTTPException, status

from airflow_policyzones.api.tokens import (
    METHOD_CLAIM,
    TI_CLAIM,
    TokenConfigurationError,
    worker_token_validator,
)

log = logging.getLogger(__name__)

_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (
        jwt.ExpiredSignatureError,
        "the token has expired: sign a fresh one per request and keep worker and api-server clocks in sync",
    ),
    (
        jwt.ImmatureSignatureError,
        "the token is not valid yet (nbf/iat in the future): keep worker and api-server clocks in sync",
    ),
    (jwt.InvalidIssuedAtError, "the token was issued in the future: keep clocks in sync"),
    (
        jwt.InvalidAudienceError,
        "the token is for another audience: sign it with airflow_policyzones.api.tokens.sign_worker_token",
    ),
    (
        jwt.InvalidSignatureError,
        "the token's signature does not verify: worker and api-server must share [api_auth] jwt_secret",
    ),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "the token is signed with an algorithm the decision service does not accept"),
    (jwt.DecodeError, "the token is malformed"),
)


@dataclass(frozen=True, slots=True)
class WorkerClaims:
    """The verified claims of a worker token."""

    method: str
    ti: dict[str, Any]
    raw: dict[str, Any]


def _forbidden(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, f"Forbidden: {reason}")


def _reason(error: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            if isinstance(error, jwt.MissingRequiredClaimError):
                return f"{reason} ({error.claim!r})"
            return reason
    return "the token could not be verified"


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Unauthorized: missing token. Send 'Authorization: Bearer <token>' signed with "
            "[api_auth] jwt_secret (airflow_policyzones.api.tokens.sign_worker_token)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, token = authorization.strip().partition(" ")
    if not token:  # a bare token, as edge3 workers send it
        return scheme
    if scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"Unauthorized: unsupported authorization scheme {scheme!r}; use 'Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


class WorkerAuth:
    """FastAPI dependency: the verified claims of a worker token good for ``method``."""

    def __init__(self, *, method: str) -> None:
        self.method = method

    async def __call__(self, authorization: str | None = Header(default=None)) -> WorkerClaims:
        token = _bearer(authorization)
        try:
            validator = worker_token_validator()
        except TokenConfigurationError as error:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
        try:
            claims: dict[str, Any] = await validator.avalidated_claims(token)
        except Exception as error:
            reason = _reason(error)
            log.warning("policyzones: rejected a worker token: %s (%s)", reason, type(error).__name__)
            raise _forbidden(reason) from None
        signed_method = claims.get(METHOD_CLAIM)
        if signed_method != self.method:
            log.warning("policyzones: token signed for method %r used on %r", signed_method, self.method)
            raise _forbidden(f"the token is signed for method {signed_method!r}, not {self.method!r}")
        ti = claims.get(TI_CLAIM)
        if not isinstance(ti, dict):
            raise _forbidden("the token names no task-instance try (claim 'ti')")
        return WorkerClaims(method=signed_method, ti=ti, raw=claims)
