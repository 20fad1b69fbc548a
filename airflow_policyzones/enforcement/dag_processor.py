"""The dag-processor's check on the connections and variables DAG files' own code asks for.

Since Airflow 3 the dag-processor parses each DAG file (and runs its DAG callbacks) in a child
process, and that child asks its parent for connections and variables; the parent serves them
through an in-process execution API whose access checks always allow, so top-level DAG code could
read any connection and hand it to any task (an operator argument, a template) — around the
api-server's check on the tasks' own fetches. The parent runs no DAG author code, so the check
sits there: before it answers, a request for a connection or variable the policy restricts is
decided for the file the child runs (:func:`airflow_policyzones.db.credentials.check_dag_file_credential`:
every zone the file's DAGs and tasks run in must be allowed it) and a refusal is answered with
Airflow's own ``PERMISSION_DENIED`` error, which the child's secrets lookup raises as
``AirflowSecretsBackendAccessDenied`` without falling back to another backend. The file then
fails to import (Airflow records the import error); the file's dag-processor log and the
dag-processor's own log say which connection, which zone, why and how to fix it.

Installed by the cluster policy module when ``airflow dag-processor`` loads it, before any file is
parsed (:func:`install`).
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from airflow_policyzones import config
from airflow_policyzones.policy import PolicyError

if TYPE_CHECKING:
    from airflow_policyzones.db.credentials import CredentialVerdict
    from airflow_policyzones.policy.models import CredentialKind

logger = logging.getLogger(__name__)

_WRAPPED = "__policyzones_checked__"


def install() -> None:
    """Check the credential requests of every DAG file the dag-processor runs (idempotent).

    Wraps ``DagFileProcessorProcess._handle_request``, where Airflow's dag-processor answers its
    child's requests and knows the file (bundle and path) the child runs.
    """
    from airflow.dag_processing.processor import DagFileProcessorProcess

    original = DagFileProcessorProcess._handle_request
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def _handle_request(self: Any, msg: Any, log: Any, req_id: int) -> None:
        request = credential_of(msg)
        if request is not None:
            kind, name = request
            refusal = refusal_for(
                bundle=self.bundle_name, relative_fileloc=self.dag_file_rel_path, kind=kind, name=name
            )
            if refusal is not None:
                _refuse(self, refusal, log=log, req_id=req_id)
                return
        original(self, msg, log, req_id)

    setattr(_handle_request, _WRAPPED, True)
    DagFileProcessorProcess._handle_request = _handle_request  # type: ignore[method-assign]


def credential_of(msg: object) -> tuple[CredentialKind, str] | None:
    """``(kind, id)`` when ``msg`` (a child's request) asks for one connection or variable."""
    from airflow.sdk.execution_time.comms import GetConnection, GetVariable

    if isinstance(msg, GetConnection):
        return "connection", msg.conn_id
    if isinstance(msg, GetVariable):
        return "variable", msg.key
    return None


def refusal_for(
    *, bundle: str, relative_fileloc: str, kind: CredentialKind, name: str
) -> dict[str, Any] | None:
    """``None`` when the code of DAG file ``relative_fileloc`` (in bundle ``bundle``) may obtain
    ``name``, else what to answer (``reason``, ``message``, ``fix``, the id, the zone). Fails
    closed: a policy that does not load or a check that cannot run refuses."""
    from airflow.utils.session import create_session

    from airflow_policyzones.db.credentials import check_dag_file_credential

    if not config.enabled():
        return None
    where = f"DAG file {relative_fileloc!r} (bundle {bundle!r})"
    try:
        engine = config.get_engine()
    except PolicyError as error:
        return {
            "reason": "policyzones_no_policy",
            kind: name,
            "message": f"the zone policy does not load in the dag-processor, so {where} is not "
            f"served {kind} {name!r}: {' '.join(str(error).splitlines()[:2])}",
            "fix": "fix the policy file ([policyzones] policy_file); the file is parsed again",
        }
    if not engine.restricts(kind=kind, name=name):
        return None
    try:
        with create_session() as session:
            verdict = check_dag_file_credential(
                session=session,
                engine=engine,
                bundle=bundle,
                relative_fileloc=relative_fileloc,
                kind=kind,
                name=name,
            )
    except Exception as error:
        logger.exception("policyzones: could not check %s %r for %s", kind, name, where)
        return {
            "reason": "policyzones_unchecked",
            kind: name,
            "message": f"{kind} {name!r} is restricted by the zone policy and could not be checked "
            f"for {where}: {error}",
            "fix": "see the dag-processor's log; the file is parsed again",
        }
    if verdict.allowed:
        if verdict.to_record:
            logger.warning("policyzones: %s (%s, parsed by the dag-processor)", verdict.message, where)
        return None
    return _answer(verdict, where=where)


def _answer(verdict: CredentialVerdict, *, where: str) -> dict[str, Any]:
    finding = verdict.decision.findings[0] if verdict.decision and verdict.decision.findings else None
    return {
        "reason": "policyzones_refused",
        verdict.kind: verdict.name,
        "zone": verdict.zone,
        "rule": finding.rule.value if finding is not None else None,
        "message": f"{where}, parsed by the dag-processor: {verdict.message}",
        "fix": verdict.fix
        if finding is not None
        else "read it inside a task (a hook in an operator or a @task function), where the zone of "
        "the task decides",
    }


def _refuse(process: Any, refusal: dict[str, Any], *, log: Any, req_id: int) -> None:
    """Answer the child as Airflow answers a 403 of the execution API, and say why where the
    file's log and the dag-processor's log show it."""
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    message = f"policyzones: {refusal['message']} (fix: {refusal['fix']})"
    getattr(process, "process_log", log).error(message)  # the file's own dag-processor log
    logger.warning(message)
    process.send_msg(ErrorResponse(error=ErrorType.PERMISSION_DENIED, detail=refusal), request_id=req_id)
