"""The task's client: what it sends its supervisor, and how it treats answers it cannot trust.

The path through a real api-server is tested in ``tests/unit/api/test_relay.py``; here a scripted
supervisor plays an api-server that misbehaves (an answer no real relay gives), with the task
SDK's own message and error types.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_policyzones.enforcement.client import DecisionClient
from airflow_policyzones.enforcement.errors import DecisionUnavailable
from airflow_policyzones.wire import (
    DecisionRequest,
    InputSpec,
    RelayMethod,
    TaskInstanceIdentity,
    decode_inline,
    encode_inline,
)

REQUEST = DecisionRequest(
    task=TaskInstanceIdentity(dag_id="pz_dag", task_id="t", run_id="manual__1", map_index=3, try_number=1),
    zone="ads",
    zone_source="dag",
    inputs=[InputSpec(namespace="asset", name="s3://lake/raw/purchases/daily")],
)


def decision(**overrides: Any) -> dict[str, Any]:
    return {
        "decision_id": 7,
        "outcome": "allow",
        "allowed": True,
        "zone": REQUEST.zone,
        "mode": "enforce",
        "policy_version": "sha256:" + "ab" * 32,
        "findings": [],
        **overrides,
    }


class ScriptedSupervisor:
    """Answers ``GetXCom`` with ``stored`` (or raises the supervisor's error for ``status``)."""

    def __init__(self, stored: Any = None, *, status: int | None = None) -> None:
        self.stored = stored
        self.status = status
        self.sent: list[Any] = []

    def send(self, msg: Any) -> Any:
        from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, GetXCom, XComResult

        self.sent.append(msg)
        if self.status is not None:
            detail = {"status_code": self.status, "message": "Server error", "detail": {"detail": "boom"}}
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail=detail))
        if isinstance(msg, GetXCom):
            return XComResult(key=msg.key, value=self.stored)
        return None


def ask(stored: Any = None, **options: Any) -> str:
    with pytest.raises(DecisionUnavailable) as caught:
        DecisionClient(comms=ScriptedSupervisor(stored, **options)).decide(REQUEST)
    return str(caught.value)


def test_asks_on_its_own_task_instance_with_the_request_in_the_relay_key() -> None:
    from airflow.sdk.execution_time.comms import GetXCom

    supervisor = ScriptedSupervisor({"status": 200, "body": decision()})
    answer = DecisionClient(comms=supervisor).decide(REQUEST)

    assert answer.decision_id == 7 and answer.allowed
    [get] = supervisor.sent
    assert isinstance(get, GetXCom)
    assert (get.dag_id, get.run_id, get.task_id, get.map_index) == ("pz_dag", "manual__1", "t", 3)
    prefix, _, payload = get.key.rpartition(".")
    assert prefix == RelayMethod.DECISIONS.key
    assert DecisionRequest.model_validate_json(decode_inline(payload)) == REQUEST


def test_a_request_too_long_for_a_key_is_set_as_the_value_then_read_back() -> None:
    from airflow.sdk.execution_time.comms import GetXCom, SetXCom

    long = REQUEST.model_copy(
        update={
            "inputs": [
                InputSpec(namespace="asset", name=f"s3://lake/{i}/{i * 7919 % 10007}") for i in range(900)
            ]
        }
    )
    supervisor = ScriptedSupervisor({"status": 200, "body": decision()})
    DecisionClient(comms=supervisor).decide(long)

    set_, get = supervisor.sent
    assert isinstance(set_, SetXCom) and isinstance(get, GetXCom)
    assert set_.key == get.key == RelayMethod.DECISIONS.key and set_.map_index == get.map_index == 3
    assert set_.value == long.model_dump(mode="json")


@given(st.binary(max_size=5_000))
def test_inline_payloads_round_trip(data: bytes) -> None:
    encoded = encode_inline(data)
    assert decode_inline(encoded) == data
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@given(st.text(max_size=200))
def test_decoding_any_text_gives_bytes_or_a_value_error_only(text: str) -> None:
    # What the relay reads from a key is attacker-chosen: nothing but ValueError may escape.
    with contextlib.suppress(ValueError):
        assert isinstance(decode_inline(text), bytes)


def test_a_deny_is_a_decision_not_an_error() -> None:
    finding = {
        "rule": "category_not_allowed",
        "rules": ["category_not_allowed"],
        "input": "x",
        "reason": "r",
        "remediation": "f",
    }
    stored = {"status": 200, "body": decision(outcome="deny", allowed=False, findings=[finding])}
    answer = DecisionClient(comms=ScriptedSupervisor(stored)).decide(REQUEST)
    assert answer.outcome == "deny" and not answer.allowed


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (403, "must come from the try itself"),
        (404, "No such task instance"),
        (409, "another try"),
        (422, "incompatible version"),
        (503, "policyzones validate POLICY"),
        (500, "See the api-server's log"),
    ],
)
def test_an_error_answer_fails_closed_with_its_hint(status: int, hint: str) -> None:
    message = ask({"status": status, "detail": "the reason"})
    assert f"(the decision service answered HTTP {status}): the reason" in message
    assert hint in message and "retried if it has retries left" in message


def test_a_refusal_by_the_execution_api_fails_closed() -> None:
    message = ask(status=403)
    assert "(the execution API refused the decisions request with HTTP 403)" in message
    assert "boom" in message


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, "did not answer the decisions request"),
        (REQUEST.model_dump(mode="json"), "did not answer the decisions request"),
        ({"status": 200}, "answered HTTP 200"),
        ({"status": 200, "body": {"decision_id": 1}}, "malformed answer"),
        ({"status": 200, "body": {**decision(), "outcome": "maybe"}}, "malformed answer"),
        ({"status": 200, "body": {**decision(), "surprise": True}}, "malformed answer"),
        ({"status": 200, "body": decision(), "extra": 1}, "did not answer"),
    ],
)
def test_what_is_not_an_answer_fails_closed(stored: Any, expected: str) -> None:
    assert expected in ask(stored)


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
def test_answers_that_do_not_match_the_request_fail_closed(overrides: dict[str, Any], problem: str) -> None:
    message = ask({"status": 200, "body": decision(**overrides)})
    assert "(the decision does not match the request)" in message and problem in message


def test_outside_a_task_runner_there_is_no_supervisor_to_ask() -> None:
    with pytest.raises(DecisionUnavailable, match="no task supervisor to ask through"):
        DecisionClient().decide(REQUEST)
