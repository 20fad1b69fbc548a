"""The pure core: policy models, loading and the decision engine. Imports nothing from Airflow."""

from __future__ import annotations

from airflow_policyzones.policy.engine import (
    AssetLabels,
    Decision,
    Finding,
    InputRef,
    LabeledInput,
    Outcome,
    PolicyEngine,
    Rule,
    TaskContext,
)
from airflow_policyzones.policy.errors import PolicyError, PolicyIssue
from airflow_policyzones.policy.loader import LoadedPolicy, load_policy, load_policy_bytes
from airflow_policyzones.policy.models import Policy

__all__ = [
    "AssetLabels",
    "Decision",
    "Finding",
    "InputRef",
    "LabeledInput",
    "LoadedPolicy",
    "Outcome",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "PolicyIssue",
    "Rule",
    "TaskContext",
    "load_policy",
    "load_policy_bytes",
]
