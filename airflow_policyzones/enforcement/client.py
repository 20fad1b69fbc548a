"""The worker's HTTP client for the decision service on the api-server.

One POST per task-instance try: the request is the wire schema (:class:`DecisionRequest`), the
worker authenticates with a short-lived JWT bound to that try, and the answer must validate
against :class:`DecisionResponse` and agree with the request before the hook acts on it.
Connection errors, timeouts and 5xx answers are retried a bounded number of times with
exponential backoff; anything that still does not yield a valid decision raises
:class:`DecisionUnavailable`, so the task fails closed with a retryable error.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from airflow_policyzones import __version__
from airflow_policyzones.api.schema import (
    CONNECTION_TYPE_PATH,
    DECISIONS_PATH,
    OBSERVATIONS_PATH,
    OUTPUTS_PATH,
    ConnectionTypeRequest,
    ConnectionTypeResponse,
    DecisionRequest,
    DecisionResponse,
    ObservationRequest,
    OutputsRequest,
    OutputsResponse,
    TaskInstanceIdentity,
)
from airflow_policyzones.enforcement.errors import DecisionUnavailable
from airflow_policyzones.enforcement.settings import EnforcementSettings

log = logging.getLogger(__name__)

_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_MAX_DETAIL = 600


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionClient:
    """Calls ``POST {api_url}{DECISIONS_PATH}``; one instance may serve many requests."""

    api_url: str
    timeout: float
    retries: int
    token_valid_for: float
    backoff: float = 0.2
    """First retry delay in seconds; doubled per retry, with jitter."""
    max_backoff: float = 2.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, settings: EnforcementSettings) -> DecisionClient:
        return cls(
            api_url=settings.api_url,
            timeout=settings.request_timeout,
            retries=settings.request_retries,
            token_valid_for=float(settings.token_valid_for),
        )

    @property
    def url(self) -> str:
        return self.api_url.rstrip("/") + DECISIONS_PATH

    def decide(self, request: DecisionRequest) -> DecisionResponse:
        """The verified decision for ``request``; raises :class:`DecisionUnavailable` otherwise."""
        response = self._post(DECISIONS_PATH, body=request.model_dump_json().encode(), identity=request.task)
        return verify_response(request, response=_parse(response))

    def observe(self, request: ObservationRequest) -> DecisionResponse:
        """The decision on what a running try's hooks read; raises :class:`DecisionUnavailable`."""
        response = self._post(
            OBSERVATIONS_PATH, body=request.model_dump_json().encode(), identity=request.task
        )
        return _parse(response)

    def record_outputs(self, request: OutputsRequest) -> OutputsResponse:
        """Report what a succeeded try wrote; raises :class:`DecisionUnavailable` if not recorded."""
        response = self._post(OUTPUTS_PATH, body=request.model_dump_json().encode(), identity=request.task)
        try:
            return OutputsResponse.model_validate_json(response.content)
        except ValidationError as error:
            raise DecisionUnavailable(
                "the decision service answered the outputs report with something else",
                detail=_snippet(response.text),
            ) from error

    def connection_type(self, request: ConnectionTypeRequest) -> str | None:
        """The type of the connection a SQL task names, as the api-server finds it (its credentials
        are not fetched); raises :class:`DecisionUnavailable` when the server does not answer."""
        response = self._post(
            CONNECTION_TYPE_PATH, body=request.model_dump_json().encode(), identity=request.task
        )
        try:
            return ConnectionTypeResponse.model_validate_json(response.content).conn_type
        except ValidationError as error:
            raise DecisionUnavailable(
                "the decision service answered the connection-type request with something else",
                detail=_snippet(response.text),
            ) from error

    def _post(self, path: str, *, body: bytes, identity: TaskInstanceIdentity) -> httpx.Response:
        """POST with a fresh worker token per attempt, retrying what may pass; 200 or raise."""
        url = self.api_url.rstrip("/") + path
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"airflow-policyzones/{__version__}",
        }
        attempts = self.retries + 1
        # trust_env=False: proxy and CA settings from the environment are ignored, since a DAG
        # file can set os.environ on the worker and must not be able to route the check elsewhere.
        # verify only for https: building the CA context costs ~15 ms per task process otherwise.
        verify = url.startswith("https://")
        with httpx.Client(
            timeout=self.timeout, trust_env=False, follow_redirects=False, verify=verify
        ) as client:
            for attempt in range(1, attempts + 1):
                # A fresh short-lived token per attempt: retries can outlast token_valid_for.
                headers["Authorization"] = f"Bearer {self._token(identity, path)}"
                try:
                    response = client.post(url, content=body, headers=headers)
                except _RETRYABLE_ERRORS as error:
                    cause = _describe_error(error, url, self.timeout)
                    if attempt < attempts:
                        self._wait(attempt, cause, retry_after=None)
                        continue
                    raise DecisionUnavailable(
                        f"{cause}, {_attempts(attempts)}",
                        hint="Check that the Airflow api-server is running with the policyzones plugin "
                        f"and that [policyzones] api_url ({self.api_url}) is its address as workers "
                        "reach it.",
                    ) from error
                except httpx.HTTPError as error:  # e.g. an unsupported URL scheme: retrying cannot help
                    raise DecisionUnavailable(
                        f"request to {url} failed: {type(error).__name__}: {error}",
                        hint="Check [policyzones] api_url.",
                    ) from error
                if response.status_code >= 500 or response.status_code == 429:
                    if attempt < attempts:
                        self._wait(
                            attempt, f"HTTP {response.status_code}", retry_after=_retry_after(response)
                        )
                        continue
                    raise _status_error(response, attempts)
                if response.status_code != 200:
                    raise _status_error(response, attempt)
                return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _token(self, identity: TaskInstanceIdentity, path: str) -> str:
        from airflow_policyzones.api.tokens import sign_worker_token

        try:
            return sign_worker_token(identity=identity, valid_for=self.token_valid_for, method=path)
        except Exception as error:
            raise DecisionUnavailable(
                "cannot sign the worker token", detail=f"{type(error).__name__}: {error}"
            ) from error

    def _wait(self, attempt: int, cause: str, *, retry_after: float | None) -> None:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if retry_after is not None:
            delay = min(max(delay, retry_after), self.max_backoff)
        log.warning(
            "policyzones: decision request %d/%d failed (%s); retrying in %.2f s",
            attempt,
            self.retries + 1,
            cause,
            delay,
        )
        self.sleep(delay)


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


def _parse(response: httpx.Response) -> DecisionResponse:
    try:
        return DecisionResponse.model_validate_json(response.content)
    except ValidationError as error:
        errors = error.errors()
        where = ".".join(str(part) for part in errors[0]["loc"]) if errors else ""
        message = errors[0]["msg"] if errors else str(error)
        raise DecisionUnavailable(
            "the decision service sent a malformed answer",
            detail=f"{error.error_count()} problem(s), first at {where or 'body'}: {message}; "
            f"body starts {_snippet(response.text)!r}",
            hint="Is [policyzones] api_url the api-server, and does it run the same provider version?",
        ) from error


def _status_error(response: httpx.Response, attempts: int) -> DecisionUnavailable:
    status = response.status_code
    detail = _detail(response)
    hints = {
        401: "The worker sent no usable token: check [api_auth] jwt_secret on the worker.",
        403: "The token was refused: workers and the api-server must share [api_auth] jwt_secret, "
        "and their clocks must agree.",
        404: "No decision endpoint or no such task instance: check that the api-server runs the "
        "policyzones plugin and that [policyzones] api_url points to it.",
        409: "The task instance is at another try than this worker runs.",
        422: "The api-server runs an incompatible version of airflow-policyzones.",
        503: "The api-server has no valid policy: check [policyzones] policy_file there "
        "(policyzones validate POLICY).",
    }
    tried = f", {_attempts(attempts)}" if attempts > 1 else ""
    return DecisionUnavailable(
        f"the decision service answered HTTP {status}{tried}",
        detail=detail,
        hint=hints.get(status, "" if status < 500 else "See the api-server's log."),
    )


def _detail(response: httpx.Response) -> str:
    """FastAPI's ``detail`` when there is one, else the start of the body."""
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _snippet(response.text)
    if isinstance(payload, dict) and "detail" in payload:
        detail = payload["detail"]
        return _snippet(detail if isinstance(detail, str) else json.dumps(detail))
    return _snippet(response.text)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _describe_error(error: httpx.HTTPError, url: str, timeout: float) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"no answer from {url} within {timeout:g} s ({type(error).__name__})"
    if isinstance(error, httpx.ConnectError):
        return f"the decision service at {url} is unreachable ({error or type(error).__name__})"
    return f"the connection to {url} failed ({type(error).__name__}: {error})"


def _attempts(count: int) -> str:
    return f"after {count} attempt{'s' if count != 1 else ''}"
