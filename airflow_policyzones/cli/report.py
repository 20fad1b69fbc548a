"""Renderers for the CLI: plain text for people, JSON for scripts (SARIF 2.1.0 for CI annotations
is in :mod:`airflow_policyzones.cli.sarif`).

Every renderer is a pure function of the typed results (:mod:`airflow_policyzones.cli.check`,
:class:`~airflow_policyzones.policy.engine.Decision`), so the three formats cannot disagree.

JSON of ``policyzones check`` (``"format_version": 1``; fields are only ever added)::

    {
      "format": "policyzones-check", "format_version": 1,
      "tool": {"name": "policyzones", "version": "0.1.0"},
      "policy": {"file": str, "name": str, "version": "sha256:…", "short_version": str,
                 "warnings": [str]},             # PolicyIssue.format() of each warning
      "dag_folder": str,                      # absolute
      "ok": bool, "exit_code": 0 | 1,
      "summary": {"files", "dags", "tasks", "allow", "deny", "dry_run", "exempted",
                  "not_checked", "dag_problems", "import_errors": int},
      "tasks": [{
        "dag_id": str, "task_id": str, "file": str, "line": int,   # file relative to dag_folder
        "mapped": bool,
        "zone": str | null,                   # the zone the task runs in
        "zone_origin": "task" | "group" | "dag" | "default" | "none" | "error",
        "outcome": "allow" | "deny" | "dry_run" | "exempted" | null,   # null: not checked
        "inputs": [{"input": str, "namespace": "asset" | "table",
                    "labels": {…} | null,      # effective: catalog and propagated
                    "propagated": {…} | null}],  # what writers in the folder make it carry
        "outputs": [{"output": str, "namespace": "asset"}],   # Asset outlets
        "reclassifier": str | null,           # the policy reclassifier this task is
        "uncheckable": [str],
        "decision": Decision.to_dict() | null, # each finding also has "paths": [FlowPath.to_dict()]
        "error": str | null                   # why the task was not checked
      }],                                     # sorted by file, dag_id, task_id
      "dag_problems": [{"dag_id", "file", "line", "message", "tasks": [str]}],
      "import_errors": [{"file", "line", "message", "detail"}],
      "flow_warnings": [FlowWarning.to_dict()]  # assets written in several zones, ...
    }

A finding's ``paths`` say where each offending label fact of its input comes from, source first:
``{"rule", "fact", "path": "a (catalog) → b (zone: dag.task) → dag.task reads b", "steps": [
{"asset", "namespace", "kind", "task", "zone"}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_policyzones import __version__
from airflow_policyzones.cli.check import CheckedInput, CheckResult, TaskResult
from airflow_policyzones.policy.engine import (
    AssetLabels,
    Decision,
    Finding,
    InputRef,
    PolicyEngine,
    TaskContext,
)
from airflow_policyzones.policy.flow_models import FlowFinding, FlowPath
from airflow_policyzones.policy.loader import LoadedPolicy
from airflow_policyzones.policy.vocabulary import Outcome

TOOL_NAME = "policyzones"
JSON_FORMAT_VERSION = 1


IMPORT_ERROR_RULE = "dag_import_error"
ZONE_ANNOTATION_RULE = "zone_annotation_error"
_ORIGIN_LABELS = {
    "task": "task",
    "group": "group",
    "dag": "dag tag",
    "default": "default",
    "none": "none",
    "error": "error",
}


# --- validate -----------------------------------------------------------------------------------


def render_validate(loaded: LoadedPolicy) -> str:
    """The one-paragraph summary of a valid policy, then its warnings."""
    policy = loaded.policy
    name = f" {policy.name!r}" if policy.name else ""
    parts = [
        _plural(len(policy.zones), "zone"),
        _plural(len(policy.categories), "category", "categories"),
        _plural(len(policy.catalog), "catalog entry", "catalog entries"),
        _plural(len(policy.flows), "flow"),
        _plural(len(policy.reclassifiers), "reclassifier"),
        _plural(len(policy.exemptions), "exemption"),
    ]
    text = (
        f"{loaded.source}: policy{name} is valid (version {loaded.short_version}): "
        f"{', '.join(parts[:-1])} and {parts[-1]}"
    )
    if loaded.warnings:
        text += f"; {_plural(len(loaded.warnings), 'warning')}:"
        return "\n".join([text, *(issue.format() for issue in loaded.warnings)]) + "\n"
    return text + ".\n"


# --- explain ------------------------------------------------------------------------------------


def explain_json(
    *, engine: PolicyEngine, task: TaskContext, decision: Decision, inputs: Sequence[InputRef]
) -> dict[str, Any]:
    """``Decision.to_dict()`` plus the task that asked and the labels of each input."""
    data = decision.to_dict()
    data["task"] = {
        "dag_id": task.dag_id,
        "task_id": task.task_id,
        "dag_file": task.dag_file,
        "tags": sorted(task.tags),
        "owners": sorted(task.owners),
    }
    data["inputs"] = [_input_dict(CheckedInput(ref, engine.labels_for(ref))) for ref in inputs]
    return data


def render_explain(
    *, engine: PolicyEngine, task: TaskContext, decision: Decision, inputs: Sequence[InputRef]
) -> str:
    """The decision for people: outcome and context first, then each input's labels, then why."""
    zone_spec = engine.policy.zones.get(decision.zone) if decision.zone is not None else None
    zone_text = decision.zone or "(none)"
    if zone_spec is not None:
        zone_text += f" (purpose {zone_spec.purpose})"
    elif decision.zone is not None:
        zone_text += " (not defined in the policy)"
    identity = f"{task.dag_id}.{task.task_id}"
    extras = [f"file {task.dag_file}"] if task.dag_file else []
    if task.tags:
        extras.append("tags " + ", ".join(sorted(task.tags)))
    if task.owners:
        extras.append("owners " + ", ".join(sorted(task.owners)))
    if extras:
        identity += f" ({'; '.join(extras)})"
    lines = [
        f"outcome: {_outcome_text(decision.outcome)}",
        f"zone:    {zone_text}",
        f"mode:    {decision.mode or '-'}",
        f"policy:  {engine.loaded.source} (version {engine.loaded.short_version})",
        f"task:    {identity}",
        "",
    ]
    if inputs:
        lines.append("inputs:")
        for ref in inputs:
            lines.append(f"  {ref}")
            lines.append(f"    {_labels_text(engine.labels_for(ref))}")
    else:
        lines.append("inputs: none")
    lines.append("")
    if decision.findings:
        lines.append("findings:")
        for number, finding in enumerate(decision.findings, start=1):
            lines.extend(_finding_lines(finding, prefix=f"  {number}. "))
    else:
        lines.append("findings: none: the zone may read every input")
    return "\n".join(lines) + "\n"


# --- check: text --------------------------------------------------------------------------------


def render_text(result: CheckResult) -> str:
    """A summary table, the details of every non-allow decision, problems, and the counts line."""
    loaded = result.engine.loaded
    counts = result.counts
    name = f" {loaded.policy.name!r}" if loaded.policy.name else ""
    out = [
        f"policyzones check: {_plural(counts.files, 'DAG file')} in {result.dag_folder}, "
        f"policy{name} {loaded.short_version} ({loaded.source})",
        "",
    ]
    if result.tasks:
        rows = [
            (
                task.dag_id,
                task.task_id + (" [mapped]" if task.mapped else ""),
                _zone_cell(task),
                _outcome_text(task.outcome) if task.outcome is not None else "ERROR",
                ", ".join(_rule_ids(task)) or "-",
            )
            for task in result.tasks
        ]
        out.extend(_table(("DAG", "TASK", "ZONE", "OUTCOME", "RULES"), rows))
    else:
        out.append("no tasks found")

    flagged = [
        task for task in result.tasks if task.decision is not None and task.outcome is not Outcome.ALLOW
    ]
    if flagged:
        out.extend(["", "Decisions that are not 'allow':"])
        for task in flagged:
            decision = task.decision
            assert decision is not None
            mode = f", mode {decision.mode}" if decision.mode else ""
            out.append("")
            out.append(
                f"{_outcome_text(task.outcome)}  {task.key}  (zone {task.zone or '-'}{mode})  "
                f"{task.file}:{task.line}"
            )
            for position, finding in enumerate(decision.findings):
                out.extend(_finding_lines(finding, prefix="  - "))
                out.extend(_path_lines(flow_paths(task, position), indent="    "))
    if result.flow_warnings:
        locations = task_locations(result)
        out.extend(["", "Flow warnings (the check does not fail on them):"])
        for warning in result.flow_warnings:
            out.append(f"  {warning.kind}  {warning.message}")
            out.append(f"    fix: {warning.remediation}")
            for name in warning.tasks:
                file, line = locations.get(name, ("?", 1))
                out.append(f"    {name}  {file}:{line}")
    if result.dag_problems:
        out.extend(["", "DAG problems (the task was not checked):"])
        for problem in result.dag_problems:
            out.append(f"  {problem.file}:{problem.line}  {problem.message}")
            out.append(f"    DAG {problem.dag_id}, tasks not checked: {', '.join(problem.tasks)}")
    if result.import_errors:
        out.extend(["", "DAG import errors (no task in these files was checked):"])
        for failure in result.import_errors:
            out.append(f"  {failure.file}:{failure.line}  {failure.message}")
            out.extend(f"    | {line}" for line in failure.detail.splitlines())
    out.extend(["", summary_line(result)])
    return "\n".join(out) + "\n"


def summary_line(result: CheckResult) -> str:
    """The final counts line (also printed to stderr when the report goes to a file)."""
    counts = result.counts
    text = (
        f"{_plural(counts.tasks, 'task')}: {counts.allowed} allowed, {counts.denied} denied, "
        f"{counts.dry_run} dry-run, {counts.exempted} exempted"
    )
    if counts.not_checked:
        text += f", {counts.not_checked} not checked"
    text += f"; {_plural(counts.import_errors, 'import error')}"
    if counts.dag_problems:
        text += f", {_plural(counts.dag_problems, 'DAG problem')}"
    if counts.flow_warnings:
        text += f", {_plural(counts.flow_warnings, 'flow warning')}"
    return text + (" -> FAILED" if result.failed else " -> OK")


# --- check: JSON --------------------------------------------------------------------------------


def check_json(result: CheckResult) -> dict[str, Any]:
    """The documented, stable JSON structure (see the module docstring)."""
    loaded = result.engine.loaded
    counts = result.counts
    return {
        "format": "policyzones-check",
        "format_version": JSON_FORMAT_VERSION,
        "tool": {"name": TOOL_NAME, "version": __version__},
        "policy": {
            "file": loaded.source,
            "name": loaded.policy.name,
            "version": loaded.version,
            "short_version": loaded.short_version,
            "warnings": [issue.format() for issue in loaded.warnings],
        },
        "dag_folder": str(result.dag_folder),
        "ok": not result.failed,
        "exit_code": result.exit_code,
        "summary": {
            "files": counts.files,
            "dags": counts.dags,
            "tasks": counts.tasks,
            Outcome.ALLOW.value: counts.allowed,
            Outcome.DENY.value: counts.denied,
            Outcome.DRY_RUN.value: counts.dry_run,
            Outcome.EXEMPTED.value: counts.exempted,
            "not_checked": counts.not_checked,
            "dag_problems": counts.dag_problems,
            "import_errors": counts.import_errors,
            "flow_warnings": counts.flow_warnings,
        },
        "tasks": [_task_dict(task) for task in result.tasks],
        "dag_problems": [
            {
                "dag_id": problem.dag_id,
                "file": problem.file,
                "line": problem.line,
                "message": problem.message,
                "tasks": list(problem.tasks),
            }
            for problem in result.dag_problems
        ],
        "import_errors": [
            {"file": failure.file, "line": failure.line, "message": failure.message, "detail": failure.detail}
            for failure in result.import_errors
        ],
        "flow_warnings": [warning.to_dict() for warning in result.flow_warnings],
    }


def _task_dict(task: TaskResult) -> dict[str, Any]:
    decision: dict[str, Any] | None = None
    if task.decision is not None:
        decision = task.decision.to_dict()
        for position, finding in enumerate(decision["findings"]):
            finding["paths"] = [path.to_dict() for path in flow_paths(task, position, only_propagated=False)]
    return {
        "dag_id": task.dag_id,
        "task_id": task.task_id,
        "file": task.file,
        "line": task.line,
        "mapped": task.mapped,
        "zone": task.zone,
        "zone_origin": task.zone_origin,
        "outcome": task.outcome.value if task.outcome is not None else None,
        "inputs": [
            _input_dict(item)
            | {"propagated": item.propagated.to_dict() if item.propagated is not None else None}
            for item in task.inputs
        ],
        "outputs": [{"output": ref.name, "namespace": ref.namespace} for ref in task.outputs],
        "reclassifier": task.reclassifier,
        "uncheckable": list(task.uncheckable),
        "decision": decision,
        "error": task.error,
    }


def _input_dict(item: CheckedInput) -> dict[str, Any]:
    return {
        "input": item.ref.name,
        "namespace": item.ref.namespace,
        "labels": item.labels.to_dict() if item.labels is not None else None,
    }


def dumps(data: dict[str, Any]) -> str:
    """JSON as every renderer writes it: indented, key order kept, non-ASCII kept, final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --- helpers ------------------------------------------------------------------------------------


def _outcome_text(outcome: Outcome | None) -> str:
    if outcome is None:
        return "ERROR"
    return {
        Outcome.ALLOW: "allow",
        Outcome.DENY: "DENY",
        Outcome.DRY_RUN: "dry-run",
        Outcome.EXEMPTED: "exempted",
    }[outcome]


def _zone_cell(task: TaskResult) -> str:
    if task.zone_origin == "error":
        return "? (annotation error)"
    return f"{task.zone or '-'} ({_ORIGIN_LABELS[task.zone_origin]})"


def _rule_ids(task: TaskResult) -> list[str]:
    if task.decision is None:
        return [ZONE_ANNOTATION_RULE]
    ids: list[str] = []
    for finding in task.decision.findings:
        for rule in finding.rules:
            if rule.value not in ids:
                ids.append(rule.value)
    return ids


def flow_paths(task: TaskResult, position: int, *, only_propagated: bool = True) -> tuple[FlowPath, ...]:
    """The paths of the task's ``position``-th finding; by default only those propagation made
    (a fact straight from the catalog needs no path: the reason names the input)."""
    if position >= len(task.flows):
        return ()
    flow: FlowFinding = task.flows[position]
    paths = flow.paths
    if not only_propagated:
        return paths
    return tuple(path for path in paths if len(path.steps) > 1 or path.steps[0].kind != "catalog")


TEXT_PATHS_PER_FINDING = 5
"""Paths printed per finding in the text report (data mixed from many sources has many)."""


def _path_lines(paths: Sequence[FlowPath], *, indent: str) -> list[str]:
    """Each path as indented lines, source first, one asset per line."""
    lines: list[str] = []
    for path in paths[:TEXT_PATHS_PER_FINDING]:
        lines.append(f"{indent}path of {path.fact}:")
        hops = str(path).split(" → ")
        lines.append(f"{indent}    {hops[0]}")
        lines.extend(f"{indent}  → {hop}" for hop in hops[1:])
    if len(paths) > TEXT_PATHS_PER_FINDING:
        more = len(paths) - TEXT_PATHS_PER_FINDING
        lines.append(
            f"{indent}... and {more} more path{'s' if more != 1 else ''} (--format json lists every one)"
        )
    return lines


def task_locations(result: CheckResult) -> dict[str, tuple[str, int]]:
    """``dag_id.task_id`` → (file, line), for the writers named on paths and in warnings."""
    return {task.key: (task.file, task.line) for task in result.tasks}


def _finding_lines(finding: Finding, *, prefix: str) -> list[str]:
    indent = " " * len(prefix)
    subject = f" on {finding.input}" if finding.input is not None else ""
    lines = [
        f"{prefix}{', '.join(rule.value for rule in finding.rules)}{subject}",
        f"{indent}reason: {finding.reason}",
        f"{indent}fix:    {finding.remediation}",
    ]
    if finding.exemption is not None:
        lines.append(f"{indent}exempted by {finding.exemption}")
    return lines


def _labels_text(labels: AssetLabels | None) -> str:
    if labels is None:
        return "no labels (no catalog entry matches)"
    parts = [
        "categories: " + (", ".join(sorted(labels.categories)) or "-"),
        "consented: " + (", ".join(sorted(labels.consented)) or "-"),
        "aggregated: " + ("yes" if labels.aggregated else "no"),
    ]
    if labels.origins:
        parts.append("origin zones: " + ", ".join(sorted(labels.origins)))
    if labels.reclassified_by:
        parts.append("reclassified by: " + ", ".join(sorted(labels.reclassified_by)))
    return "; ".join(parts)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    materialized = [list(row) for row in rows]
    widths = [
        max([len(header), *(len(row[column]) for row in materialized)])
        for column, header in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), line(["-" * width for width in widths]), *(line(row) for row in materialized)]


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"
