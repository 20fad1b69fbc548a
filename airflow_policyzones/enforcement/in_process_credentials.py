"""The check on connections and variables that code outside task processes asks for: DAG files in
the dag-processor, triggers in the triggerer.

Since Airflow 3 the dag-processor parses each DAG file (and runs its DAG callbacks) in a child
process, and the triggerer runs triggers in a runner process; both children ask their parent for
connections and variables, and the parent serves them through an in-process execution API whose
access checks always allow. So top-level DAG code could read any connection and hand it to any
task (an operator argument, a template), and a trigger could read any connection. The parents run
no DAG author code, so the check sits there: before a parent answers, a request for a connection or
variable the policy restricts is decided for what its child runs, and a refusal is answered with
Airflow's own ``PERMISSION_DENIED`` error, which the child's secrets lookup raises as
``AirflowSecretsBackendAccessDenied`` without falling back to another backend.

* dag-processor: decided for the file the child parses
  (:func:`airflow_policyzones.db.credentials.check_dag_file_credential`: every zone the file's DAGs
  and tasks run in must be allowed it, as its previous parse recorded them). What was served is
  decided again on the parse's own result before the parent stores it (a parse that adds a task
  of another zone): refused there, the result becomes an import error and no DAG of the file is
  stored. Either way the file fails to import; its dag-processor log says why.
* triggerer: one runner serves the triggers of many tries and a request does not say which trigger
  made it, so it is decided for all of them
  (:func:`airflow_policyzones.db.credentials.check_trigger_credential`: every try whose trigger
  runs there must be allowed it). The trigger fails, so its task does.

Both parents log each refusal (which id, which zone, why, the fix). Installed by the cluster policy
module when ``airflow dag-processor`` or ``airflow triggerer`` loads it, before any child starts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_policyzones import config
from airflow_policyzones.policy import PolicyError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_policyzones.db.credentials import CredentialVerdict
    from airflow_policyzones.policy import PolicyEngine
    from airflow_policyzones.policy.models import CredentialKind

    Decide = Callable[[Session, PolicyEngine, CredentialKind, str], CredentialVerdict]

logger = logging.getLogger(__name__)

_WRAPPED = "__policyzones_checked__"


def install(command: str) -> None:
    """Check the credential requests the children of ``airflow <command>`` make (idempotent).

    Wraps ``_handle_request`` of Airflow's ``DagFileProcessorProcess`` (dag-processor) or
    ``TriggerRunnerSupervisor`` (triggerer), where the parent answers its child's requests.
    """
    if command == "dag-processor":
        from airflow.dag_processing.processor import DagFileProcessorProcess

        _wrap(DagFileProcessorProcess, _dag_file, on_other=_recheck_parse)
    elif command == "triggerer":
        from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor

        _wrap(TriggerRunnerSupervisor, _triggers)
    else:
        raise ValueError(f"no in-process execution API to check in 'airflow {command}'")


def _dag_file(process: Any) -> tuple[str, Decide]:
    """Who asks and how to decide: the file a dag-processor child parses (a restricted id it is
    served is remembered, for :func:`_recheck_parse`)."""
    from airflow_policyzones.db.credentials import check_dag_file_credential

    bundle, relative = str(process.bundle_name), str(process.dag_file_rel_path)

    def decide(session: Session, engine: PolicyEngine, kind: CredentialKind, name: str) -> CredentialVerdict:
        verdict = check_dag_file_credential(
            session=session, engine=engine, bundle=bundle, relative_fileloc=relative, kind=kind, name=name
        )
        if verdict.allowed:
            _served.setdefault(process.id, set()).add((kind, name))
        return verdict

    return f"DAG file {relative!r} (bundle {bundle!r}), parsed by the dag-processor", decide


def _triggers(supervisor: Any) -> tuple[str, Decide]:
    """Who asks and how to decide: the triggers running in a triggerer's runner."""
    from airflow_policyzones.db.credentials import check_trigger_credential

    trigger_ids = sorted(supervisor.running_triggers)

    def decide(session: Session, engine: PolicyEngine, kind: CredentialKind, name: str) -> CredentialVerdict:
        return check_trigger_credential(
            session=session, engine=engine, trigger_ids=trigger_ids, kind=kind, name=name
        )

    return f"the triggerer's runner (triggers {trigger_ids})", decide


_served: dict[Any, set[tuple[CredentialKind, str]]] = {}
"""Restricted ids served to each running dag-processor child (by its process id), until its
parsing result arrives."""


def _wrap(
    cls: Any,
    asker: Callable[[Any], tuple[str, Decide]],
    *,
    on_other: Callable[[Any, Any], Any] | None = None,
) -> None:
    """Check ``cls._handle_request``'s credential requests (decided by what ``asker`` returns for
    the process asked); ``on_other`` may replace any other message before Airflow handles it."""
    original = cls._handle_request
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def _handle_request(self: Any, msg: Any, log: Any, req_id: int) -> None:
        request = credential_of(msg)
        if request is not None:
            where, decide = asker(self)
            refusal = refusal_for(where=where, kind=request[0], name=request[1], decide=decide)
            if refusal is not None:
                _refuse(self, refusal, log=log, req_id=req_id)
                return
        elif on_other is not None:
            msg = on_other(self, msg)
        original(self, msg, log, req_id)

    setattr(_handle_request, _WRAPPED, True)
    cls._handle_request = _handle_request


def _recheck_parse(process: Any, msg: Any) -> Any:
    """A dag-processor child's parsing result, or, when a restricted id served to it during the
    parse may not be used in a zone that parse itself defines, an import error in its place."""
    from airflow.dag_processing.processor import DagFileParsingResult

    from airflow_policyzones.db.credentials import INSIDE_A_TASK

    if not isinstance(msg, DagFileParsingResult):
        return msg
    served = _served.pop(process.id, None)
    if not served:
        return msg
    where = f"DAG file {process.dag_file_rel_path!r} (bundle {process.bundle_name!r})"
    try:
        problem = _refused_by_parse(msg, relative_fileloc=str(process.dag_file_rel_path), served=served)
    except Exception as error:
        logger.exception("policyzones: could not check what %s was served against its parse", where)
        problem = f"what it was served could not be checked against the DAGs it defines: {error}"
    if problem is None:
        return msg
    message = f"policyzones: {where}, parsed by the dag-processor: {problem} (fix: {INSIDE_A_TASK})"
    getattr(process, "process_log", logger).error(message)
    logger.warning(message)
    errors = {**(msg.import_errors or {}), str(process.dag_file_rel_path): message}
    return msg.model_copy(update={"serialized_dags": [], "import_errors": errors})


def _refused_by_parse(
    msg: Any, *, relative_fileloc: str, served: set[tuple[CredentialKind, str]]
) -> str | None:
    """Why a zone of the DAGs and tasks in parsing result ``msg`` may not use an id in
    ``served``; ``None``: every one may."""
    from airflow.configuration import conf

    from airflow_policyzones.db.credentials import DAG_FILE_CODE, verdicts_in_zones
    from airflow_policyzones.db.verification import parse_serialized
    from airflow_policyzones.policy.engine import TaskContext

    engine = config.get_engine()
    default_owner = conf.get("operators", "default_owner", fallback="airflow")
    for dag in msg.serialized_dags:
        data = dag.data.get("dag", {}) if isinstance(dag.data, dict) else {}
        tasks = [entry.get("__var", entry) for entry in data.get("tasks") or () if isinstance(entry, dict)]
        task = TaskContext(
            dag_id=str(data.get("dag_id", "")),
            task_id=DAG_FILE_CODE,
            dag_file=relative_fileloc,
            tags=frozenset(str(tag) for tag in data.get("tags") or () if isinstance(tag, str)),
            owners=frozenset(str(fields.get("owner") or default_owner) for fields in tasks),
        )
        zones = [parsed.zone for parsed in parse_serialized(dag.data, version="this parse").tasks.values()]
        for kind, name in sorted(served):
            for verdict in verdicts_in_zones(engine, task=task, zones=zones, kind=kind, name=name):
                if not verdict.allowed:
                    findings = verdict.decision.findings if verdict.decision else ()
                    reason = findings[0].reason if findings else "refused"
                    return (
                        f"it was served {kind} {name!r} while it defined DAG {task.dag_id!r}, whose "
                        f"zone {verdict.zone!r} may not use it: {reason}"
                    )
    return None


def credential_of(msg: object) -> tuple[CredentialKind, str] | None:
    """``(kind, id)`` when ``msg`` (a child's request) asks for one connection or variable, or
    sets or deletes a variable (what a zone may not use, it may not change either)."""
    from airflow.sdk.execution_time.comms import DeleteVariable, GetConnection, GetVariable, PutVariable

    if isinstance(msg, GetConnection):
        return "connection", msg.conn_id
    if isinstance(msg, (GetVariable, PutVariable, DeleteVariable)):
        return "variable", msg.key
    return None


def refusal_for(*, where: str, kind: CredentialKind, name: str, decide: Decide) -> dict[str, Any] | None:
    """``None`` when ``where`` may obtain ``name``, else what to answer (``reason``, ``message``,
    ``fix``, the id, the zone). Fails closed: a policy that does not load or a check that cannot
    run refuses."""
    from airflow.utils.session import create_session

    if not config.enabled():
        return None
    try:
        engine = config.get_engine()
    except PolicyError as error:
        return {
            "reason": "policyzones_no_policy",
            kind: name,
            "message": f"the zone policy does not load here, so {where} is not served {kind} "
            f"{name!r}: {' '.join(str(error).splitlines()[:2])}",
            "fix": "fix the policy file ([policyzones] policy_file)",
        }
    if not engine.restricts(kind=kind, name=name):
        return None
    try:
        with create_session() as session:
            verdict = decide(session, engine, kind, name)
    except Exception as error:
        logger.exception("policyzones: could not check %s %r for %s", kind, name, where)
        return {
            "reason": "policyzones_unchecked",
            kind: name,
            "message": f"{kind} {name!r} is restricted by the zone policy and could not be checked "
            f"for {where}: {error}",
            "fix": "see this component's log",
        }
    if verdict.allowed:
        if verdict.to_record:
            logger.warning("policyzones: %s (%s)", verdict.message, where)
        return None
    finding = verdict.decision.findings[0] if verdict.decision and verdict.decision.findings else None
    return {
        "reason": "policyzones_refused",
        kind: name,
        "zone": verdict.zone,
        "rule": finding.rule.value if finding is not None else None,
        "message": f"{where}: {verdict.message}",
        "fix": verdict.fix,
    }


def _refuse(process: Any, refusal: dict[str, Any], *, log: Any, req_id: int) -> None:
    """Answer the child as Airflow answers a 403 of the execution API, and say why where the
    child's own log (a DAG file's dag-processor log) and the component's log show it."""
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    message = f"policyzones: {refusal['message']} (fix: {refusal['fix']})"
    getattr(process, "process_log", log).error(message)
    logger.warning(message)
    process.send_msg(ErrorResponse(error=ErrorType.PERMISSION_DENIED, detail=refusal), request_id=req_id)
