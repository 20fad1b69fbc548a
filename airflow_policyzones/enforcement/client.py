"""The task's client for the decision service: it asks through its own task supervisor.

A task process holds no credential for the api-server (no ``[api_auth] jwt_secret``, no token):
it asks its supervisor for an XCom whose relay key (:class:`~airflow_policyzones.wire.RelayMethod`)
carries the request (``GetXCom``; a request too long for a key is first set as that XCom's value
with ``SetXCom``), and the supervisor forwards it to the execution API with the try's own execution
token; the api-server's relay (:mod:`airflow_policyzones.api.relay`) decides for the try that
token names and answers with a :class:`~airflow_policyzones.wire.RelayAnswer` (stored as the XCom's
value in the two-step form, never the request). The supervisor's HTTP client retries connection
errors and 5xx itself. An answer that is missing, malformed, an error or inconsistent with the
request raises :class:`DecisionUnavailable`, so the task fails closed with a retryable error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from airflow_policyzones.enforcement.errors import DecisionUnavailable
from airflow_policyzones.wire import (
    MAX_INLINE,
    ConnectionTypeRequest,
    ConnectionTypeResponse,
    DecisionRequest,
    DecisionResponse,
    ObservationRequest,
    OutputsRequest,
    OutputsResponse,
    RelayAnswer,
    RelayMethod,
    TaskInstanceIdentity,
    encode_inline,
)

_MAX_DETAIL = 600
_Response = TypeVar("_Response", bound=BaseModel)

_HINTS = {
    403: "The execution token was refused or names another task instance: the request must come "
    "from the try itself, through its supervisor.",
    404: "No such task instance, or an api-server without this provider version's relay.",
    409: "The task instance is at another try than this worker runs, or the try was decided on "
    "different claims.",
    422: "The api-server runs an incompatible version of airflow-policyzones.",
    503: "The api-server has no valid policy: check [policyzones] policy_file there "
    "(policyzones validate POLICY).",
}
_NO_RELAY = (
    "Check that the api-server runs the policyzones plugin (its root middlewares must be loaded: "
    "`policyzones doctor --component api-server`)."
)


class SupervisorComms(Protocol):
    """The task process's channel to its supervisor (``task_runner.SUPERVISOR_COMMS``)."""

    def send(self, msg: Any) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionClient:
    """Asks the decision service for one try; ``comms`` defaults to the task's supervisor."""

    comms: SupervisorComms | None = None

    def decide(self, request: DecisionRequest) -> DecisionResponse:
        """The verified decision for ``request``; raises :class:`DecisionUnavailable` otherwise."""
        response = self._ask(RelayMethod.DECISIONS, request, request.task, DecisionResponse)
        return verify_response(request, response=response)

    def observe(self, request: ObservationRequest) -> DecisionResponse:
        """The decision on what a running try's hooks read; raises :class:`DecisionUnavailable`."""
        return self._ask(RelayMethod.OBSERVATIONS, request, request.task, DecisionResponse)

    def record_outputs(self, request: OutputsRequest) -> OutputsResponse:
        """Report what a succeeded try wrote; raises :class:`DecisionUnavailable` if not recorded."""
        return self._ask(RelayMethod.OUTPUTS, request, request.task, OutputsResponse)

    def connection_type(self, request: ConnectionTypeRequest) -> str | None:
        """The type of the connection a SQL task names, as the api-server finds it (its credentials
        are not fetched); raises :class:`DecisionUnavailable` when the server does not answer."""
        return self._ask(RelayMethod.CONNECTION_TYPE, request, request.task, ConnectionTypeResponse).conn_type

    def _ask(
        self,
        method: RelayMethod,
        request: BaseModel,
        identity: TaskInstanceIdentity,
        response_type: type[_Response],
    ) -> _Response:
        from airflow.sdk.exceptions import AirflowRuntimeError
        from airflow.sdk.execution_time.comms import GetXCom, SetXCom

        comms = self.comms if self.comms is not None else _supervisor_comms()
        where = {
            "key": method.key,
            "dag_id": identity.dag_id,
            "run_id": identity.run_id,
            "task_id": identity.task_id,
            "map_index": identity.map_index,
        }
        inline = encode_inline(request.model_dump_json().encode())
        try:
            if len(inline) <= MAX_INLINE:  # the key carries the request: one round trip
                stored = comms.send(GetXCom(**{**where, "key": f"{method.key}.{inline}"}))
            else:
                comms.send(SetXCom(value=request.model_dump(mode="json"), **where))
                stored = comms.send(GetXCom(**where))
        except AirflowRuntimeError as error:
            raise _server_error(method, error) from error
        value = getattr(stored, "value", None)
        try:
            relayed = RelayAnswer.model_validate(value)
        except ValidationError as error:
            raise DecisionUnavailable(
                f"the execution API did not answer the {method.value} request",
                detail=f"it stored {_snippet(json.dumps(value, default=str))}",
                hint=_NO_RELAY,
            ) from error
        if relayed.status != 200 or relayed.body is None:
            raise DecisionUnavailable(
                f"the decision service answered HTTP {relayed.status}",
                detail=_snippet(relayed.detail or ""),
                hint=_HINTS.get(relayed.status, "See the api-server's log."),
            )
        try:
            return response_type.model_validate(relayed.body)
        except ValidationError as error:
            raise DecisionUnavailable(
                "the decision service sent a malformed answer",
                detail=_validation_detail(error),
                hint="Does the api-server run the same provider version?",
            ) from error


def _supervisor_comms() -> SupervisorComms:
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None:
        raise DecisionUnavailable(
            "this process has no task supervisor to ask through",
            hint="Tasks are checked when they run under Airflow's task runner (a worker, or "
            "`airflow dags test`).",
        )
    return comms  # type: ignore[no-any-return]


def _server_error(method: RelayMethod, error: Exception) -> DecisionUnavailable:
    """What the supervisor reported for a request the execution API refused."""
    detail: Any = getattr(getattr(error, "error", None), "detail", None) or str(error)
    status = detail.get("status_code") if isinstance(detail, dict) else None
    return DecisionUnavailable(
        f"the execution API refused the {method.value} request"
        + (f" with HTTP {status}" if status is not None else ""),
        detail=_snippet(json.dumps(detail, default=str) if not isinstance(detail, str) else detail),
        hint=_HINTS.get(status, _NO_RELAY) if isinstance(status, int) else _NO_RELAY,
    )


def verify_response(request: DecisionRequest, *, response: DecisionResponse) -> DecisionResponse:
    """Reject an answer that cannot be about ``request`` or contradicts itself.

    A decision is trusted only if it is internally consistent (``allowed`` is false exactly
    for a deny, a deny names at least one finding, a policy version is given), is about the zone
    the worker asked for, and, when the server echoes the task-instance try, about this try.
    """
    problems: list[str] = []
    if response.allowed != (response.outcome != "deny"):
        problems.append(f"allowed={response.allowed} contradicts outcome={response.outcome!r}")
    if response.outcome == "deny" and not response.findings:
        problems.append("a deny without findings")
    if response.outcome in ("dry_run", "exempted") and not response.findings:
        problems.append(f"outcome {response.outcome!r} without findings")
    if not response.policy_version:
        problems.append("no policy version")
    if request.zone is not None and response.zone != request.zone:
        problems.append(f"the answer is for zone {response.zone!r}, the request named {request.zone!r}")
    echoed: Any = getattr(response, "task", None)
    if echoed is not None and echoed != request.task:
        problems.append(f"the answer is for task-instance try {echoed}, the request named {request.task}")
    if problems:
        raise DecisionUnavailable("the decision does not match the request", detail="; ".join(problems))
    return response


def _validation_detail(error: ValidationError) -> str:
    errors = error.errors()
    where = ".".join(str(part) for part in errors[0]["loc"]) if errors else ""
    message = errors[0]["msg"] if errors else str(error)
    return f"{error.error_count()} problem(s), first at {where or 'body'}: {message}"


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
