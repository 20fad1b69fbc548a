"""The error a policy that does not load raises (:class:`PolicyError`), and the located issues it
carries. (The core's other errors are about what is checked against a policy, not the policy:
``FlowError``, ``LineageError``, ``SqlParseError``.)

Every problem in a policy file is reported as a :class:`PolicyIssue` that names the file, the
line, the field path and a fix, so that users never have to read a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One located problem in a policy file."""

    message: str
    hint: str = ""
    field: str = ""
    file: str = "<policy>"
    line: int | None = None
    column: int | None = None
    severity: Severity = "error"

    @property
    def location(self) -> str:
        """``file:line:column`` as editors and CI annotators understand it."""
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"

    def format(self) -> str:
        """One human-readable line (two with the hint)."""
        where = f"{self.location}: {self.severity}"
        field = f" in {self.field}" if self.field else ""
        text = f"{where}{field}: {self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class PolicyError(Exception):
    """The policy could not be loaded: it carries every issue found, each with its location."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        if not issues:
            raise ValueError("PolicyError needs at least one issue")
        self.issues = issues
        super().__init__(self.format())

    def format(self) -> str:
        count = len(self.issues)
        head = f"policy is invalid ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([head, *(issue.format() for issue in self.issues)])
