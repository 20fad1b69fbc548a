"""The decision service's transport: a try asks through its own task supervisor, never with a key
of its own.

A task process holds no credential for the api-server: its supervisor holds the try's execution
token (issued by the scheduler, ``sub`` = the task instance id, good only for that try) and
forwards the task's ``GetXCom``/``SetXCom`` messages to the execution API with it. The task asks
the decision service for an XCom of its own task instance whose key starts with
:data:`~airflow_policyzones.wire.RELAY_KEY_PREFIX`:

* ``GET /execution/xcoms/{dag_id}/{run_id}/{task_id}/__policyzones.<method>.<request>`` — the key
  carries the request (:func:`~airflow_policyzones.wire.encode_inline`); this middleware answers
  it as Airflow's XCom route answers a read, and nothing is stored;
* a request too long for a key is set first (``POST`` on ``__policyzones.<method>``): this
  middleware decides and hands Airflow's XCom route the answer in place of the request, and the
  task reads it back with a plain ``GET``, which Airflow serves.

Either way the middleware (1) validates the execution token with the execution API's own validator
(no token, no answer), (2) finds the token's task instance and refuses a request about any other
one (nothing is stored on that XCom), (3) decides for the try *the token names* — its dag, task,
run, map index and try number come from the task instance row, whatever the request says — and
(4) answers with a :class:`~airflow_policyzones.wire.RelayAnswer`. No XCom with a relay key is ever
stored as a task sent it.

What the task's code can reach is therefore what it could reach without the provider: its
supervisor, which speaks for its own try only. No worker needs ``[api_auth] jwt_secret``.
Every other request costs one string comparison.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from airflow_policyzones.api.execution_tokens import (
    ExecutionGuard,
    answer,
    json_response,
    read_body,
    replay,
    route_path,
    with_length,
)
from airflow_policyzones.wire import (
    RELAY_KEY_PREFIX,
    ConnectionTypeRequest,
    ConnectionTypeResponse,
    DecisionRequest,
    ObservationRequest,
    OutputsRequest,
    RelayAnswer,
    RelayMethod,
    decode_inline,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_policyzones.api.execution_tokens import Receive, Scope, Send
    from airflow_policyzones.db.tries import FoundTry
    from airflow_policyzones.policy import PolicyEngine

log = logging.getLogger(__name__)

XCOMS_PREFIX = "/execution/xcoms/"
_XCOM_ROUTE = re.compile(
    r"^/execution/xcoms/(?P<dag_id>[^/]+)/(?P<run_id>[^/]+)/(?P<task_id>[^/]+)/(?P<key>.+)$"
)


class RelayError(Exception):
    """A request the decision service answers with ``status`` and a reason instead of a body."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class ForeignRequest(RelayError):
    """The token names no task instance, or another one than the XCom's: answered at once, and
    nothing is stored on that XCom."""


def relay_request(path: str) -> tuple[str, str, str, str] | None:
    """``(dag_id, run_id, task_id, key)`` when ``path`` (below the root path) sets an XCom with a
    relay key, else ``None``."""
    if not path.startswith(XCOMS_PREFIX):
        return None
    match = _XCOM_ROUTE.match(path)
    if match is None or not match["key"].startswith(RELAY_KEY_PREFIX):
        return None
    return match["dag_id"], match["run_id"], match["task_id"], match["key"]


def inline_request(key: str) -> bytes | None:
    """The request a relay key carries itself (``<prefix><method>.<payload>``), else ``None``."""
    _, dot, payload = key.removeprefix(RELAY_KEY_PREFIX).partition(".")
    if not dot:
        return None
    try:
        return decode_inline(payload)
    except ValueError:
        return b"\x00"  # not a request: answered 422 like any malformed one


class DecisionRelay(ExecutionGuard):
    """Pure ASGI middleware: answers the decision service's XCom keys for the token's own try."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "GET"):
            await self.app(scope, receive, send)
            return
        target = relay_request(route_path(scope))
        inline = inline_request(target[3]) if target is not None and scope["method"] == "GET" else None
        if target is None or (scope["method"] == "GET" and inline is None):
            await self.app(scope, receive, send)  # reading back an answer: Airflow's own route
            return
        ti_id = await self._tokens.task_instance_id(scope)
        if ti_id is None:
            await answer(
                send,
                403,
                {
                    "reason": "policyzones_relay",
                    "message": "the decision service answers only a request sent with the execution token "
                    "of a running try (through the task's supervisor)",
                },
            )
            return
        dag_id, run_id, task_id, key = target
        body = inline if inline is not None else await read_body(receive)
        where = (dag_id, run_id, task_id, _map_index(scope))
        try:
            relayed = await run_in_threadpool(_answer, ti_id=ti_id, where=where, key=key, body=body)
        except ForeignRequest as error:
            if inline is not None:  # a read: nothing would be stored anyway; the try reads why
                relayed = RelayAnswer(status=error.status, detail=str(error))
            else:
                await answer(send, error.status, {"reason": "policyzones_relay", "message": str(error)})
                return
        if inline is not None:
            # Answered as Airflow's XCom route answers a read; nothing is stored.
            await json_response(send, {"key": key, "value": relayed.model_dump(mode="json")})
            return
        new = relayed.model_dump_json().encode()
        await self.app(with_length(scope, len(new)), replay(new, receive), send)


def _map_index(scope: Scope) -> int:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("map_index", ["-1"])
    try:
        return int(values[-1])
    except ValueError:
        return -2  # matches no task instance


def _answer(*, ti_id: str, where: tuple[str, str, str, int], key: str, body: bytes) -> RelayAnswer:
    """The service's answer to one relayed request; raises :class:`ForeignRequest` only (every
    other error becomes an answer)."""
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            return RelayAnswer(
                status=200, body=handle(session=session, ti_id=ti_id, where=where, key=key, body=body)
            )
    except ForeignRequest:
        raise
    except RelayError as error:
        return RelayAnswer(status=error.status, detail=str(error))
    except Exception as error:  # fail closed: the try reads an error, never a decision
        log.exception("policyzones: the decision service failed on %s for try %s", key, ti_id)
        return RelayAnswer(status=500, detail=f"the decision service failed: {type(error).__name__}: {error}")


def handle(
    *, session: Session, ti_id: str, where: tuple[str, str, str, int], key: str, body: bytes
) -> dict[str, Any]:
    """Decide one relayed request of the try ``ti_id`` (an execution token's ``sub``) that set the
    XCom ``key`` of task instance ``where`` = ``(dag_id, run_id, task_id, map_index)``.

    Returns the method's response as JSON; raises :class:`ForeignRequest` (404 no such task
    instance, 403 another task instance) or :class:`RelayError` (404 no such method, 409/422/503
    from the service).
    """
    from airflow_policyzones.db.tries import lookup_try

    found = lookup_try(session, ti_id)
    if found is None:
        raise ForeignRequest(404, f"no task instance {ti_id}: the try may have been cleared or deleted")
    identity = found.identity
    own = (identity.dag_id, identity.run_id, identity.task_id, identity.map_index)
    if where != own:
        raise ForeignRequest(
            403,
            f"the execution token is for task instance {_describe(own)}, the request sets an XCom of "
            f"{_describe(where)}: a try asks the decision service only about itself",
        )
    try:
        method = RelayMethod(key.removeprefix(RELAY_KEY_PREFIX).partition(".")[0])
    except ValueError:
        raise RelayError(404, f"the decision service has no method {key!r}") from None
    model, run = _METHODS[method]
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise RelayError(422, "the request is not a JSON object")
        # The try is the token's, whatever the body claims.
        request = model.model_validate({**payload, "task": identity.model_dump()})
    except json.JSONDecodeError as error:
        raise RelayError(422, f"the request is not JSON: {error}") from None
    except ValidationError as error:
        raise RelayError(422, f"malformed {method.value} request: {_summary(error)}") from None
    try:
        return run(session, request, found).model_dump(mode="json")
    except Exception as error:
        status = _refusal_status(error)
        if status is None:
            raise
        raise RelayError(status, str(error)) from None


def _describe(where: tuple[str, str, str, int]) -> str:
    dag_id, run_id, task_id, map_index = where
    return f"{dag_id}.{task_id} run {run_id}" + ("" if map_index < 0 else f" map index {map_index}")


def _summary(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(map(str, first["loc"])) or "body"
    return f"{error.error_count()} problem(s), first at {where}: {first['msg']}"


def _engine() -> PolicyEngine:
    from airflow_policyzones.config import get_engine
    from airflow_policyzones.policy import PolicyError

    try:
        return get_engine()
    except PolicyError as error:
        raise RelayError(
            503, f"the decision service has no valid policy, so no task may run: {error}"
        ) from None


def _decide(session: Session, request: BaseModel, found: FoundTry) -> BaseModel:
    from airflow_policyzones.db.service import decide_and_record

    assert isinstance(request, DecisionRequest)
    return decide_and_record(session=session, engine=_engine(), request=request, source="api", found=found)


def _observe(session: Session, request: BaseModel, found: FoundTry) -> BaseModel:
    from airflow_policyzones.db.observed import decide_observed

    assert isinstance(request, ObservationRequest)
    return decide_observed(session=session, engine=_engine(), request=request, source="api", found=found)


def _outputs(session: Session, request: BaseModel, _found: FoundTry) -> BaseModel:
    from airflow_policyzones.db.propagation import record_outputs

    assert isinstance(request, OutputsRequest)
    return record_outputs(session=session, engine=_engine(), request=request)


def _refusal_status(error: Exception) -> int | None:
    """The HTTP status of a domain refusal (``None``: not a refusal). The one place it is chosen."""
    from airflow_policyzones.db.propagation import OutputsOfUnknownTry, OutputsRefused
    from airflow_policyzones.db.service import DecisionRefused, TaskInstanceNotFound

    if isinstance(error, (TaskInstanceNotFound, OutputsOfUnknownTry)):
        return 404
    if isinstance(error, (DecisionRefused, OutputsRefused)):
        return 409
    return None


def _connection_type(session: Session, request: BaseModel, _found: FoundTry) -> BaseModel:
    """The type of a connection where the api-server finds connections; its credentials never
    leave the server, and asking is not a use (the zone check applies when a try fetches it)."""
    from airflow.models.connection import Connection

    assert isinstance(request, ConnectionTypeRequest)
    try:
        found = Connection.get_connection_from_secrets(request.conn_id)
    except Exception:  # not found anywhere (AirflowNotFoundException) or a backend error
        return ConnectionTypeResponse(conn_type=None)
    return ConnectionTypeResponse(conn_type=str(found.conn_type or "") or None)


_METHODS: dict[RelayMethod, tuple[type[BaseModel], Callable[[Session, BaseModel, FoundTry], BaseModel]]] = {
    RelayMethod.DECISIONS: (DecisionRequest, _decide),
    RelayMethod.OBSERVATIONS: (ObservationRequest, _observe),
    RelayMethod.OUTPUTS: (OutputsRequest, _outputs),
    RelayMethod.CONNECTION_TYPE: (ConnectionTypeRequest, _connection_type),
}
