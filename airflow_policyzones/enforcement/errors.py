"""How a task fails when the pre-execute check stops it.

Three outcomes must never be confused in the task log or by the scheduler:

* :class:`ZoneViolation` - the policy denies the task: it fails at once, **no retry**;
* :class:`UncheckableTask` - the task's zone annotation is malformed: retrying cannot help, so
  it fails at once as well, with a message that says how to fix the DAG;
* :class:`DecisionUnavailable` - no trustworthy decision could be obtained (service down,
  timeout, 5xx, policy missing on the server, a malformed answer): the task fails closed with a
  **retryable** error, because the next try may well succeed.

While the body runs, a read a hook reports is refused with :class:`ObservedReadDenied` (no
retry) or, when no decision can be had, :class:`ObservationUnavailable` (retryable). Both are
``BaseException`` subclasses: the hook's own lineage error handling and DAG code's
``except Exception`` must not swallow them, or the rows would reach the task's code anyway.

A connection or variable the api-server refused to the try's zone raises
:class:`CredentialRefused`: still Airflow's "access denied" (so no other secrets backend is
asked), with the zone's reason and fix, and the try fails without retry.
"""

from __future__ import annotations

from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSecretsBackendAccessDenied,
    AirflowTaskTerminated,
)

DECISION_UNAVAILABLE_PREFIX = "policyzones: could not get a decision"


class ZoneViolation(AirflowFailException):
    """The decision denied the task; the body did not run and the task is not retried."""

    @classmethod
    def caught(cls, refusal: str) -> ZoneViolation:
        """After the body: a refusal raised while it ran (``refusal``, its message) that the task's
        code caught and went on from."""
        return cls(f"{refusal}\n  (the task's code went on after the refusal; the try fails all the same)")


class UncheckableTask(AirflowFailException):
    """The task cannot be described to the decision service (a malformed zone annotation)."""


class DecisionUnavailable(AirflowException):
    """No valid decision could be obtained: the task did not run and may be retried.

    The message always starts with ``policyzones: could not get a decision (<cause>)``.
    """

    def __init__(self, cause: str, *, detail: str = "", hint: str = "") -> None:
        self.cause = cause
        self.detail = detail
        self.hint = hint
        message = f"{DECISION_UNAVAILABLE_PREFIX} ({cause})"
        if detail:
            message += f": {detail}"
        message += ". The task did not run; it is retried if it has retries left."
        if hint:
            message += f" {hint}"
        super().__init__(message)


class ObservedReadDenied(AirflowTaskTerminated):
    """A read the task made through a hook is denied in an enforce zone: the hook call stops
    before its rows reach the task's code, and the try fails without retry (Airflow fails a
    terminated task at once)."""


class ObservationUnavailable(BaseException):
    """No decision could be had on a read the task made through a hook: the hook call stops and
    the try fails closed; it is retried if it has retries left (Airflow retries a ``BaseException``
    that is not one of its own)."""


class CredentialRefused(AirflowSecretsBackendAccessDenied, AirflowFailException):
    """The api-server refused a connection or variable to the try's zone: the hook gets no
    credentials, and the try fails without retry (even if the task's code catches this)."""
