"""The shapes of a data-use evidence report (:func:`airflow_policyzones.db.evidence.data_use_evidence`).

Pydantic models, frozen, JSON-ready (``report.model_dump(mode="json")``): the CLI prints them as
text, JSON or HTML, the UI's Data use page renders the same objects. Moments are timezone-aware
UTC datetimes; counts are plain integers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Basis = Literal["zone", "sanctioned_flow", "exemption", "dry_run"]
"""Why an allowed use was allowed: the zone admits the data as it is (``zone``), the data came from
another zone along a sanctioned flow (``sanctioned_flow``, maybe through reclassifiers), an
exemption waived the finding (``exemption``), or the zone runs in dry-run and recorded the finding
(``dry_run``)."""

SOURCE_ORIGIN = "(source)"
"""The origin of data no zone wrote (catalog-labeled source data) in :class:`FlowCell`."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class EvidenceQuery(_Model):
    """What was asked, with the zones a purpose resolved to."""

    category: str | None
    asset: str | None
    """A glob over recorded input names (``*`` any characters, ``?`` one)."""
    zone: str | None
    purpose: str | None
    zones: list[str]
    """The reading zones the report covers (empty: every zone)."""
    since: datetime
    until: datetime
    readable_dag_ids: int | None = None
    """How many DAGs the reader may see (``None``: every DAG)."""


class DerivationStep(_Model):
    """One asset on the way the data got to its reader, newest write first."""

    asset: str
    namespace: str
    written_by: str | None
    """``dag_id.task_id`` of the try whose write gave the asset its labels (``None``: labeled source)."""
    zone: str | None
    reclassifier: str | None
    """The reclassifier that write was (its outputs got the labels the policy declares)."""
    recorded_at: datetime | None


class ExemptionRef(_Model):
    ticket: str
    expires_at: datetime | None
    """From the policy this report ran with; ``None`` when that policy no longer lists the ticket."""
    reason: str | None


class AllowedUse(_Model):
    """Tries of one task that read one input of the asked data and were let run."""

    dag_id: str
    task_id: str
    zone: str | None
    input: str
    namespace: str
    categories: list[str]
    basis: Basis
    basis_text: str
    """One phrase, e.g. ``sanctioned flow ads_optimization → ai_training through reclassifier r``."""
    reclassifiers: list[str]
    origins: list[str]
    consented: list[str]
    aggregated: bool
    exemption: ExemptionRef | None
    runs: int
    """Distinct DAG runs."""
    tries: int
    first_at: datetime
    last_at: datetime
    first_decision_id: int
    last_decision_id: int
    last_run_id: str
    policy_versions: list[str]
    path: list[DerivationStep]
    """How the input got its labels, newest write first (empty: labeled source data)."""
    path_text: str | None
    """The same path as violations show it (``a (written by d.t in z) ← b``)."""
    path_as_of_use: bool = True
    """The path is the one recorded before the last use; ``False``: nothing was written to the
    input before it (its writer ran later), so the path is the one recorded since."""


class BlockedAttempt(_Model):
    """One try stopped before the asked data reached it (one entry per try and input)."""

    decision_id: int
    violation_id: int | None
    """The finding on this input; ``None`` when the try was denied for another of its inputs."""
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    zone: str | None
    decided_at: datetime
    input: str
    rule: str | None
    rules: list[str]
    reason: str | None
    policy_version: str


class FlowCell(_Model):
    """Reads of one category in one zone of data from one origin zone, in the period."""

    origin: str
    """An origin zone of the data read, or :data:`SOURCE_ORIGIN`."""
    zone: str
    category: str
    reads: int
    """Reads that reached the zone (allowed, exempted, dry-run)."""
    blocked: int
    forbidden: bool
    """The policy (the one this report ran with) does not let this data into ``zone`` from
    ``origin`` (with the reclassifier passes it had); forbidden and sanctioned reads of the same
    origin, zone and category are two cells."""


class PolicyVersionInForce(_Model):
    version: str
    short: str
    first_used_at: datetime
    last_used_at: datetime
    decisions: int
    """Decisions recorded under it in the period."""
    text_stored: bool


class UncheckedTryOut(_Model):
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    state: str | None
    start_date: datetime | None


class BlindTaskOut(_Model):
    dag_id: str
    task_id: str
    zone: str | None
    blind_tries: int
    tries_with_reads: int
    last_decision_id: int


class ChainHeadOut(_Model):
    """The records the report relied on, as the hash chain names them."""

    head: str
    """sha256 over the digests of the chained decision rows the report used, in id order (the fold
    ``verify-records`` computes its head with)."""
    decisions: int
    """Chained decision rows folded into ``head``."""
    unchained_decisions: int
    """Rows used that were recorded before the chain started (no digest: not verifiable)."""
    last_id: int | None
    chain_started_at: datetime | None
    first_chained_id: int | None
    verify_command: str
    """The command that recomputes every digest of the period."""


class Completeness(_Model):
    """How complete the records behind the answer are: the answer is only as strong as this."""

    complete: bool
    """No known gap: every try in the period was checked, none ran blind in the zones asked about,
    enforcement is on here, the period lies within the records and every row used is chained."""
    statement: str
    caveats: list[str]
    """One sentence per gap found."""
    notes: list[str] = []
    """Facts about the period that do not weaken the answer (e.g. it starts before the first
    recorded decision, but no task try started before that)."""
    decisions_in_period: int
    """Decisions recorded in the period (every zone, readable DAGs)."""
    first_decision_at: datetime | None
    """The provider's first recorded decision (``None``: none ever)."""
    enforcement_enabled: bool
    """``[policyzones] enabled`` where this report ran."""
    unchecked_tries: int
    unchecked: list[UncheckedTryOut]
    """The first ones (at most 50)."""
    blind_tasks: list[BlindTaskOut]
    policy_versions: list[PolicyVersionInForce]
    chain: ChainHeadOut


class DataUseEvidence(_Model):
    """The answer to "did this data reach this zone (purpose) in this period?" from the records."""

    query: EvidenceQuery
    generated_at: datetime
    policy_version: str
    """The policy this report ran with (names, flows and exemptions are judged by it)."""
    verdict: str
    uses: list[AllowedUse]
    uses_total: int
    """Allowed tries (one per try and input); ``uses`` groups them per task, input and basis."""
    blocked: list[BlockedAttempt]
    blocked_total: int
    """All blocked attempts; ``blocked`` lists the first ones (newest first, at most 1,000)."""
    matrix: list[FlowCell]
    """What flowed in the period for the asked data into the asked zones (every zone when none
    was asked), origin → zone."""
    completeness: Completeness
    limits: list[str] = Field(default_factory=list)
    """What this kind of report cannot see (constant text, shown with every report)."""
