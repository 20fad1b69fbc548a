"""Catalog uri patterns put through the platform's URI rules (a stand-in for Airflow's here).

The stand-in reproduces what Airflow 3.3.2 with the postgres provider does to an Asset's URI;
tests/unit/test_asset_uris.py pins that behaviour against the real thing.
"""

from __future__ import annotations

import fnmatch
import textwrap
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_policyzones.policy import InputRef, Outcome, PolicyEngine, TaskContext, load_policy_bytes
from airflow_policyzones.policy.patterns import UriPattern, normalize_uri_pattern


class PostgresRules:
    """Airflow's generic URI rules plus the postgres provider's (port 5432, database/schema/table)."""

    def __call__(self, uri: str, /) -> str:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        parts = parts._replace(
            scheme=scheme,
            netloc=parts.netloc.rpartition("@")[2],
            path=parts.path.rstrip("/") or "/",
            fragment="",
        )
        if scheme in {"postgres", "postgresql"}:
            if not parts.netloc:
                raise ValueError("URI format postgres:// must contain a host")
            if parts.port is None:
                parts = parts._replace(netloc=parts.netloc.rstrip(":") + ":5432")
            path = parts.path.split("/")
            if len(path) != 4:
                raise ValueError("URI format postgres:// must contain database, schema, and table names")
            if not path[2]:
                path[2] = "default"
            parts = parts._replace(scheme="postgres", path="/".join(path))
        return urlunsplit(parts)

    def has_rules(self, scheme: str, /) -> bool:
        return scheme in {"postgres", "postgresql"}


RULES = PostgresRules()


@pytest.mark.parametrize(
    ("pattern", "compiled"),
    [
        ("postgres://db/warehouse/raw/purchases", ("postgres://db:5432/warehouse/raw/purchases",)),
        ("postgres://db/warehouse/raw/*", ("postgres://db:5432/warehouse/raw/*",)),
        ("postgres://db:5432/warehouse/raw/*", ("postgres://db:5432/warehouse/raw/*",)),
        ("postgres://db:6543/warehouse/raw/*", ("postgres://db:6543/warehouse/raw/*",)),
        ("postgresql://DB/warehouse/raw/purch?ses", ("postgres://db:5432/warehouse/raw/purch?ses",)),
        ("postgres://db/warehouse/raw/[pq]urchase_*", ("postgres://db:5432/warehouse/raw/[pq]urchase_*",)),
        ("postgres://db/warehouse/*/purchases", ("postgres://db:5432/warehouse/*/purchases",)),
        ("postgres://db/warehouse/raw/**", ("postgres://db:5432/warehouse/raw/**",)),
        # '**' that the rules reject as one segment: the depths postgres accepts, as '*' segments
        ("postgres://db/warehouse/**", ("postgres://db:5432/warehouse/*/*",)),
        ("postgres://db/**", ("postgres://db:5432/*/*/*",)),
        ("postgres://db/**/purchases", ("postgres://db:5432/*/*/purchases",)),
        # a wildcard host: with the default port, and as written (it may cover explicit ports)
        (
            "postgres://*/warehouse/raw/*",
            ("postgres://*:5432/warehouse/raw/*", "postgres://*/warehouse/raw/*"),
        ),
        ("postgres://db?/w/r/t", ("postgres://db?:5432/w/r/t", "postgres://db?/w/r/t")),
        # the rules' other rewrites: user info and fragment dropped, empty schema named 'default'
        ("postgres://user:pw@db/w/r/*", ("postgres://db:5432/w/r/*",)),
        ("postgres://db/w/r/t#part", ("postgres://db:5432/w/r/t",)),
        ("postgres://db/warehouse//t", ("postgres://db:5432/warehouse/default/t",)),
        # schemes without rules of their own, and patterns left as written
        ("s3://Lake/raw/purchases/**", ("s3://lake/raw/purchases/**",)),
        ("*://db/w/r/t", ("*://db/w/r/t",)),
        ("postgres://**", ("postgres://**",)),
        ("purchases", ("purchases",)),
    ],
)
def test_uri_patterns_are_normalized_like_asset_uris_keeping_wildcards(
    pattern: str, compiled: tuple[str, ...]
) -> None:
    assert normalize_uri_pattern(pattern, normalize_uri=RULES) == UriPattern(pattern, compiled)


def test_without_rules_patterns_only_fold_case() -> None:
    assert normalize_uri_pattern("POSTGRES://DB/w/r/*", normalize_uri=None) == UriPattern(
        "POSTGRES://DB/w/r/*", ("postgres://db/w/r/*",)
    )


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("postgres://db/warehouse/raw", "must contain database, schema, and table names"),
        ("postgres://db/a/b/c/d/*", "must contain database, schema, and table names"),
        ("postgres:///w/r/t", "must contain a host"),
        ("postgres://db:*/w/r/t", "db:*"),  # the reason names the wildcard as written
    ],
)
def test_patterns_the_rules_reject_can_never_match(pattern: str, reason: str) -> None:
    result = normalize_uri_pattern(pattern, normalize_uri=RULES)

    assert result.problem is not None and "can never match" in result.problem
    assert reason in result.problem
    assert "pzglob" not in result.problem
    assert result.hint


def test_placeholders_the_rules_do_not_keep_are_reported() -> None:
    class Upper(PostgresRules):
        def __call__(self, uri: str, /) -> str:
            return super().__call__(uri).upper()

    result = normalize_uri_pattern("postgres://db/w/r/*", normalize_uri=Upper())

    assert result.problem is not None and "cannot follow" in result.problem
    assert result.patterns == ("postgres://db/w/r/*",)  # matched as written


# --- soundness: what the pattern matched as written, it matches in stored form ---------------------

_NAME = st.text("abcp_", min_size=1, max_size=4)
_GLOB_SEGMENT = st.one_of(
    _NAME,
    st.just("*"),
    _NAME.map(lambda name: name + "*"),
    _NAME.map(lambda name: "?" + name[1:] if name else "?"),
)


@settings(max_examples=300, deadline=None)
@given(
    host=st.sampled_from(["db", "DB", "db:5432", "db:6543", "*", "d?"]),
    path=st.lists(_GLOB_SEGMENT, min_size=3, max_size=3)
    | st.lists(_GLOB_SEGMENT, min_size=1, max_size=2).map(lambda segments: [*segments, "**"]),
    data=st.data(),
)
def test_stored_form_of_every_uri_the_pattern_matches_as_written_is_matched(
    host: str, path: list[str], data: st.DataObject
) -> None:
    pattern = f"postgres://{host}/{'/'.join(path)}"
    policy = textwrap.dedent(
        f"""
        categories: {{c: {{}}}}
        catalog: [{{uri: {pattern!r}, categories: [c]}}]
        zones: {{z: {{purpose: p, allowed_categories: [c], members: {{dag_ids: ["*"]}}}}}}
        """
    )
    engine = PolicyEngine(load_policy_bytes(policy.encode(), normalize_uri=RULES))
    # a URI the pattern matches as written, with database, schema and table as postgres needs
    concrete_host = data.draw(st.sampled_from(["db", "db:5432", "db:6543", "dx"]))
    segments = data.draw(st.lists(_NAME, min_size=3, max_size=3))
    uri = f"postgres://{concrete_host}/{'/'.join(segments)}"
    written = pattern.lower().split("/")
    if not _matches(written, uri.split("/")):
        return
    assert engine.labels_for(InputRef.asset(RULES(uri))) is not None, (pattern, uri, RULES(uri))


def _matches(parts: list[str], segments: list[str]) -> bool:
    if not parts:
        return not segments
    if parts[0] == "**":
        return any(_matches(parts[1:], segments[skip:]) for skip in range(len(segments) + 1))
    return bool(segments) and fnmatch.fnmatchcase(segments[0], parts[0]) and _matches(parts[1:], segments[1:])


# --- validation: located warnings -----------------------------------------------------------------


def test_validation_warns_where_a_uri_pattern_can_never_match_a_stored_uri() -> None:
    text = textwrap.dedent(
        """\
        categories: {c: {}}
        catalog:
          - uri: "postgres://db/warehouse/*/purchases"
            categories: [c]
          - uri: "postgres://db/warehouse/raw"
            categories: [c]
          - uri_regex: "postgres://db/warehouse/raw/.*"
            categories: [c]
          - uri_regex: "s3://lake/.*"
            categories: [c]
        zones:
          z: {purpose: p, allowed_categories: [c], members: {dag_ids: ['*']}}
        """
    )

    loaded = load_policy_bytes(text.encode(), source="policy.yaml", normalize_uri=RULES)

    rejected, regex = loaded.warnings
    assert (rejected.field, rejected.line, rejected.column, rejected.severity) == (
        "catalog[1].uri",
        5,
        5,
        "warning",
    )
    assert "can never match" in rejected.message and "database, schema, and table" in rejected.message
    assert rejected.format().startswith("policy.yaml:5:5: warning in catalog[1].uri: ")
    assert (regex.field, regex.line) == ("catalog[2].uri_regex", 7)
    assert "postgres://" in regex.message and "uri' glob" in regex.hint
    # without the platform's rules there is nothing to say about these
    assert load_policy_bytes(text.encode(), source="policy.yaml").warnings == ()


def test_the_engine_compiles_the_stored_form_computed_at_load() -> None:
    text = """
        categories: {c: {}}
        catalog: [{uri: "postgres://db/warehouse/raw/*", categories: [c]}]
        zones: {z: {purpose: p, allowed_categories: [c], members: {dag_ids: ['*']}}}
    """
    engine = PolicyEngine(load_policy_bytes(textwrap.dedent(text).encode(), normalize_uri=RULES))
    literal = PolicyEngine(load_policy_bytes(textwrap.dedent(text).encode()))

    stored = InputRef.asset("postgres://db:5432/warehouse/raw/purchases")
    assert engine.labels_for(stored) is not None
    assert literal.labels_for(stored) is None  # the silent miss this fixes


def test_an_exemption_written_like_the_catalog_waives_the_stored_input() -> None:
    text = """
        categories: {c: {}, d: {}}
        catalog: [{uri: "postgres://db/warehouse/raw/*", categories: [c]}]
        zones: {z: {purpose: p, allowed_categories: [d], members: {dag_ids: ['*']}}}
        exemptions:
          - zone: z
            asset: "postgres://db/warehouse/raw/*"
            reason: backfill
            ticket: PRIV-1
            expires: 2999-01-01
    """
    engine = PolicyEngine(load_policy_bytes(textwrap.dedent(text).encode(), normalize_uri=RULES))
    stored = InputRef.asset("postgres://db:5432/warehouse/raw/purchases")
    decision = engine.decide(
        task=TaskContext(dag_id="d", task_id="t"),
        zone="z",
        inputs=engine.label([stored]),
        now=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    assert decision.outcome is Outcome.EXEMPTED
    assert [finding.exemption for finding in decision.findings] == ["PRIV-1"]
