"""SARIF 2.1.0 of ``policyzones check``, for CI annotations: one rule per engine rule (and per
import, zone-annotation and flow-warning kind), one result per violation and per problem, with the
flow paths of a finding as ``codeFlows``.

Built from the same typed results as the text and JSON reports (:mod:`airflow_policyzones.cli.report`),
so the formats cannot disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_policyzones import __version__
from airflow_policyzones.cli.check import CheckResult, TaskResult
from airflow_policyzones.cli.report import (
    IMPORT_ERROR_RULE,
    TOOL_NAME,
    ZONE_ANNOTATION_RULE,
    check_json,
    flow_paths,
    task_locations,
)
from airflow_policyzones.policy.flow_models import FlowPath, FlowWarning
from airflow_policyzones.policy.vocabulary import RULE_DESCRIPTIONS, Outcome

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_BASE_ID = "%SRCROOT%"

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
"""Flow analysis warnings (:class:`~airflow_policyzones.policy.flow_models.FlowWarning` kinds): SARIF
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
    locations = task_locations(result)
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
            paths = flow_paths(task, position)
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
