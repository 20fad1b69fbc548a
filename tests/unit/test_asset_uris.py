"""Airflow's asset URI rules, as installed here (Airflow 3.3.2, the postgres provider): pinned.

The policy's catalog patterns are put through these rules; if an upgrade changes them, these
tests say so before a pattern silently stops matching.
"""

from __future__ import annotations

import contextlib

import pytest
from airflow.sdk import Asset

from airflow_policyzones.asset_uris import AirflowUriNormalizer, airflow_uri_normalizer, stored_form
from airflow_policyzones.policy.patterns import UriPattern, normalize_uri_pattern

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("uri", "stored"),
    [
        ("postgres://db/warehouse/raw/purchases", "postgres://db:5432/warehouse/raw/purchases"),
        ("postgres://db:5432/warehouse/raw/purchases", "postgres://db:5432/warehouse/raw/purchases"),
        ("postgres://db:6543/warehouse/raw/purchases", "postgres://db:6543/warehouse/raw/purchases"),
        ("postgresql://db/warehouse/raw/purchases", "postgres://db:5432/warehouse/raw/purchases"),
        ("POSTGRES://DB/warehouse/raw/purchases/", "postgres://DB:5432/warehouse/raw/purchases"),
        ("postgres://user:secret@db/warehouse/raw/purchases", "postgres://db:5432/warehouse/raw/purchases"),
        ("postgres://db/warehouse//purchases", "postgres://db:5432/warehouse/default/purchases"),
        ("s3://lake/raw/purchases/daily/", "s3://lake/raw/purchases/daily"),
        ("s3://lake/raw/purchases/daily#x", "s3://lake/raw/purchases/daily"),
    ],
)
def test_airflow_stores_asset_uris_in_this_form(uri: str, stored: str) -> None:
    with pytest.warns(UserWarning) if "secret" in uri else contextlib.nullcontext():
        assert Asset(uri).uri == stored
    assert AirflowUriNormalizer()(uri) == stored


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("postgres://db/warehouse/purchases", "must contain database, schema, and table names"),
        ("postgres:///warehouse/raw/purchases", "must contain a host"),
    ],
)
def test_airflow_refuses_postgres_uris_without_host_database_schema_and_table(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Asset(uri)
    with pytest.raises(ValueError, match=reason):
        AirflowUriNormalizer()(uri)
    assert stored_form(uri, normalize_uri=AirflowUriNormalizer()) == uri  # explain keeps it as given


def test_schemes_with_rules_of_their_own() -> None:
    rules = airflow_uri_normalizer()

    assert rules is not None
    assert rules.has_rules("postgres") and rules.has_rules("postgresql")
    assert not rules.has_rules("s3")  # no amazon provider installed here
    assert not rules.has_rules("file")  # Airflow applies none to file:// URIs


def test_catalog_patterns_through_airflow_rules_keep_their_wildcards() -> None:
    rules = AirflowUriNormalizer()

    assert normalize_uri_pattern("postgres://db/warehouse/raw/*", normalize_uri=rules) == UriPattern(
        "postgres://db/warehouse/raw/*", ("postgres://db:5432/warehouse/raw/*",)
    )
    assert normalize_uri_pattern("postgresql://db/warehouse/**", normalize_uri=rules).patterns == (
        "postgres://db:5432/warehouse/*/*",
    )
    rejected = normalize_uri_pattern("postgres://db/warehouse/*", normalize_uri=rules)
    assert rejected.problem is not None and "database, schema, and table" in rejected.problem
