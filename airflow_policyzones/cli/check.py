"""Scan a DAG folder the way Airflow parses it, and decide every task against the policy.

The scan returns typed results and prints nothing, so that the text, JSON and SARIF renderers
(:mod:`airflow_policyzones.cli.report`) all describe the same facts. It needs no Airflow server
and no metadata database: DAG files are parsed by Airflow's own ``DagBag`` (so ``.airflowignore``,
safe mode, cluster policies and import errors behave as in the dag-processor), one file at a time
so that a caller can show progress.

Decisions come from the static flow analysis (:func:`~airflow_policyzones.policy.flows.analyze_flows`)
over every task of the folder: a task's inputs (Asset inlets) and outputs (Asset outlets) join
tasks across DAGs, labels propagate from writers to readers (reclassifiers apply the labels the
policy declares), and each task is decided on its inputs' effective labels (catalog and
propagated). An input no task of the folder writes keeps its catalog labels, so a task whose
inputs are all written elsewhere is decided exactly as from the catalog alone.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from airflow_policyzones.policy.engine import (
    AssetLabels,
    Decision,
    InputRef,
    PolicyEngine,
    TaskContext,
)
from airflow_policyzones.policy.flow_models import FlowFinding, FlowWarning, TaskNode
from airflow_policyzones.policy.flows import analyze_flows
from airflow_policyzones.policy.loader import gc_paused
from airflow_policyzones.policy.vocabulary import Outcome

ZoneOrigin = Literal["task", "group", "dag", "default", "none", "error"]
"""Where a task's zone came from: its own annotation, a ZoneGroup, the DAG tag, the policy's
``settings.default_zone``, nowhere, or an annotation that could not be read."""

ProgressCallback = Callable[[int, int, str], None]
"""Called as ``(done, total, file)`` before each file is parsed, and once more with ``done == total``."""


class DagFolderError(ValueError):
    """The DAG folder cannot be scanned (missing, or not a directory): a usage error, not a finding."""


@dataclass(frozen=True, slots=True)
class CheckedInput:
    """One declared input with the effective labels the decision used (catalog and propagated)."""

    ref: InputRef
    labels: AssetLabels | None
    propagated: AssetLabels | None = None
    """What tasks of the folder that write the input make it carry (``None``: none writes it)."""


@dataclass(frozen=True, slots=True)
class TaskResult:
    """One task of one DAG: its zone, its inputs and the engine's decision.

    ``decision`` is ``None`` only when the task's zone annotation could not be read (``error``
    says why); such a DAG also has a :class:`DagProblem`.
    """

    dag_id: str
    task_id: str
    file: str
    """The DAG file, relative to the DAG folder (POSIX separators)."""
    line: int
    """Where the task is defined in ``file`` (best effort; 1 when it cannot be found)."""
    zone: str | None
    """The zone the task runs in: its claimed zone, else the policy's default zone."""
    zone_origin: ZoneOrigin
    mapped: bool
    inputs: tuple[CheckedInput, ...]
    uncheckable: tuple[str, ...]
    decision: Decision | None
    error: str | None = None
    outputs: tuple[InputRef, ...] = ()
    """The task's Asset outlets: what it writes, for the flow analysis."""
    reclassifier: str | None = None
    """The policy reclassifier this task is, if any."""
    flows: tuple[FlowFinding, ...] = ()
    """One per finding of ``decision``, in the same order: its :attr:`FlowFinding.paths` say
    where the offending labels come from."""

    @property
    def key(self) -> str:
        return f"{self.dag_id}.{self.task_id}"

    @property
    def outcome(self) -> Outcome | None:
        return self.decision.outcome if self.decision is not None else None


@dataclass(frozen=True, slots=True)
class DagProblem:
    """A DAG whose zone annotations are malformed (the cluster policy makes it an import error)."""

    dag_id: str
    file: str
    line: int
    message: str
    tasks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportFailure:
    """A DAG file that Airflow could not import: its tasks were never checked."""

    file: str
    line: int
    message: str
    """The last line of the error, e.g. ``RuntimeError: boom``."""
    detail: str
    """Everything Airflow recorded (usually a traceback)."""


@dataclass(frozen=True, slots=True)
class Counts:
    """The totals of the final summary line (and of the JSON ``summary``)."""

    files: int
    dags: int
    tasks: int
    allowed: int
    denied: int
    dry_run: int
    exempted: int
    not_checked: int
    dag_problems: int
    import_errors: int
    flow_warnings: int = 0


@dataclass(frozen=True)
class CheckResult:
    """Everything one ``policyzones check`` found, in a stable order (by file, DAG, task)."""

    engine: PolicyEngine
    dag_folder: Path
    files: tuple[str, ...]
    dags: int
    tasks: tuple[TaskResult, ...]
    dag_problems: tuple[DagProblem, ...] = field(default=())
    import_errors: tuple[ImportFailure, ...] = field(default=())
    seconds: float = 0.0
    flow_warnings: tuple[FlowWarning, ...] = field(default=())
    """Legal but suspicious flows (an asset written in several zones, a misplaced reclassifier)."""
    parse_seconds: float = 0.0
    """Of ``seconds``, the time Airflow's ``DagBag`` spent parsing the files."""
    flow_seconds: float = 0.0
    """Of ``seconds``, the time the flow analysis and the decisions took."""

    @property
    def counts(self) -> Counts:
        outcomes = [task.outcome for task in self.tasks]
        return Counts(
            files=len(self.files),
            dags=self.dags,
            tasks=len(self.tasks),
            allowed=outcomes.count(Outcome.ALLOW),
            denied=outcomes.count(Outcome.DENY),
            dry_run=outcomes.count(Outcome.DRY_RUN),
            exempted=outcomes.count(Outcome.EXEMPTED),
            not_checked=outcomes.count(None),
            dag_problems=len(self.dag_problems),
            import_errors=len(self.import_errors),
            flow_warnings=len(self.flow_warnings),
        )

    @property
    def failed(self) -> bool:
        """Whether CI should fail: a deny, a malformed zone annotation or a DAG that does not import."""
        return bool(
            self.import_errors
            or self.dag_problems
            or any(task.outcome is Outcome.DENY for task in self.tasks)
        )

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def check_dag_folder(
    *, engine: PolicyEngine, dag_folder: str | Path, on_file: ProgressCallback | None = None
) -> CheckResult:
    """Parse every DAG file under ``dag_folder`` and decide each of its tasks.

    Raises :class:`DagFolderError` when the folder does not exist. Import errors, zone
    annotation errors and violations are results, never exceptions.
    """
    folder = Path(dag_folder)
    if not folder.exists():
        raise DagFolderError(f"DAG folder not found: {dag_folder}")
    if not folder.is_dir():
        raise DagFolderError(f"not a directory: {dag_folder} (pass the folder that holds the DAG files)")
    folder = folder.resolve()
    started = time.perf_counter()

    # Imported here: validate and explain must not pay for importing Airflow.
    from airflow.dag_processing.dagbag import DagBag
    from airflow.dag_processing.importers import get_importer_registry

    # The check decides every task with the policy it was given; Airflow's own cluster policy
    # (configured policy file, maybe none here) must not turn DAGs into import errors meanwhile.
    from airflow_policyzones.enforcement.cluster_policy import parse_time_validation_suspended

    with _quiet():  # listing honours .airflowignore, and Airflow may log a warning about it
        files = sorted(get_importer_registry().list_dag_files(str(folder), safe_mode=_safe_mode()))
    relative = tuple(_relative(Path(path), folder) for path in files)
    bag: Any = DagBag(dag_folder=folder, collect_dags=False, bundle_path=folder)
    # The DagBag's structlog logger prints straight to stdout; a stdlib logger obeys _quiet().
    bag._log = logging.getLogger("airflow.dag_processing.dagbag")

    tasks: list[TaskResult] = []
    nodes: list[TaskNode | None] = []
    problems: list[DagProblem] = []
    failures: list[ImportFailure] = []
    dag_count = 0
    sources: dict[str, SourceIndex] = {}
    safe_mode = _safe_mode()
    parse_seconds = 0.0
    with _quiet(), _on_sys_path(folder), parse_time_validation_suspended():
        for index, path in enumerate(files):
            if on_file is not None:
                on_file(index, len(files), relative[index])
            known_errors = set(bag.import_errors)
            parse_started = time.perf_counter()
            dags = bag.process_file(path, only_if_updated=False, safe_mode=safe_mode)
            parse_seconds += time.perf_counter() - parse_started
            for error_file in sorted(set(bag.import_errors) - known_errors):
                failures.append(_import_failure(error_file, bag.import_errors[error_file], folder))
            for dag in sorted(dags, key=lambda dag: str(dag.dag_id)):
                dag_count += 1
                file = _dag_file(dag, folder, default=relative[index])
                if file not in sources:
                    sources[file] = SourceIndex(_read_lines(folder / file))
                lines = sources[file]
                problem = _collect_dag(engine, dag, folder, file, lines, tasks, nodes)
                if problem is not None:
                    problems.append(problem)
    if on_file is not None:
        on_file(len(files), len(files), "")
    flow_started = time.perf_counter()
    with gc_paused():  # tens of thousands of long-lived results next to a heap of parsed DAGs
        decided, warnings = _decide(engine, tasks, nodes)
    flow_seconds = time.perf_counter() - flow_started
    return CheckResult(
        engine=engine,
        dag_folder=folder,
        files=relative,
        dags=dag_count,
        tasks=decided,
        dag_problems=tuple(problems),
        import_errors=tuple(sorted(failures, key=lambda failure: failure.file)),
        seconds=time.perf_counter() - started,
        flow_warnings=warnings,
        parse_seconds=parse_seconds,
        flow_seconds=flow_seconds,
    )


def _decide(
    engine: PolicyEngine, tasks: Sequence[TaskResult], nodes: Sequence[TaskNode | None]
) -> tuple[tuple[TaskResult, ...], tuple[FlowWarning, ...]]:
    """Decide every task through the flow analysis; tasks without a node (a zone annotation
    that could not be read) stay undecided and take no part in the flows."""
    graph = [node for node in nodes if node is not None]
    report = analyze_flows(engine=engine, tasks=graph)
    decided: list[TaskResult] = []
    position = 0  # in graph / report.decisions
    cursor = 0  # in report.findings: one per finding of each decision, in task order
    labels = report.labels
    propagated = report.propagated
    checked: dict[InputRef, CheckedInput] = {}  # one per asset, shared by its readers

    def check(ref: InputRef) -> CheckedInput:
        found = checked.get(ref)
        if found is None:
            found = checked[ref] = CheckedInput(ref, labels.get(ref), propagated.get(ref))
        return found

    for task, node in zip(tasks, nodes, strict=True):
        if node is None:
            decided.append(task)
            continue
        decision = report.decisions[position]
        position += 1
        count = len(decision.findings)
        flows = report.findings[cursor : cursor + count]
        cursor += count
        decided.append(
            _with_decision(
                task,
                decision,
                tuple(map(check, node.inputs)),
                flows,
            )
        )
    return tuple(decided), report.warnings


def _with_decision(
    task: TaskResult, decision: Decision, inputs: tuple[CheckedInput, ...], flows: tuple[FlowFinding, ...]
) -> TaskResult:
    return TaskResult(
        dag_id=task.dag_id,
        task_id=task.task_id,
        file=task.file,
        line=task.line,
        zone=task.zone,
        zone_origin=task.zone_origin,
        mapped=task.mapped,
        inputs=inputs,
        uncheckable=task.uncheckable,
        decision=decision,
        error=task.error,
        outputs=task.outputs,
        reclassifier=task.reclassifier,
        flows=flows,
    )


def _collect_dag(
    engine: PolicyEngine,
    dag: Any,
    folder: Path,
    file: str,
    lines: SourceIndex,
    results: list[TaskResult],
    nodes: list[TaskNode | None],
) -> DagProblem | None:
    """Append one undecided result and one flow node (``None``: not checked) per task of ``dag``."""
    from airflow_policyzones.zones import (
        ZoneAnnotationError,
        declared_inputs,
        declared_outputs,
        task_context,
        zone_of,
    )

    errors: dict[str, list[str]] = {}
    identities: dict[object, TaskContext] = {}
    for task in sorted(dag.tasks, key=lambda task: str(task.task_id)):
        line = lines.task_line(task_id=task.task_id, label=getattr(task, "label", None))
        mapped = bool(getattr(task, "is_mapped", False))
        try:
            assignment = zone_of(task)
        except ZoneAnnotationError as error:
            errors.setdefault(str(error), []).append(task.task_id)
            results.append(
                TaskResult(
                    dag_id=dag.dag_id,
                    task_id=task.task_id,
                    file=file,
                    line=line,
                    zone=None,
                    zone_origin="error",
                    mapped=mapped,
                    inputs=(),
                    uncheckable=(),
                    decision=None,
                    error=str(error),
                )
            )
            nodes.append(None)
            continue
        declared = declared_inputs(task)
        outputs = declared_outputs(task)
        # The identity depends on the DAG and the task's owner only: one lookup of the file per owner.
        owner = getattr(task, "owner", None)
        shared = identities.get(owner)
        if shared is None:
            identity = identities[owner] = task_context(task, dag_folder=folder)
        else:
            identity = replace(shared, task_id=task.task_id)
        reclassifier = engine.reclassifier_for(dag_id=identity.dag_id, task_id=identity.task_id)
        origin: ZoneOrigin = assignment.source
        zone = engine.effective_zone(assignment.zone)
        if assignment.zone is None and zone is not None:
            origin = "default"
        results.append(
            TaskResult(
                dag_id=dag.dag_id,
                task_id=task.task_id,
                file=file,
                line=line,
                zone=zone,
                zone_origin=origin,
                mapped=mapped,
                inputs=(),
                uncheckable=declared.problems,
                decision=None,
                outputs=outputs,
                reclassifier=reclassifier,
            )
        )
        nodes.append(
            TaskNode(
                task=identity,
                zone=assignment.zone,
                inputs=declared.inputs,
                outputs=outputs,
                reclassifier=reclassifier,
                uncheckable=declared.problems,
            )
        )
    if not errors:
        return None
    message = "; ".join(errors)
    affected = tuple(task_id for task_ids in errors.values() for task_id in task_ids)
    return DagProblem(dag.dag_id, file, dag_line(lines.lines, dag_id=dag.dag_id), message, affected)


def task_line(lines: Sequence[str], *, task_id: str, label: str | None = None) -> int:
    """The 1-based line where a task is defined, found by searching the source; 1 if not found.

    Tries ``task_id="x"`` first, then ``def x(`` (``@task`` functions, whose task id is the
    function name, possibly de-duplicated as ``x__2`` or prefixed by a TaskGroup), then any
    quoted ``"x"``. Source search is a heuristic: Airflow does not record where a task was built.
    """
    for name in _candidate_names(task_id, label):
        quoted = re.escape(name)
        patterns = (
            rf"""\btask_id\s*=\s*(['"]){quoted}\1""",
            rf"\bdef\s+{quoted}\s*\(",
            rf"""(['"]){quoted}\1""",
        )
        for pattern in patterns:
            found = _first_match(lines, pattern)
            if found is not None:
                return found
    return 1


class SourceIndex:
    """A DAG file's lines, indexed once for :func:`task_line`'s first two patterns.

    ``SourceIndex(lines).task_line(...)`` equals ``task_line(lines, ...)``, without scanning the
    file once per task (quadratic in big generated DAG files); the quoted-name fallback still scans.
    """

    _TASK_ID = re.compile(r"""\btask_id\s*=\s*(['"])(.*?)\1""")
    _DEF = re.compile(r"\bdef\s+(\w+)\s*\(")
    _IDENTIFIER = re.compile(r"\w+")

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = lines
        self._task_ids: dict[str, int] = {}
        self._defs: dict[str, int] = {}
        for number, text in enumerate(lines, start=1):
            if "task_id" in text:
                for match in self._TASK_ID.finditer(text):
                    self._task_ids.setdefault(match.group(2), number)
            if "def" in text:
                for match in self._DEF.finditer(text):
                    self._defs.setdefault(match.group(1), number)

    def task_line(self, *, task_id: str, label: str | None = None) -> int:
        for name in _candidate_names(task_id, label):
            found = self._task_ids.get(name)
            if found is None and ("'" in name or '"' in name):  # the index cannot see these
                found = _first_match(self.lines, rf"""\btask_id\s*=\s*(['"]){re.escape(name)}\1""")
            if found is not None:
                return found
            if self._IDENTIFIER.fullmatch(name):
                found = self._defs.get(name)
            else:
                found = _first_match(self.lines, rf"\bdef\s+{re.escape(name)}\s*\(")
            if found is not None:
                return found
            found = _first_match(self.lines, rf"""(['"]){re.escape(name)}\1""")
            if found is not None:
                return found
        return 1


def _candidate_names(task_id: str, label: str | None) -> list[str]:
    names: list[str] = []
    for name in (task_id, label or "", task_id.rsplit(".", 1)[-1]):
        for candidate in (name, re.sub(r"__\d+$", "", name)):
            if candidate and candidate not in names:
                names.append(candidate)
    return names


def dag_line(lines: Sequence[str], *, dag_id: str) -> int:
    """The line that names the DAG (``dag_id="x"``, ``DAG("x"``, ``@dag`` function ``def x(``)."""
    quoted = re.escape(dag_id)
    patterns = (rf"""\bdag_id\s*=\s*(['"]){quoted}\1""", rf"\bdef\s+{quoted}\s*\(", rf"""(['"]){quoted}\1""")
    for pattern in patterns:
        found = _first_match(lines, pattern)
        if found is not None:
            return found
    return 1


def _first_match(lines: Sequence[str], pattern: str) -> int | None:
    regex = re.compile(pattern)
    for number, text in enumerate(lines, start=1):
        if regex.search(text):
            return number
    return None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')
_SHORT_LINE = re.compile(r"\(([^()]+), line (?P<line>\d+)\)")


def _import_failure(error_file: str, detail: str, folder: Path) -> ImportFailure:
    """Locate an import error: the last traceback frame in the failing file, else its message."""
    file = _relative(Path(error_file) if Path(error_file).is_absolute() else folder / error_file, folder)
    absolute = str((folder / file).resolve())
    line = 1
    for match in _FRAME.finditer(detail):
        frame_file = match.group("file")
        if frame_file == absolute or (not Path(frame_file).is_absolute() and frame_file == file):
            line = int(match.group("line"))
    if line == 1:
        short = _SHORT_LINE.search(detail)
        if short is not None and Path(short.group(1)).name == Path(file).name:
            line = int(short.group("line"))
    text_lines = [text.strip() for text in detail.strip().splitlines() if text.strip()]
    message = text_lines[-1] if text_lines else "import failed"
    return ImportFailure(file=file, line=line, message=message, detail=detail.rstrip())


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.resolve().relative_to(folder).as_posix()
    except ValueError:
        return path.as_posix()


def _dag_file(dag: Any, folder: Path, *, default: str) -> str:
    fileloc = getattr(dag, "fileloc", None)
    return _relative(Path(fileloc), folder) if fileloc else default


# --- a quiet, isolated parse ------------------------------------------------------------------------


def _safe_mode() -> bool:
    """Airflow's own ``[core] dag_discovery_safe_mode``: check exactly the files Airflow would parse."""
    from airflow.configuration import conf

    return bool(conf.getboolean("core", "dag_discovery_safe_mode"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep Airflow's parse logging and DAG files' prints off stdout, which carries the report.

    Import errors are collected and reported by the CLI itself, so the log lines add nothing.
    """
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """DAG files import helpers next to them, as the dag-processor allows (it puts the folder on sys.path)."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.append(entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
