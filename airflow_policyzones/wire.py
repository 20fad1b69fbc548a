"""Wire format of the decision service (version 1), shared by the worker's client and the server.

The worker states *which task-instance try* asks and *what it claims* (zone, declared inputs);
the server decides with the policy engine, records the decision and answers with it.
"""

from __future__ import annotations

import base64
import zlib
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from airflow_policyzones.policy.vocabulary import Mode, Namespace

RELAY_KEY_PREFIX = "__policyzones."
"""XCom keys the decision service answers on: a try asks through its own task supervisor, which
forwards ``SetXCom``/``GetXCom`` to the execution API with the try's execution token (see
:mod:`airflow_policyzones.api.relay`). No XCom with such a key is ever stored as the task sent it."""


MAX_INLINE = 3_000
"""Longest encoded request a relay key carries itself (one ``GetXCom``, nothing stored); a longer
one is set as the XCom's value and read back (``SetXCom`` then ``GetXCom``)."""


def encode_inline(request: bytes) -> str:
    """``request`` (JSON) as a relay key's suffix: zlib, then URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(zlib.compress(request)).rstrip(b"=").decode("ascii")


def decode_inline(payload: str) -> bytes:
    """The JSON a relay key's suffix carries; raises ``ValueError`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        decompressor = zlib.decompressobj()
        decoded = decompressor.decompress(raw, 1_000_000)
    except (ValueError, zlib.error) as error:
        raise ValueError(f"not a relay payload: {error}") from None
    if decompressor.unconsumed_tail:
        raise ValueError("the relay payload decompresses to more than 1 MB")
    return decoded


class RelayMethod(str, Enum):
    """What a try asks the decision service; the XCom key is ``RELAY_KEY_PREFIX + value``."""

    DECISIONS = "decisions"
    """Decide the try before its body runs, and record the decision."""
    OBSERVATIONS = "observations"
    """Decide what the running try's hooks read, before the read reaches its code."""
    OUTPUTS = "outputs"
    """Record what the succeeded try wrote, and propagate labels to it."""
    CONNECTION_TYPE = "connection-type"
    """The type of the connection a SQL task names (its dialect), without its credentials."""

    @property
    def key(self) -> str:
        return RELAY_KEY_PREFIX + self.value


InputSource = Literal["declared", "sql", "observed", "alias"]
"""How an input or output became known: an inlet/outlet the task declares (``declared``), the
SQL of a SQL operator (``sql``), what a hook or object-storage path reported while the body ran
(``observed``, SQL run through a hook included), or an asset an ``AssetAlias`` outlet resolved to
(``alias``)."""

MAX_INPUTS = 1_000


class _Strict(BaseModel):
    # Field descriptions are given with ``Field(description=...)``, not as attribute docstrings:
    # pydantic finds those by walking the stack and calling ``inspect.getmodule`` per class, which
    # costs ~0.1 s in a task process that has Airflow loaded.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskInstanceIdentity(_Strict):
    """One task-instance try: the unit a decision is recorded for (idempotently)."""

    dag_id: str = Field(min_length=1, max_length=250)
    task_id: str = Field(min_length=1, max_length=250)
    run_id: str = Field(min_length=1, max_length=250)
    map_index: int = Field(default=-1, ge=-1)
    try_number: int = Field(ge=0)


class InputSpec(_Strict):
    """A declared input as the worker saw it (the server normalizes it again)."""

    namespace: Namespace
    name: str = Field(min_length=1, max_length=3000)


class DecisionRequest(_Strict):
    """What a worker sends before a task body runs."""

    task: TaskInstanceIdentity
    zone: str | None = Field(default=None, max_length=100)
    zone_source: Literal["task", "group", "dag", "none"] = "none"
    inputs: list[InputSpec] = Field(default_factory=list, max_length=MAX_INPUTS)
    uncheckable: list[str] = Field(
        default_factory=list,
        max_length=MAX_INPUTS,
        description="Inlets that name no checkable data, described by the worker.",
    )
    sql_reads: list[InputSpec] = Field(
        default_factory=list,
        max_length=MAX_INPUTS,
        description="Tables the task's rendered SQL reads (SQL operators): checked like inlets when "
        "the policy knows them, an ``undeclared_input`` violation when neither an inlet nor the policy does.",
    )


class FindingModel(_Strict):
    rule: str
    rules: list[str]
    input: str | None
    reason: str
    remediation: str
    exemption: str | None = None


class DecisionResponse(_Strict):
    """The server's answer; ``allowed`` is false only for an enforced deny."""

    decision_id: int
    outcome: Literal["allow", "deny", "dry_run", "exempted"]
    allowed: bool
    zone: str | None
    mode: Mode | None
    policy_version: str
    findings: list[FindingModel]
    already_recorded: bool = Field(
        default=False,
        description="True when this try had been decided before (a retried request, a resumed deferral).",
    )


class OutputSpec(InputSpec):
    """An output a try wrote, with how it became known."""

    source: InputSource = "declared"


class ObservedInput(InputSpec):
    """An input a hook or object-storage path reported while the body ran."""

    source: Literal["observed"] = "observed"


class ObservationRequest(_Strict):
    """What a running try reports its hooks read, before the rows reach the task's code.

    The zone is not claimed: the server decides in the zone of the try's recorded decision.
    """

    task: TaskInstanceIdentity
    inputs: list[ObservedInput] = Field(default_factory=list, max_length=MAX_INPUTS)
    uncheckable: list[str] = Field(
        default_factory=list,
        max_length=MAX_INPUTS,
        description="Reads that cannot be named (SQL the analysis refuses), described by the worker.",
    )
    outputs: list[OutputSpec] = Field(
        default_factory=list,
        max_length=MAX_INPUTS,
        description="What the same statements wrote: labeled at once, since they already ran.",
    )


class OutputsRequest(_Strict):
    """What a worker sends after a task body succeeded: the data it wrote (outlets, SQL targets,
    what hooks and object-storage paths wrote, assets ``AssetAlias`` outlets resolved to)."""

    task: TaskInstanceIdentity
    outputs: list[OutputSpec] = Field(default_factory=list, max_length=MAX_INPUTS)


class OutputLabels(_Strict):
    namespace: Namespace
    name: str
    categories: list[str]
    consented: list[str]
    aggregated: bool
    origins: list[str]
    reclassified_by: list[str]


class OutputsResponse(_Strict):
    """The labels each output now carries from this try (the asset's own labels are their union)."""

    decision_id: int
    reclassifier: str | None
    outputs: list[OutputLabels]
    already_recorded: bool = False


class ConnectionTypeRequest(_Strict):
    """A try asks which type (``postgres``, ``snowflake``, ...) the connection of its SQL has."""

    task: TaskInstanceIdentity
    conn_id: str = Field(min_length=1, max_length=250)


class ConnectionTypeResponse(_Strict):
    conn_type: str | None = Field(
        description="``None``: no such connection where the api-server looks (its secrets backends, "
        "environment, metadata database); the SQL is then read as generic SQL."
    )


class RelayAnswer(_Strict):
    """What the decision service stores as the XCom value of a relay key, for the try to read back.

    ``status`` is an HTTP status code: 200 with ``body`` (the method's response), otherwise
    ``detail`` says why (404 no such task instance, 409 another try or different claims, 422 a
    malformed request, 503 no valid policy on the api-server, 500 an error of the service).
    """

    status: int = Field(ge=100, le=599)
    body: dict[str, Any] | None = None
    detail: str | None = None
