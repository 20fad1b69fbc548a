"""Worker tokens for the decision service: signed on the worker, validated on the api-server.

Like providers/edge3 workers, a worker proves it belongs to the deployment with a short-lived
JWT signed with the shared ``[api_auth] jwt_secret``. On top of edge3's ``method`` claim (the
endpoint the token is good for) each token carries a ``ti`` claim naming the one task-instance
try it may ask about, so a leaked token cannot record decisions for any other task.

Signing and validation live side by side here so that the two can never drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_policyzones.api.schema import DECISIONS_PATH, TaskInstanceIdentity

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.tokens import JWTGenerator, JWTValidator

AUDIENCE = "urn:airflow-policyzones:decision-service"
"""Our own audience: a policyzones token is not an Airflow API token, nor the other way round."""

ALGORITHM = "HS512"
"""Always the shared secret, whatever ``[api_auth] jwt_algorithm`` says for Airflow's own tokens."""

METHOD_CLAIM = "method"
TI_CLAIM = "ti"
DEFAULT_VALID_FOR = 60.0


class TokenConfigurationError(RuntimeError):
    """``[api_auth] jwt_secret`` is not set, so no worker token can be signed or checked."""


def _jwt_secret() -> str:
    from airflow.configuration import conf

    secret = conf.get("api_auth", "jwt_secret", fallback="") or ""
    if not secret:
        raise TokenConfigurationError(
            "[api_auth] jwt_secret is empty: set the same secret (AIRFLOW__API_AUTH__JWT_SECRET) on the "
            "api-server and on every worker so that decision requests can be authenticated"
        )
    return str(secret)


def ti_claim(identity: TaskInstanceIdentity) -> dict[str, Any]:
    """The ``ti`` claim for one try: a JSON object, so no separator can make two identities equal."""
    return identity.model_dump(mode="json")


def _generator(secret: str, valid_for: float) -> JWTGenerator:
    from airflow.api_fastapi.auth.tokens import JWTGenerator

    return JWTGenerator(
        secret_key=secret,
        # None, not the asymmetric key Airflow may be configured with (jwt_private_key_path):
        # workers hold only the shared secret. The converter accepts None; the stub does not.
        private_key=None,  # type: ignore[arg-type]
        valid_for=valid_for,
        audience=AUDIENCE,
        algorithm=ALGORITHM,
    )


def sign_worker_token(
    *, identity: TaskInstanceIdentity, valid_for: float | None = None, method: str = DECISIONS_PATH
) -> str:
    """Sign the token a worker sends (``Authorization: Bearer <token>``) for one decision request.

    ``valid_for`` defaults to ``[policyzones] token_valid_for`` (60 s): long enough for the
    request and its retries, short enough that a leaked token is soon worthless.
    """
    if valid_for is None:
        from airflow_policyzones.config import token_valid_for

        valid_for = float(token_valid_for())
    return _generator(_jwt_secret(), valid_for).generate({METHOD_CLAIM: method, TI_CLAIM: ti_claim(identity)})


def worker_token_validator() -> JWTValidator:
    """The validator for worker tokens (signature, audience, expiry with ``[api_auth] jwt_leeway``)."""
    from airflow.api_fastapi.auth.tokens import JWTValidator

    return JWTValidator(
        secret_key=_jwt_secret(),
        audience=AUDIENCE,
        algorithm=[ALGORITHM],
        required_claims=frozenset({"exp", "iat", "nbf", "aud", METHOD_CLAIM, TI_CLAIM}),
    )
