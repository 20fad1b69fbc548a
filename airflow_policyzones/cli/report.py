"""Renderers for the CLI: plain text for people, JSON for scripts, SARIF 2.1.0 for CI annotations.

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

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
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
from airflow_policyzones.policy.flows import FlowFinding, FlowPath, FlowWarning
from airflow_policyzones.policy.loader import LoadedPolicy
from airflow_policyzones.policy.vocabulary import RULE_DESCRIPTIONS, Outcome

TOOL_NAME = "policyzones"
JSON_FORMAT_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_BASE_ID = "%SRCROOT%"


IMPORT_ERROR_RULE = "dag_import_error"
ZONE_ANNOTATION_RULE = "zone_annotation_error"
FLOW_WARNING_RULES: dict[str, tuple[str, str]] = {
    "written_by_several_zones": (
        "An asset is written by tasks in several zones.",
        "The asset carries the union of what each zone writes, so every reader must be allowed to read "
        "all of it; write one asset per zone.",
    ),
    "reclassifier_outside_zone": (
        "A reclassifier task runs outside the zone the policy gives it.",
        "Its outputs keep the labels of its inputs instead of the labels the policy declares.",
    ),
}
"""Flow analysis warnings (:class:`~airflow_policyzones.policy.flows.FlowWarning` kinds): SARIF
results of level ``warning`` that do not fail the check."""
EXTRA_RULES: dict[str, tuple[str, str]] = {
    IMPORT_ERROR_RULE: (
        "The DAG file failed to import.",
        "Airflow could not import the file, so none of its tasks could be checked.",
    ),
    ZONE_ANNOTATION_RULE: (
        "A zone annotation in the DAG is malformed.",
        "For example two different policyzone: tags on one DAG; the DAG fails to import once the "
        "cluster policy is installed.",
    ),
    **FLOW_WARNING_RULES,
}

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
                out.extend(_path_lines(_flow_paths(task, position), indent="    "))
    if result.flow_warnings:
        locations = _task_locations(result)
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
            finding["paths"] = [path.to_dict() for path in _flow_paths(task, position, only_propagated=False)]
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


# --- check: SARIF -------------------------------------------------------------------------------


def check_sarif(result: CheckResult) -> dict[str, Any]:
    """SARIF 2.1.0: one rule per engine rule, one result per violation and per import/zone error.

    Locations are relative to the working directory when the DAG folder lies inside it (CI runs
    from the repository root, and code-scanning services match files by their path from there),
    else to the DAG folder; ``originalUriBaseIds`` says which. Exempted findings are not
    violations and produce no result.
    """
    root, uri_prefix = _sarif_root(result.dag_folder)

    def _location(
        file: str, line: int, *, logical: str | None = None, kind: str = "function"
    ) -> dict[str, Any]:
        return _sarif_location(uri_prefix + file, line, logical=logical, kind=kind)

    rule_ids = [*RULE_DESCRIPTIONS, *EXTRA_RULES]
    index = {rule_id: position for position, rule_id in enumerate(rule_ids)}
    descriptions = {**RULE_DESCRIPTIONS, **EXTRA_RULES}
    locations = _task_locations(result)
    rules = [
        {
            "id": rule_id,
            "name": _camel(rule_id),
            "shortDescription": {"text": descriptions[rule_id][0]},
            "fullDescription": {"text": descriptions[rule_id][1]},
            "defaultConfiguration": {"level": "warning" if rule_id in FLOW_WARNING_RULES else "error"},
            "properties": {"tags": ["policyzones", "purpose-limitation"]},
        }
        for rule_id in rule_ids
    ]
    results: list[dict[str, Any]] = []
    for task in result.tasks:
        decision = task.decision
        if decision is None or decision.outcome not in (Outcome.DENY, Outcome.DRY_RUN):
            continue
        level = "warning" if decision.outcome is Outcome.DRY_RUN else "error"
        for position, finding in enumerate(decision.findings):
            if finding.exempted:
                continue
            rule_id = finding.rule.value
            prefix = "[dry run: the task runs, the violation is recorded] " if level == "warning" else ""
            paths = _flow_paths(task, position)
            via = "".join(f" Path of {path.fact}: {path}." for path in paths)
            sarif_result: dict[str, Any] = {
                "ruleId": rule_id,
                "ruleIndex": index[rule_id],
                "level": level,
                "message": {
                    "text": f"{prefix}{task.key} (zone {decision.zone}): {finding.reason}. "
                    f"Fix: {finding.remediation}.{via}"
                },
                "locations": [_location(task.file, task.line, logical=task.key, kind="function")],
            }
            if paths:
                sarif_result.update(_sarif_flows(task, paths, locations, _location))
            results.append(
                sarif_result
                | {
                    "partialFingerprints": {
                        "policyzones/v1": _fingerprint(
                            task.dag_id, task.task_id, rule_id, finding.input or ""
                        )
                    },
                    "properties": {
                        "dag_id": task.dag_id,
                        "task_id": task.task_id,
                        "zone": decision.zone,
                        "mode": decision.mode,
                        "outcome": decision.outcome.value,
                        "input": finding.input,
                        "rules": [rule.value for rule in finding.rules],
                        "remediation": finding.remediation,
                        "policy_version": decision.policy_version,
                        "paths": [str(path) for path in paths],
                    },
                }
            )
    for problem in result.dag_problems:
        results.append(
            {
                "ruleId": ZONE_ANNOTATION_RULE,
                "ruleIndex": index[ZONE_ANNOTATION_RULE],
                "level": "error",
                "message": {"text": problem.message},
                "locations": [_location(problem.file, problem.line, logical=problem.dag_id, kind="module")],
                "partialFingerprints": {"policyzones/v1": _fingerprint(problem.dag_id, ZONE_ANNOTATION_RULE)},
                "properties": {"dag_id": problem.dag_id, "tasks": list(problem.tasks)},
            }
        )
    for warning in result.flow_warnings:
        results.append(_sarif_warning(warning, index[warning.kind], locations, _location))
    for failure in result.import_errors:
        results.append(
            {
                "ruleId": IMPORT_ERROR_RULE,
                "ruleIndex": index[IMPORT_ERROR_RULE],
                "level": "error",
                "message": {"text": f"{failure.file} failed to import: {failure.message}"},
                "locations": [_location(failure.file, failure.line)],
                "partialFingerprints": {"policyzones/v1": _fingerprint(failure.file, IMPORT_ERROR_RULE)},
                "properties": {"detail": failure.detail},
            }
        )
    loaded = result.engine.loaded
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": TOOL_NAME, "version": __version__, "rules": rules}},
                "originalUriBaseIds": {SARIF_BASE_ID: {"uri": root.as_uri() + "/"}},
                "invocations": [{"executionSuccessful": True, "exitCode": result.exit_code}],
                "results": results,
                "properties": {
                    "policy": {"file": loaded.source, "version": loaded.version},
                    "summary": check_json(result)["summary"],
                },
            }
        ],
    }


_Locate = Callable[..., dict[str, Any]]


def _sarif_flows(
    task: TaskResult, paths: Sequence[FlowPath], locations: Mapping[str, tuple[str, int]], locate: _Locate
) -> dict[str, Any]:
    """``relatedLocations`` (each writing task on the paths, once) and one ``codeFlow`` per path."""
    related: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    flows: list[dict[str, Any]] = []
    for path in paths:
        steps: list[dict[str, Any]] = []
        for step in path.steps:
            text = f"{step.asset} ({step.kind}" + (f": {step.task}, zone {step.zone})" if step.task else ")")
            if step.task is not None and step.task in locations:
                file, line = locations[step.task]
                location = locate(file, line, logical=step.task, kind="function")
                if step.task not in seen:
                    seen[step.task] = len(related)
                    related.append(
                        location
                        | {"id": len(related), "message": {"text": f"{step.task} writes {step.asset}"}}
                    )
            else:
                location = {}
            steps.append({"location": location | {"message": {"text": text}}})
        reader = locate(task.file, task.line, logical=task.key, kind="function")
        steps.append(
            {"location": reader | {"message": {"text": f"{path.reader} reads {path.steps[-1].asset}"}}}
        )
        flows.append(
            {"message": {"text": f"{path.rule.value}: {path.fact}"}, "threadFlows": [{"locations": steps}]}
        )
    found: dict[str, Any] = {"codeFlows": flows}
    if related:
        found["relatedLocations"] = related
    return found


def _sarif_warning(
    warning: FlowWarning, rule_index: int, locations: Mapping[str, tuple[str, int]], locate: _Locate
) -> dict[str, Any]:
    placed = [
        locate(*locations[name], logical=name, kind="function") for name in warning.tasks if name in locations
    ]
    found: dict[str, Any] = {
        "ruleId": warning.kind,
        "ruleIndex": rule_index,
        "level": "warning",
        "message": {"text": f"{warning.message}. Fix: {warning.remediation}."},
        "locations": placed[:1],
        "partialFingerprints": {
            "policyzones/v1": _fingerprint(
                warning.kind, warning.asset.name if warning.asset is not None else "", *warning.tasks
            )
        },
        "properties": warning.to_dict(),
    }
    if len(placed) > 1:
        found["relatedLocations"] = [
            location | {"id": number, "message": {"text": name}}
            for number, (location, name) in enumerate(zip(placed[1:], warning.tasks[1:], strict=False))
        ]
    return found


def _sarif_root(dag_folder: Path) -> tuple[Path, str]:
    """The SARIF base directory, and the prefix that turns DAG-folder paths into paths from it."""
    cwd = Path.cwd().resolve()
    try:
        relative = dag_folder.resolve().relative_to(cwd).as_posix()
    except ValueError:
        return dag_folder.resolve(), ""
    return cwd, "" if relative == "." else relative + "/"


def _sarif_location(
    file: str, line: int, *, logical: str | None = None, kind: str = "function"
) -> dict[str, Any]:
    location: dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": {"uri": file, "uriBaseId": SARIF_BASE_ID},
            "region": {"startLine": max(line, 1)},
        }
    }
    if logical is not None:
        location["logicalLocations"] = [{"fullyQualifiedName": logical, "kind": kind}]
    return location


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _camel(rule_id: str) -> str:
    return "".join(part.capitalize() for part in rule_id.split("_"))


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


def _flow_paths(task: TaskResult, position: int, *, only_propagated: bool = True) -> tuple[FlowPath, ...]:
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


def _task_locations(result: CheckResult) -> dict[str, tuple[str, int]]:
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
