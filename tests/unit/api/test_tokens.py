"""Worker tokens: what the worker signs is exactly what the server accepts, and nothing else."""

from __future__ import annotations

import jwt
import pytest

from airflow_policyzones.api.schema import DECISIONS_PATH, TaskInstanceIdentity
from airflow_policyzones.api.tokens import (
    ALGORITHM,
    AUDIENCE,
    TokenConfigurationError,
    sign_worker_token,
    ti_claim,
    worker_token_validator,
)
from tests.support.airflow_db import JWT_SECRET

IDENTITY = TaskInstanceIdentity(
    dag_id="d", task_id="t", run_id="scheduled__2026/05/04", map_index=3, try_number=2
)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)


def test_a_signed_token_validates_with_its_claims() -> None:
    token = sign_worker_token(identity=IDENTITY, valid_for=30)
    claims = worker_token_validator().validated_claims(token)

    assert claims["method"] == DECISIONS_PATH
    assert claims["ti"] == {
        "dag_id": "d",
        "task_id": "t",
        "run_id": "scheduled__2026/05/04",
        "map_index": 3,
        "try_number": 2,
    }
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 30
    assert jwt.get_unverified_header(token)["alg"] == ALGORITHM


def test_the_default_lifetime_is_policyzones_token_valid_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__POLICYZONES__TOKEN_VALID_FOR", "7")
    claims = worker_token_validator().validated_claims(sign_worker_token(identity=IDENTITY))
    assert claims["exp"] - claims["iat"] == 7


def test_the_ti_claim_is_structured_so_separators_cannot_collide() -> None:
    a = TaskInstanceIdentity(dag_id="a", task_id="b/c", run_id="r", try_number=1)
    b = TaskInstanceIdentity(dag_id="a/b", task_id="c", run_id="r", try_number=1)
    assert ti_claim(a) != ti_claim(b)


def test_airflows_own_jwt_algorithm_setting_does_not_break_worker_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_ALGORITHM", "RS256")
    token = sign_worker_token(identity=IDENTITY)
    assert worker_token_validator().validated_claims(token)["ti"] == ti_claim(IDENTITY)


def test_without_a_shared_secret_nothing_can_be_signed_or_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "")
    with pytest.raises(TokenConfigurationError, match=r"\[api_auth\] jwt_secret is empty"):
        sign_worker_token(identity=IDENTITY)
    with pytest.raises(TokenConfigurationError):
        worker_token_validator()
