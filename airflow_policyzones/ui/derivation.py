"""A finding's derivation path, read back from its recorded reason, as steps a page can draw.

A finding on derived data records how the data got its labels at the end of its reason
(``<reason>; derived: <asset> (written by <dag>.<task> in <zone>) ← <asset> ... ← <source>``,
see :func:`airflow_policyzones.db.propagation.explain_derivation`). The page shows the path as it
was recorded when the decision was made, not as the lineage tables say now, so it is parsed from
the recorded text rather than recomputed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DERIVED_MARKER = "; derived: "
_ARROW = " ← "
_WRITTEN = re.compile(r"^(?P<asset>.+) \(written by (?P<writer>.+) in (?P<zone>[^()]+)\)$")
_CYCLE = " (cycle)"


@dataclass(frozen=True, slots=True)
class PathStep:
    """One asset of a derivation path and the try that wrote it (``None``: the labeled source)."""

    asset: str
    namespace: str
    writer: str | None = None
    """``dag_id.task_id`` of the task whose write gave the asset its labels."""
    zone: str | None = None
    cycle: bool = False


@dataclass(frozen=True, slots=True)
class ExplainedReason:
    """A finding's reason without its derivation path, and the path in data-flow order."""

    summary: str
    path: tuple[PathStep, ...]
    """From the labeled source to the offending input; empty when the input was not derived."""


def _step(text: str) -> PathStep:
    cycle = text.endswith(_CYCLE)
    if cycle:
        text = text.removesuffix(_CYCLE)
    writer = zone = None
    match = _WRITTEN.match(text)
    if match is not None:
        text, writer, zone = match["asset"], match["writer"], match["zone"]
    namespace = "table" if text.startswith("table ") else "asset"
    return PathStep(
        asset=text.removeprefix("table ") if namespace == "table" else text,
        namespace=namespace,
        writer=writer,
        zone=zone,
        cycle=cycle,
    )


def explain_reason(reason: str) -> ExplainedReason:
    """Split ``reason`` into its own text and its derivation path (source first)."""
    summary, marker, path = reason.partition(DERIVED_MARKER)
    if not marker or not path.strip():
        return ExplainedReason(summary=reason, path=())
    steps = [_step(part) for part in path.split(_ARROW)]
    return ExplainedReason(summary=summary, path=tuple(reversed(steps)))
