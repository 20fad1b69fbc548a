"""The worker's HTTP client against a real local HTTP server: no mocked transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_policyzones.api.schema import DECISIONS_PATH, DecisionRequest, InputSpec, TaskInstanceIdentity
from airflow_policyzones.enforcement.client import DecisionClient
from airflow_policyzones.enforcement.errors import DecisionUnavailable
from tests.unit.enforcement.scripted_server import Received, Reply, ScriptedServer, free_port, serve

JWT_SECRET = "policyzones-client-test-secret-" + "y" * 64

REQUEST = DecisionRequest(
    task=TaskInstanceIdentity(dag_id="pz_dag", task_id="t", run_id="manual__1", map_index=-1, try_number=1),
    zone="ads",
    zone_source="dag",
    inputs=[InputSpec(namespace="asset", name="s3://lake/raw/purchases/daily")],
)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)


def decision(request: Received | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid answer for the request the server received (or for REQUEST)."""
    zone = request.json()["zone"] if request is not None else REQUEST.zone
    return {
        "decision_id": 7,
        "outcome": "allow",
        "allowed": True,
        "zone": zone,
        "mode": "enforce",
        "policy_version": "sha256:" + "ab" * 32,
        "findings": [],
        **overrides,
    }


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client(url: str, sleeps: Sleeps | None = None, **options: Any) -> DecisionClient:
    settings: dict[str, Any] = {
        "api_url": url,
        "timeout": 2.0,
        "retries": 2,
        "token_valid_for": 60.0,
        "backoff": 0.01,
        "max_backoff": 0.5,
    }
    settings.update(options)
    if sleeps is not None:
        settings["sleep"] = sleeps
    return DecisionClient(**settings)


def failure(replies: list[Reply], sleeps: Sleeps, **options: Any) -> tuple[str, ScriptedServer]:
    """The message of the DecisionUnavailable the client raises, and what the server received."""
    with serve(replies) as (url, server), pytest.raises(DecisionUnavailable) as caught:
        client(url, sleeps, **options).decide(REQUEST)
    return str(caught.value), server


@pytest.fixture
def allow_server() -> Iterator[tuple[str, Any]]:
    with serve([Reply(body=decision)]) as served:
        yield served


# --- the happy path -------------------------------------------------------------------------------


def test_posts_the_request_with_a_token_bound_to_the_try(allow_server: tuple[str, Any]) -> None:
    from airflow_policyzones.api.tokens import TI_CLAIM, ti_claim, worker_token_validator

    url, server = allow_server
    response = client(url).decide(REQUEST)

    assert (response.outcome, response.allowed, response.decision_id) == ("allow", True, 7)
    (received,) = server.received
    assert received.path == DECISIONS_PATH
    assert DecisionRequest.model_validate(received.json()) == REQUEST
    assert received.headers["Content-Type"] == "application/json"
    scheme, _, token = received.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = asyncio.run(worker_token_validator().avalidated_claims(token))
    assert claims[TI_CLAIM] == ti_claim(REQUEST.task)
    assert claims["method"] == DECISIONS_PATH
    assert 55 <= claims["exp"] - claims["iat"] <= 60


def test_a_trailing_slash_in_api_url_is_fine(allow_server: tuple[str, Any]) -> None:
    url, server = allow_server
    client(url + "/").decide(REQUEST)
    assert server.received[0].path == DECISIONS_PATH


def test_a_deny_is_a_decision_not_an_error() -> None:
    finding = {
        "rule": "category_not_allowed",
        "rules": ["category_not_allowed"],
        "input": "s3://lake/raw/purchases/daily",
        "reason": "no",
        "remediation": "fix it",
    }
    with serve([Reply(body=lambda r: decision(r, outcome="deny", allowed=False, findings=[finding]))]) as (
        url,
        _,
    ):
        response = client(url).decide(REQUEST)
    assert (response.outcome, response.allowed, response.findings[0].rule) == (
        "deny",
        False,
        "category_not_allowed",
    )


# --- retries ----------------------------------------------------------------------------------------


def test_5xx_then_success_is_retried(sleeps: Sleeps) -> None:
    with serve([Reply(500, {"detail": "boom"}), Reply(502, b"bad gateway"), Reply(body=decision)]) as (
        url,
        server,
    ):
        response = client(url, sleeps).decide(REQUEST)
    assert response.allowed
    assert len(server.received) == 3
    assert len(sleeps) == 2 and sleeps[0] <= sleeps[1] + 0.01  # backoff grows (with jitter)


def test_5xx_after_all_retries_fails_closed(sleeps: Sleeps) -> None:
    message, server = failure([Reply(500, {"detail": "database is locked"})], sleeps, retries=3)
    assert len(server.received) == 4
    assert message.startswith("policyzones: could not get a decision (the decision service answered HTTP 500")
    assert "after 4 attempts" in message and "database is locked" in message
    assert "The task did not run" in message


def test_503_policy_missing_on_the_server(sleeps: Sleeps) -> None:
    detail = "the decision service has no valid policy, so no task may run: policy is invalid"
    message, server = failure([Reply(503, {"detail": detail})], sleeps, retries=1)
    assert len(server.received) == 2
    assert "HTTP 503" in message and detail in message
    assert "[policyzones] policy_file" in message  # the hint says where to look


def test_retry_after_is_honoured_within_the_cap(sleeps: Sleeps) -> None:
    with serve([Reply(503, b"busy", headers={"Retry-After": "0.3"}), Reply(body=decision)]) as (url, _):
        client(url, sleeps, max_backoff=0.4).decide(REQUEST)
    assert sleeps == [pytest.approx(0.3)]


def test_connection_refused_fails_closed_after_retries(sleeps: Sleeps) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DecisionUnavailable) as caught:
        client(url, sleeps, retries=2).decide(REQUEST)
    message = str(caught.value)
    assert len(sleeps) == 2
    assert message.startswith("policyzones: could not get a decision (the decision service at ")
    assert "is unreachable" in message and "after 3 attempts" in message
    assert "[policyzones] api_url" in message


def test_timeout_fails_closed_after_retries(sleeps: Sleeps) -> None:
    with serve([Reply(delay=1.0, body=decision)]) as (url, server):
        started = time.monotonic()
        with pytest.raises(DecisionUnavailable) as caught:
            client(url, sleeps, timeout=0.2, retries=1).decide(REQUEST)
        elapsed = time.monotonic() - started
    assert len(server.received) == 2
    assert "no answer from" in str(caught.value) and "within 0.2 s" in str(caught.value)
    assert elapsed < 1.5  # bounded by the timeout, not by the slow server


def test_a_slow_first_answer_then_a_fast_one_succeeds(sleeps: Sleeps) -> None:
    with serve([Reply(delay=0.6, body=decision), Reply(body=decision)]) as (url, server):
        response = client(url, sleeps, timeout=0.2, retries=1).decide(REQUEST)
    assert response.allowed and len(server.received) == 2


def test_a_dropped_connection_is_retried(sleeps: Sleeps) -> None:
    with serve([Reply(drop=True), Reply(body=decision)]) as (url, server):
        response = client(url, sleeps).decide(REQUEST)
    assert response.allowed and len(server.received) == 2


def test_no_retries_means_one_attempt(sleeps: Sleeps) -> None:
    message, server = failure([Reply(500, b"no")], sleeps, retries=0)
    assert "HTTP 500)" in message
    assert len(server.received) == 1 and sleeps == []


# --- answers that are not decisions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail", "hint"),
    [
        (401, "Unauthorized: missing token", "jwt_secret"),
        (403, "Forbidden: the token's signature does not verify", "share [api_auth] jwt_secret"),
        (404, "no task instance dag_id='pz_dag'", "policyzones plugin"),
        (409, "task instance is at try 2, not 1", "another try"),
        (422, "field required", "incompatible version"),
    ],
)
def test_client_errors_are_not_retried(sleeps: Sleeps, status: int, detail: str, hint: str) -> None:
    message, server = failure([Reply(status, {"detail": detail})], sleeps)
    assert len(server.received) == 1 and sleeps == []
    assert f"answered HTTP {status}" in message and detail in message and hint in message


def test_redirects_are_not_followed(sleeps: Sleeps) -> None:
    message, server = failure([Reply(307, b"", headers={"Location": "http://127.0.0.1:9/elsewhere"})], sleeps)
    assert "HTTP 307" in message
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"<html>Airflow UI</html>", "body"),
        (b'{"decision_id": 1', "body"),
        ({"decision_id": 1, "outcome": "allow"}, "allowed"),
        ({**decision(), "outcome": "maybe"}, "outcome"),
        ({**decision(), "surprise": True}, "surprise"),
        ([decision()], "body"),
    ],
)
def test_malformed_answers_fail_closed(sleeps: Sleeps, body: Any, where: str) -> None:
    message, server = failure([Reply(200, body)], sleeps)
    assert len(server.received) == 1
    assert message.startswith(
        "policyzones: could not get a decision (the decision service sent a malformed answer)"
    )
    assert where in message


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"zone": "recs"}, "the answer is for zone 'recs', the request named 'ads'"),
        ({"allowed": False}, "allowed=False contradicts outcome='allow'"),
        ({"outcome": "deny", "allowed": False}, "a deny without findings"),
        ({"outcome": "dry_run"}, "outcome 'dry_run' without findings"),
        ({"policy_version": ""}, "no policy version"),
    ],
)
def test_answers_that_do_not_match_the_request_fail_closed(
    sleeps: Sleeps, overrides: dict[str, Any], problem: str
) -> None:
    message, _ = failure([Reply(200, decision(**overrides))], sleeps)
    assert "(the decision does not match the request)" in message
    assert problem in message


def test_a_missing_jwt_secret_fails_closed_without_a_request(
    monkeypatch: pytest.MonkeyPatch, allow_server: tuple[str, Any]
) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "")
    url, server = allow_server
    with pytest.raises(DecisionUnavailable, match=r"\(cannot sign the worker token\).*jwt_secret"):
        client(url).decide(REQUEST)
    assert server.received == []


def test_an_unsupported_url_scheme_fails_closed(sleeps: Sleeps) -> None:
    with pytest.raises(DecisionUnavailable, match="Check \\[policyzones\\] api_url"):
        client("ftp://127.0.0.1:9", sleeps).decide(REQUEST)
    assert sleeps == []


def test_from_settings_uses_the_snapshot() -> None:
    from airflow_policyzones.enforcement.settings import EnforcementSettings

    settings = EnforcementSettings(
        enabled=True,
        policy_file="",
        api_url="http://api:8080",
        request_timeout=3.5,
        request_retries=4,
        token_valid_for=30,
    )
    built = DecisionClient.from_settings(settings)
    assert (built.url, built.timeout, built.retries, built.token_valid_for) == (
        "http://api:8080" + DECISIONS_PATH,
        3.5,
        4,
        30.0,
    )
