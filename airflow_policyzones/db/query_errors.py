"""What the audit queries refuse, as domain errors: no HTTP status codes here.

The read API maps each type to its HTTP answer in one place (:mod:`airflow_policyzones.api.errors`);
the pages show the same detail inside the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class AuditQueryError(Exception):
    """Base of the errors the audit queries raise; ``detail`` is what a client is shown."""

    @property
    def detail(self) -> str | dict[str, Any]:
        """A message, or an object with one under ``msg``."""
        return str(self)


class InvalidQuery(AuditQueryError):
    """A filter, limit or cursor the query cannot answer: a malformed value, a zone or category
    the policy does not define, or filters that exclude each other."""

    def __init__(self, message: str, *, allowed: Iterable[str] | None = None) -> None:
        super().__init__(message)
        self.allowed = None if allowed is None else sorted(allowed)
        """The valid values, sorted, when the value was one of a known set."""

    @property
    def detail(self) -> dict[str, Any]:
        """``{"msg": str}``, plus ``"allowed": [str]`` when the valid values are known."""
        detail: dict[str, Any] = {"msg": str(self)}
        if self.allowed is not None:
            detail["allowed"] = self.allowed
        return detail


class NotFound(AuditQueryError):
    """No such row, or one of a DAG the user may not read (the two are not told apart)."""


class PolicyUnavailable(AuditQueryError):
    """The policy the question needs is missing or invalid."""
