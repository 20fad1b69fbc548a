"""The pure core: policy models, loading and the decision engine. Imports nothing from Airflow.

The SQL names (``tables_in_sql`` and friends) are imported on first use: sqlglot takes longer to
import than the rest of the core, and DAG parsing and workers that run no SQL check never need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from airflow_policyzones.policy.engine import (
    AssetLabels,
    Decision,
    Finding,
    InputRef,
    LabeledInput,
    PolicyEngine,
    TaskContext,
)
from airflow_policyzones.policy.errors import PolicyError, PolicyIssue
from airflow_policyzones.policy.flow_models import (
    FlowError,
    FlowFinding,
    FlowPath,
    FlowReport,
    FlowWarning,
    PathStep,
    TaskNode,
)
from airflow_policyzones.policy.flows import analyze_flows
from airflow_policyzones.policy.lineage import (
    UNLABELED,
    LineageError,
    Reclassification,
    ReclassifierSpec,
    at_least_as_restricted,
    effective_labels,
    output_labels,
    reclassify,
    union_labels,
)
from airflow_policyzones.policy.loader import LoadedPolicy, load_policy, load_policy_bytes
from airflow_policyzones.policy.models import Policy
from airflow_policyzones.policy.vocabulary import Mode, Namespace, Outcome, Rule

if TYPE_CHECKING:
    from airflow_policyzones.policy.sql import SqlParseError, SqlTables, dialect_for_connection, tables_in_sql

_LAZY = {
    "SqlParseError": "airflow_policyzones.policy.sql",
    "SqlTables": "airflow_policyzones.policy.sql",
    "dialect_for_connection": "airflow_policyzones.policy.sql",
    "tables_in_sql": "airflow_policyzones.policy.sql",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "UNLABELED",
    "AssetLabels",
    "Decision",
    "Finding",
    "FlowError",
    "FlowFinding",
    "FlowPath",
    "FlowReport",
    "FlowWarning",
    "InputRef",
    "LabeledInput",
    "LineageError",
    "LoadedPolicy",
    "Mode",
    "Namespace",
    "Outcome",
    "PathStep",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "PolicyIssue",
    "Reclassification",
    "ReclassifierSpec",
    "Rule",
    "SqlParseError",
    "SqlTables",
    "TaskContext",
    "TaskNode",
    "analyze_flows",
    "at_least_as_restricted",
    "dialect_for_connection",
    "effective_labels",
    "load_policy",
    "load_policy_bytes",
    "output_labels",
    "reclassify",
    "tables_in_sql",
    "union_labels",
]
