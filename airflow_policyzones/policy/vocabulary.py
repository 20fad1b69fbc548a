"""The words the provider speaks in: rule ids, outcomes, modes and input namespaces.

One definition each, used by the engine, the records, the read API's parameters, the pages, the
CLI and the benchmarks; pure Python (the core's purity test covers it).
"""

from __future__ import annotations

from enum import Enum
from typing import Literal, get_args

Mode = Literal["enforce", "dry_run"]
"""A zone's mode: ``enforce`` stops a denied task, ``dry_run`` records the violations and runs it."""
MODES: tuple[Mode, ...] = get_args(Mode)
"""Every :data:`Mode`, in the order the pages list them."""

Namespace = Literal["asset", "table"]
"""What an input name is: an Airflow asset URI or a table name."""


class Rule(str, Enum):
    """Stable rule ids, in the order they are checked (README, "Decision rules")."""

    UNKNOWN_ZONE = "unknown_zone"
    UNZONED_TASK = "unzoned_task"
    ZONE_MEMBERSHIP = "zone_membership"
    CATEGORY_NOT_ALLOWED = "category_not_allowed"
    UNLABELED_INPUT = "unlabeled_input"
    CONSENT_MISSING = "consent_missing"
    NOT_AGGREGATED = "not_aggregated"
    UNSANCTIONED_FLOW = "unsanctioned_flow"
    UNCHECKABLE_INPUT = "uncheckable_input"
    """An inlet that names no checkable data (a string, ``None``, an unresolved AssetAlias)."""
    UNDECLARED_INPUT = "undeclared_input"
    """Data a task reads (through its SQL, or a hook while it runs) that is neither declared as an
    inlet nor known to the policy."""
    CONNECTION_NOT_ALLOWED = "connection_not_allowed"
    """A try asked for an Airflow connection its zone may not use (the credentials are refused)."""
    VARIABLE_NOT_ALLOWED = "variable_not_allowed"
    """A try asked for an Airflow variable its zone may not use (the value is refused)."""
    CLAIMS_DIFFER_FROM_PARSED_DAG = "claims_differ_from_parsed_dag"
    """The zone or inlets a worker claimed for a try are not those of the task the dag-processor
    parsed (its serialized DAG): the worker's copy of the DAG cannot be believed."""
    UNDECIDED_RUN = "undecided_run"
    """A try reported success without a decision that let it run: the check in its task process
    was removed or gone around (the api-server fails the try instead)."""


class Outcome(str, Enum):
    """What happened to the task: only ``deny`` stops it."""

    ALLOW = "allow"
    DENY = "deny"
    DRY_RUN = "dry_run"
    """Violations found in a dry-run zone: the task runs, the violations are recorded."""
    EXEMPTED = "exempted"
    """Every violation is covered by an unexpired exemption."""


ViolationOutcome = Literal["deny", "dry_run", "exempted"]
"""The outcome of a violation (a finding of a decision that did not allow): every :class:`Outcome`
but ``allow``, by value (a parameter typed so lists exactly these, and says so when refused)."""
VIOLATION_OUTCOMES: tuple[Outcome, ...] = tuple(Outcome(value) for value in get_args(ViolationOutcome))
""":data:`ViolationOutcome` as :class:`Outcome` members (making it fails on a value that is none)."""

RULE_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    Rule.UNKNOWN_ZONE.value: (
        "The task's zone is not defined in the policy.",
        "A task claims a zone that the policy does not declare, so nothing says what data it may read.",
    ),
    Rule.UNZONED_TASK.value: (
        "The task has no zone.",
        "A task without a zone reads inputs (or the policy requires every task to have a zone).",
    ),
    Rule.ZONE_MEMBERSHIP.value: (
        "The DAG is not a member of the task's zone.",
        "Zones list the DAGs that may run in them, so that an author cannot pick the most permissive zone.",
    ),
    Rule.CATEGORY_NOT_ALLOWED.value: (
        "An input carries a data category the zone does not allow.",
        "The zone's purpose may not use this kind of data.",
    ),
    Rule.UNLABELED_INPUT.value: (
        "An input has no labels and the zone does not accept unlabeled data.",
        "No catalog entry matches the input, so what it holds is unknown.",
    ),
    Rule.CONSENT_MISSING.value: (
        "An input is not consented for the zone's purpose.",
        "The zone requires consent for its purpose; read a consent-filtered version of the data.",
    ),
    Rule.NOT_AGGREGATED.value: (
        "An input holds user-level rows and the zone accepts aggregated data only.",
        "Read the output of an aggregating reclassifier instead.",
    ),
    Rule.UNSANCTIONED_FLOW.value: (
        "An input carries data from a zone that may not flow into this one.",
        "Data leaves a zone only along sanctioned flows, optionally through named reclassifiers.",
    ),
    Rule.UNCHECKABLE_INPUT.value: (
        "An inlet names no checkable data.",
        "Inlets that are not Assets (strings, None, run-time AssetAliases) cannot be labelled or checked.",
    ),
    Rule.UNDECLARED_INPUT.value: (
        "A task reads data (in its SQL, or through a hook) that nothing labels.",
        "The table is neither declared as an inlet nor known to the policy's catalog or propagated labels.",
    ),
    Rule.CONNECTION_NOT_ALLOWED.value: (
        "A task asked for an Airflow connection its zone may not use.",
        "The api-server refuses the connection's credentials to tries in zones whose purpose may not use "
        "the data it reaches (policy 'connections:').",
    ),
    Rule.VARIABLE_NOT_ALLOWED.value: (
        "A task asked for an Airflow variable its zone may not use.",
        "The api-server refuses the variable to tries in zones whose purpose may not use it "
        "(policy 'variables:').",
    ),
    Rule.CLAIMS_DIFFER_FROM_PARSED_DAG.value: (
        "What a running task claimed (zone, inlets) differs from what the dag-processor parsed.",
        "The decision service decides on the DAG as parsed (and shown in the UI); a task whose "
        "runtime claims differ is denied, with both shown.",
    ),
    Rule.UNDECIDED_RUN.value: (
        "A task reported success without a decision that let it run.",
        "The zone check in the task process was removed or gone around; the api-server records "
        "the try as failed instead of successful (recorded only, in a dry_run zone).",
    ),
}
"""Per rule id (the value of a :class:`Rule`): a one-line summary and a longer explanation, as
the CLI's SARIF report and the docs show them (a test keeps this in step with :class:`Rule`)."""
