"""Loading policies: every kind of bad input becomes a located PolicyError, and nothing else escapes."""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_policyzones.policy import (
    InputRef,
    LoadedPolicy,
    PolicyEngine,
    PolicyError,
    PolicyIssue,
    TaskContext,
    load_policy,
    load_policy_bytes,
)
from airflow_policyzones.policy.loader import MAX_EXPANDED_NODES

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)

VALID = """\
version: 1
categories:
  purchases: {}
  clicks: {}
catalog:
  - uri: "s3://lake/raw/purchases/**"
    categories: [purchases]
zones:
  ads:
    purpose: ads
    allowed_categories:
      - purchases
      - clicks
    members:
      dag_ids: ["ads_*"]
  recs:
    purpose: recs
    allowed_categories: [clicks]
    members:
      dag_ids: ["recs_*"]
reclassifiers:
  daily:
    zone: ads
    dag_id: ads_reclassify
    task_id: aggregate
    outputs: {aggregated: true}
flows:
  - from: ads
    to: recs
    via: [daily]
exemptions:
  - zone: recs
    asset: "s3://lake/raw/purchases/**"
    reason: backfill
    ticket: PRIV-7
    expires: 2030-12-31
"""


def load_text(text: str, **kwargs: object) -> LoadedPolicy:
    return load_policy_bytes(textwrap.dedent(text).encode(), source="policy.yaml", now=NOW, **kwargs)  # type: ignore[arg-type]


def issues_of(text: str | bytes) -> list[PolicyIssue]:
    content = text if isinstance(text, bytes) else textwrap.dedent(text).encode()
    with pytest.raises(PolicyError) as caught:
        load_policy_bytes(content, source="policy.yaml", now=NOW)
    issues = caught.value.issues
    assert issues
    for issue in issues:
        assert issue.file == "policy.yaml"
        assert issue.hint, issue
        assert issue.message, issue
    return issues


def only_error(text: str | bytes) -> PolicyIssue:
    errors = [issue for issue in issues_of(text) if issue.severity == "error"]
    assert len(errors) == 1, errors
    return errors[0]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the ``occurrence``-th ``needle``."""
    seen = 0
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in text")


def edit(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_valid_policy_loads() -> None:
    loaded = load_text(VALID)
    assert loaded.warnings == ()
    assert loaded.source == "policy.yaml"
    assert set(loaded.policy.zones) == {"ads", "recs"}
    assert loaded.policy.flows[0].source == "ads"
    assert loaded.policy.flows[0].via == ["daily"]


def test_example_policy_loads_without_warnings() -> None:
    loaded = load_policy(Path(__file__).resolve().parents[3] / "dags_examples" / "policy.yaml", now=NOW)
    assert loaded.warnings == ()
    assert "ai_training" in loaded.policy.zones


# --- YAML syntax ----------------------------------------------------------------------------------


def test_malformed_yaml_reports_line_and_column() -> None:
    text = edit("    purpose: recs\n", "    purpose: recs\n   members: x\n")
    issue = only_error(text)
    assert issue.message.startswith("invalid YAML")
    assert issue.line == line_of(text, "   members: x")
    assert issue.column == 4
    assert "indentation" in issue.hint
    assert issue.location == f"policy.yaml:{issue.line}:4"


def test_unclosed_flow_mapping() -> None:
    text = "zones:\n  ads: {purpose: ads\n"
    issue = only_error(text)
    assert issue.message.startswith("invalid YAML")
    assert issue.line == 3
    assert issue.column == 1


def test_several_documents() -> None:
    issue = only_error("zones: {}\n---\nzones: {}\n")
    assert "another document" in issue.message
    assert issue.line == 2


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\n\n", id="blank"),
        pytest.param(b"# just a comment\n", id="comment"),
    ],
)
def test_empty_file(content: bytes) -> None:
    issue = only_error(content)
    assert issue.message == "the policy is empty"
    assert issue.line == 1
    assert "policy.yaml" in issue.hint


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("- zones\n- categories\n", "list", id="list"),
        pytest.param("just a string\n", "string", id="string"),
        pytest.param("42\n", "number", id="number"),
    ],
)
def test_top_level_not_a_mapping(text: str, kind: str) -> None:
    issue = only_error(text)
    assert issue.message == f"the policy must be a mapping of sections, not a {kind}"
    assert issue.line == 1
    assert "zones:" in issue.hint


def test_non_utf8_bytes() -> None:
    content = b"version: 1\nname: caf\xe9\n"
    issue = only_error(content)
    assert issue.message == "not UTF-8 text (byte 20)"
    assert issue.line == 2
    assert issue.column == 10
    assert "UTF-8" in issue.hint


def test_control_character() -> None:
    issue = only_error(b"version: 1\nname: a\x00b\n")
    assert issue.message == "invalid YAML: character 0x0000 is not allowed"
    assert (issue.line, issue.column) == (2, 8)
    assert "control character" in issue.hint


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    (issue,) = caught.value.issues
    assert issue.message == "policy file not found"
    assert issue.file == str(path)
    assert issue.line is None
    assert issue.hint
    assert str(path) in str(caught.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert caught.value.issues[0].message == "policy path is a directory"
    assert caught.value.issues[0].hint


def test_recursive_alias() -> None:
    text = "categories:\n  purchases: {}\nzones: &zones\n  ads: *zones\n"
    issue = only_error(text)
    assert issue.message == "an alias refers to the node that contains it"
    assert (issue.line, issue.column) == (3, 8)  # the anchor of the node that contains itself
    assert issue.hint == "remove the recursive alias"


@pytest.mark.parametrize("levels", [pytest.param(7, id="1e7-values")])
def test_alias_bomb_is_rejected_quickly(levels: int) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    text = "\n".join(lines) + "\n"  # 10**levels values once expanded
    started = time.perf_counter()
    issue = only_error(text)
    # Rejected before anything walks the expansion (walking 10**7 values took ~20 s; a larger bomb
    # would hang, so a regression should fail here rather than hang the suite).
    assert time.perf_counter() - started < 5
    assert issue.message == f"the policy expands to more than {MAX_EXPANDED_NODES:,} values through aliases"
    assert issue.line == 6  # a5 is the first list that is too big on its own
    assert "aliases" in issue.hint


def test_duplicate_zone_names() -> None:
    text = edit("  recs:\n", "  ads:\n    purpose: again\n    members: {dag_ids: ['*']}\n  recs:\n")
    issue = only_error(text)
    assert issue.message == f"duplicate key 'ads' (first defined on line {line_of(text, '  ads:')})"
    assert issue.line == line_of(text, "  ads:", occurrence=2)
    assert issue.column == 3
    assert issue.field == "zones"
    assert "merge" in issue.hint


# --- types and keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "message", "hint"),
    [
        pytest.param(
            "zones:\n",
            "zones: [ads, recs]\n",
            "zones: [ads",
            "zones",
            "expected a mapping, got list",
            "key: value",
            id="section-is-list",
        ),
        pytest.param(
            "    purpose: ads\n",
            "    purpose: ads\n    requires_consent: maybe\n",
            "requires_consent",
            "zones.ads.requires_consent",
            "valid boolean",
            "expected type",
            id="not-a-boolean",
        ),
        pytest.param(
            "    allowed_categories: [clicks]\n",
            "    allowed_categories: clicks\n",
            "allowed_categories: clicks",
            "zones.recs.allowed_categories",
            "expected a list, got string",
            "[a, b]",
            id="string-for-list",
        ),
        pytest.param(
            "    purpose: recs\n",
            "    purpose: recs\n    mode: enforced\n",
            "mode: enforced",
            "zones.recs.mode",
            "'enforce' or 'dry_run'",
            "values listed",
            id="bad-literal",
        ),
        pytest.param(
            "version: 1",
            "version: 2",
            "version: 2",
            "version",
            "Input should be 1",
            "values listed",
            id="bad-version",
        ),
        pytest.param(
            "    purpose: recs\n",
            "    purpose: 'recs purpose'\n",
            "recs purpose",
            "zones.recs.purpose",
            "'recs purpose' is not a valid name",
            "start with a letter",
            id="bad-name",
        ),
        pytest.param(
            "  recs:\n",
            "  'recs zone':\n",
            "recs zone",
            "zones.recs zone",
            "'recs zone' is not a valid name",
            "start with a letter",
            id="bad-zone-name-key",
        ),
        pytest.param(
            "    purpose: recs\n",
            "",
            "  recs:",
            "zones.recs.purpose",
            "required field 'purpose' is missing",
            "add 'purpose:'",
            id="missing-field",
        ),
        pytest.param(
            "    ticket: PRIV-7\n",
            "    ticket: ''\n",
            "ticket: ''",
            "exemptions[0].ticket",
            "'ticket' must not be empty",
            "give 'ticket' a value",
            id="empty-string",
        ),
        pytest.param(
            "    expires: 2030-12-31\n",
            "    expires: next tuesday\n",
            "next tuesday",
            "exemptions[0].expires",
            "expected a date (YYYY-MM-DD)",
            "README",
            id="bad-date",
        ),
        pytest.param(
            "    expires: 2030-12-31\n",
            "    expires: 20301231\n",
            "20301231",
            "exemptions[0].expires",
            "expected a date (YYYY-MM-DD)",
            "README",
            id="number-for-date",
        ),
        pytest.param(
            '  - uri: "s3://lake/raw/purchases/**"\n',
            '  - uri: "s3://lake/raw/purchases/**"\n    table: t\n',
            'uri: "s3://lake',
            "catalog[0]",
            "give exactly one of 'uri', 'table'",
            "README",
            id="two-patterns",
        ),
        pytest.param(
            '  - uri: "s3://lake/raw/purchases/**"\n',
            "  - description: nothing\n",
            "description: nothing",
            "catalog[0]",
            "(found none)",
            "README",
            id="no-pattern",
        ),
    ],
)
def test_wrong_types_and_values(old: str, new: str, needle: str, field: str, message: str, hint: str) -> None:
    text = edit(old, new) if old != "zones:\n" else "categories: {}\n" + new
    issue = only_error(text)
    assert issue.field == field
    assert message in issue.message
    assert hint in issue.hint
    assert issue.line == line_of(text, needle)


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "suggestion"),
    [
        pytest.param("zones:", "zone:", "zone:", "zone", "zones", id="top-level"),
        pytest.param(
            "    purpose: recs\n",
            "    purpose: recs\n    alowed_categories: [x]\n",
            "alowed_categories",
            "zones.recs.alowed_categories",
            "allowed_categories",
            id="zone-field",
        ),
        pytest.param(
            '      dag_ids: ["recs_*"]\n',
            '      dag_id: ["recs_*"]\n',
            "dag_id:",
            "zones.recs.members.dag_id",
            "dag_ids",
            id="members-field",
        ),
        pytest.param(
            "    categories: [purchases]\n",
            "    categories: [purchases]\n    aggregate: true\n",
            "aggregate:",
            "catalog[0].aggregate",
            "aggregated",
            id="catalog-field",
        ),
        pytest.param(
            "    via: [daily]\n",
            "    via: [daily]\n    too: recs\n",
            "too:",
            "flows[0].too",
            "to",
            id="flow-field",
        ),
        pytest.param(
            "    outputs: {aggregated: true}\n",
            "    outputs: {agregated: true}\n",
            "agregated",
            "reclassifiers.daily.outputs.agregated",
            "aggregated",
            id="reclassifier-outputs-field",
        ),
        pytest.param(
            "    ticket: PRIV-7\n",
            "    ticket: PRIV-7\n    expiry: 2030-01-01\n",
            "expiry:",
            "exemptions[0].expiry",
            "expires",
            id="exemption-field",
        ),
        pytest.param(
            "version: 1\n",
            "version: 1\nsettings: {require_zones: true}\n",
            "require_zones",
            "settings.require_zones",
            "require_zone",
            id="settings-field",
        ),
    ],
)
def test_unknown_keys_suggest_the_right_one(
    old: str, new: str, needle: str, field: str, suggestion: str
) -> None:
    text = edit(old, new)
    issue = only_error(text)
    assert issue.message == f"unknown field {needle.strip(' :')!r}"
    assert issue.field == field
    assert issue.line == line_of(text, needle)
    assert f"did you mean {suggestion!r}?" in issue.hint
    assert "allowed here:" in issue.hint


def test_unknown_key_without_close_match_lists_allowed_fields() -> None:
    text = edit("    purpose: recs\n", "    purpose: recs\n    zzzzzz: 1\n")
    issue = only_error(text)
    assert "did you mean" not in issue.hint
    assert "allowed here: aggregated_only, allowed_categories, description" in issue.hint


def test_every_error_is_reported_at_once() -> None:
    text = edit("    purpose: recs\n", "    purpose: recs\n    mode: loud\n    unlabeled: maybe\n")
    issues = issues_of(text)
    assert sorted(issue.field for issue in issues) == ["zones.recs.mode", "zones.recs.unlabeled"]
    formatted = str(PolicyError(issues))
    assert formatted.startswith("policy is invalid (2 problems):")
    assert f"policy.yaml:{line_of(text, 'mode: loud')}:5: error in zones.recs.mode" in formatted
    assert "    fix: " in formatted


# --- dangling references ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "message"),
    [
        pytest.param(
            "      - clicks\n",
            "      - click\n",
            "- click",
            "zones.ads.allowed_categories[1]",
            "unknown category 'click' (did you mean 'clicks'?)",
            id="zone-unknown-category",
        ),
        pytest.param(
            "    categories: [purchases]\n",
            "    categories: [purchase]\n",
            "[purchase]",
            "catalog[0].categories[0]",
            "unknown category 'purchase' (did you mean 'purchases'?)",
            id="catalog-unknown-category",
        ),
        pytest.param(
            "    categories: [purchases]\n",
            "    categories: [purchases]\n    origin_zones: [adz]\n",
            "origin_zones",
            "catalog[0].origin_zones[0]",
            "unknown zone 'adz' (did you mean 'ads'?)",
            id="catalog-origin-unknown-zone",
        ),
        pytest.param(
            "  - from: ads\n    to: recs\n",
            "  - from: ads\n    to: rec\n",
            "to: rec",
            "flows[0].to",
            "unknown zone 'rec' (did you mean 'recs'?)",
            id="flow-unknown-target",
        ),
        pytest.param(
            "  - from: ads\n",
            "  - from: billing\n",
            "from: billing",
            "flows[0].from",
            "unknown zone 'billing'",
            id="flow-unknown-source",
        ),
        pytest.param(
            "    via: [daily]\n",
            "    via: [dialy]\n",
            "via: [dialy]",
            "flows[0].via[0]",
            "unknown reclassifier 'dialy' (did you mean 'daily'?)",
            id="flow-via-unknown-reclassifier",
        ),
        pytest.param(
            "    zone: ads\n    dag_id",
            "    zone: recs\n    dag_id",
            "via: [daily]",
            "flows[0].via[0]",
            "reclassifier 'daily' runs in zone 'recs', not in the flow's source zone 'ads'",
            id="reclassifier-in-wrong-zone",
        ),
        pytest.param(
            "    zone: ads\n    dag_id",
            "    zone: nowhere\n    dag_id",
            "zone: nowhere",
            "reclassifiers.daily.zone",
            "unknown zone 'nowhere'",
            id="reclassifier-unknown-zone",
        ),
        pytest.param(
            "  - zone: recs\n",
            "  - zone: recz\n",
            "zone: recz",
            "exemptions[0].zone",
            "unknown zone 'recz' (did you mean 'recs'?)",
            id="exemption-unknown-zone",
        ),
        pytest.param(
            "version: 1\n",
            "version: 1\nsettings:\n  default_zone: adds\n",
            "default_zone",
            "settings.default_zone",
            "unknown zone 'adds' (did you mean 'ads'?)",
            id="settings-default-zone-unknown",
        ),
        pytest.param(
            '    members:\n      dag_ids: ["recs_*"]\n',
            "",
            "  recs:",
            "zones.recs",
            "zone 'recs' has no members, so no DAG may run in it",
            id="zone-without-members",
        ),
        pytest.param(
            '    members:\n      dag_ids: ["recs_*"]\n',
            "    members: {}\n",
            "  recs:",
            "zones.recs",
            "zone 'recs' has no members",
            id="zone-with-empty-members",
        ),
    ],
)
def test_dangling_references(old: str, new: str, needle: str, field: str, message: str) -> None:
    text = edit(old, new)
    # A wrong name may cause a second, consequential error elsewhere; each error has its own field.
    (issue,) = [issue for issue in issues_of(text) if issue.field == field]
    assert issue.field == field
    assert issue.message.startswith(message), issue.message
    assert issue.line == line_of(text, needle)
    assert issue.severity == "error"


def test_unknown_category_hint_lists_declared_names() -> None:
    issue = only_error(edit("      - clicks\n", "      - click\n"))
    assert issue.hint == "declare it under 'categories:' or correct the name; declared: clicks, purchases"


def test_no_zones_at_all() -> None:
    issue = only_error("categories: {a: {}}\nzones: {}\n")
    assert issue.message == "the policy defines no zones"
    assert issue.field == "zones"
    assert issue.line == 2


# --- patterns -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "message"),
    [
        pytest.param(
            '"s3://lake/raw/purchases/**"',
            '"s3://lake/raw/[purchases/**"',
            "[purchases",
            "catalog[0].uri",
            "'[' is never closed",
            id="unclosed-bracket",
        ),
        pytest.param(
            '"s3://lake/raw/purchases/**"',
            '"s3://lake/raw/purchases**"',
            "purchases**",
            "catalog[0].uri",
            "'**' must be a whole segment",
            id="globstar-inside-segment",
        ),
        pytest.param(
            '  - uri: "s3://lake/raw/purchases/**"',
            "  - table: 'warehouse.raw**'",
            "warehouse.raw**",
            "catalog[0].table",
            "'**' must be a whole segment (e.g. 'a.**.b')",
            id="table-globstar-inside-part",
        ),
        pytest.param(
            '      dag_ids: ["recs_*"]',
            '      dag_ids: ["recs_[*"]',
            "recs_[",
            "zones.recs.members.dag_ids",
            "'[' is never closed",
            id="members-glob",
        ),
        pytest.param(
            '    asset: "s3://lake/raw/purchases/**"',
            '    asset: ""',
            'asset: ""',
            "exemptions[0].asset",
            "pattern is empty",
            id="empty-exemption-glob",
        ),
        pytest.param(
            '  - uri: "s3://lake/raw/purchases/**"',
            "  - uri_regex: 's3://lake/(raw'",
            "uri_regex",
            "catalog[0].uri_regex",
            "invalid regular expression 's3://lake/(raw': missing )",
            id="invalid-regex",
        ),
        pytest.param(
            '  - uri: "s3://lake/raw/purchases/**"',
            "  - table_regex: 'x{4294967296}'",
            "table_regex",
            "catalog[0].table_regex",
            "repetition number is too large",
            id="overflowing-regex",
        ),
    ],
)
def test_invalid_patterns(old: str, new: str, needle: str, field: str, message: str) -> None:
    text = edit(old, new)
    issue = only_error(text)
    assert issue.field == field
    assert message in issue.message
    assert issue.line == line_of(text, needle)


def test_documented_bracket_escape_is_accepted() -> None:
    loaded = load_text(edit('"s3://lake/raw/purchases/**"', '"s3://lake/raw/[[]purchases]/**"'))
    engine = PolicyEngine(loaded)
    assert engine.labels_for(InputRef.asset("s3://lake/raw/[purchases]/x")) is not None


# --- warnings -----------------------------------------------------------------------------------


def test_expired_exemption_is_a_warning_not_an_error() -> None:
    text = edit("    expires: 2030-12-31\n", "    expires: 2026-05-31\n")
    loaded = load_text(text)
    (warning,) = loaded.warnings
    assert warning.severity == "warning"
    assert warning.field == "exemptions[0].expires"
    assert warning.line == line_of(text, "expires: 2026-05-31")
    assert "'PRIV-7' expired on 2026-06-01 00:00 UTC" in warning.message
    assert "renew" in warning.hint


def test_exemption_expiring_today_is_still_valid() -> None:
    assert load_text(edit("    expires: 2030-12-31\n", "    expires: 2026-06-01\n")).warnings == ()


def test_quoted_date_means_the_same_as_a_bare_date() -> None:
    bare = load_text(VALID).policy.exemptions[0]
    quoted = load_text(edit("expires: 2030-12-31", "expires: '2030-12-31'")).policy.exemptions[0]
    assert quoted.expires == date(2030, 12, 31)
    assert quoted.expires_at == bare.expires_at == datetime(2031, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2030-12-31T10:00:00Z", datetime(2030, 12, 31, 10, tzinfo=timezone.utc), id="iso-z"),
        pytest.param(
            "'2030-12-31T10:00:00+00:00'", datetime(2030, 12, 31, 10, tzinfo=timezone.utc), id="quoted"
        ),
        pytest.param(
            "2030-12-31 10:00:00", datetime(2030, 12, 31, 10, tzinfo=timezone.utc), id="naive-is-utc"
        ),
        pytest.param("9999-12-31", datetime.max.replace(tzinfo=timezone.utc), id="far-future"),
    ],
)
def test_expiry_formats(value: str, expected: datetime) -> None:
    exemption = load_text(edit("expires: 2030-12-31", f"expires: {value}")).policy.exemptions[0]
    assert exemption.expires_at == expected


def test_zone_listing_itself_as_inflow_is_a_warning() -> None:
    text = edit(
        "    allowed_categories: [clicks]\n", "    allowed_categories: [clicks]\n    inflows: [recs]\n"
    )
    (warning,) = load_text(text).warnings
    assert warning.severity == "warning"
    assert warning.field == "zones.recs.inflows[0]"
    assert warning.line == line_of(text, "inflows: [recs]")


def test_warnings_are_reported_with_errors() -> None:
    text = edit("    expires: 2030-12-31\n", "    expires: 2020-01-01\n")
    text = edit("      - clicks\n", "      - click\n", text)
    issues = issues_of(text)
    assert [issue.severity for issue in issues] == ["error", "warning"]


def test_naive_now_is_utc() -> None:
    text = edit("    expires: 2030-12-31\n", "    expires: 2026-05-31\n")
    loaded = load_policy_bytes(text.encode(), now=datetime(2026, 6, 1, 12))
    assert [warning.field for warning in loaded.warnings] == ["exemptions[0].expires"]


# --- property-based: nothing but PolicyError escapes ------------------------------------------------


def _load_or_policy_error(content: bytes) -> LoadedPolicy | None:
    try:
        loaded = load_policy_bytes(content, now=NOW)
    except PolicyError as error:
        assert error.issues
        for issue in error.issues:
            assert issue.message
            assert issue.line is None or issue.line >= 1
        return None
    # What loads must also compile and decide without crashing.
    engine = PolicyEngine(loaded)
    for zone in [*engine.zones, None, "nope"]:
        engine.check(
            task=TaskContext(dag_id="ads_x", task_id="t", dag_file="ads/x.py", tags=frozenset({"a"})),
            zone=zone,
            inputs=[InputRef.asset("s3://lake/raw/purchases/x"), InputRef.table("Warehouse.Raw.Purchases")],
            now=NOW,
        )
    return loaded


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_only_policy_error(text: str) -> None:
    _load_or_policy_error(text.encode("utf-8", errors="surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_arbitrary_bytes_raise_only_policy_error(content: bytes) -> None:
    _load_or_policy_error(content)


SCHEMA_KEYS = [
    "version",
    "name",
    "settings",
    "categories",
    "catalog",
    "zones",
    "flows",
    "reclassifiers",
    "exemptions",
    "require_zone",
    "default_zone",
    "description",
    "uri",
    "table",
    "uri_regex",
    "table_regex",
    "consented",
    "aggregated",
    "origin_zones",
    "purpose",
    "allowed_categories",
    "unlabeled",
    "requires_consent",
    "aggregated_only",
    "inflows",
    "mode",
    "members",
    "dag_ids",
    "tags",
    "owners",
    "files",
    "from",
    "to",
    "via",
    "zone",
    "dag_id",
    "task_id",
    "outputs",
    "dag",
    "task",
    "asset",
    "reason",
    "ticket",
    "expires",
]
NAMES = ["ads", "recs", "purchases", "clicks", "daily", "ads_optimization", "a b", "1x", ""]
SPECIAL = [
    "enforce",
    "dry_run",
    "allow",
    "deny",
    "*",
    "**",
    "s3://lake/**",
    "s3://lake/a**",
    "[",
    "[[]",
    "(",
    ".*",
    "a{99999999999}",
    "2030-12-31",
    "9999-12-31",
    "2020-01-01T00:00:00Z",
    "yes",
    "null",
    "~",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(NAMES + SPECIAL + SCHEMA_KEYS),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, timezone.utc])),
)
keys = st.one_of(st.sampled_from(SCHEMA_KEYS + NAMES), st.text(max_size=6), st.integers(), st.booleans())
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=40,
)
CATEGORY_NAMES = ["purchases", "clicks", "health"]
ZONE_NAMES = ["ads", "recs", "training"]
GLOBS = ["*", "ads_*", "s3://lake/**", "s3://lake/*/x", "warehouse.*", "warehouse.**", "[[]x"]
BAD_GLOBS = ["[", "a**", ""]


def mostly(valid: st.SearchStrategy[object], junk: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """``valid`` eleven times in twelve, else ``junk`` (hypothesis's integers favour edge values)."""
    return st.sampled_from([True] * 11 + [False]).flatmap(lambda ok: valid if ok else junk)


globs = mostly(st.sampled_from(GLOBS), st.sampled_from(BAD_GLOBS))


@st.composite
def policies(draw: st.DrawFn) -> dict[str, object]:
    """Mostly well-formed policies whose names mostly resolve; now and then one field is junk.

    These reach the reference checks and the engine, which random documents almost never do.
    """

    def maybe(valid: st.SearchStrategy[object]) -> object:
        return draw(mostly(valid, documents))

    categories = draw(st.lists(st.sampled_from(CATEGORY_NAMES), unique=True, max_size=3))
    zones = draw(st.lists(st.sampled_from(ZONE_NAMES), unique=True, min_size=1, max_size=3))
    reclassifier_names = draw(st.lists(st.sampled_from(["daily", "sample"]), unique=True, max_size=2))

    def referring(declared: list[str], pool: list[str]) -> st.SearchStrategy[str]:
        # a declared name, sometimes an undeclared (or invalid) one
        return mostly(st.sampled_from(declared or pool), st.sampled_from([*pool, "a b", "x"]))

    category_ref = referring(categories, CATEGORY_NAMES)
    zone_ref = referring(zones, ZONE_NAMES)
    purposes = st.sampled_from([*ZONE_NAMES, "other"])

    zone_specs = {
        name: maybe(
            st.fixed_dictionaries(
                {
                    "purpose": purposes,
                    "members": st.fixed_dictionaries(
                        {"dag_ids": st.lists(globs, min_size=1, max_size=2)},
                        optional={
                            "tags": st.lists(st.sampled_from(["t1", "t2"]), max_size=2),
                            "owners": st.lists(st.sampled_from(["o1"]), max_size=1),
                            "files": st.lists(globs, max_size=1),
                        },
                    ),
                },
                optional={
                    "allowed_categories": st.lists(category_ref, max_size=3),
                    "unlabeled": st.sampled_from(["allow", "deny"]),
                    "requires_consent": st.booleans(),
                    "aggregated_only": st.booleans(),
                    "inflows": st.lists(zone_ref, max_size=2),
                    "mode": st.sampled_from(["enforce", "dry_run"]),
                },
            )
        )
        for name in zones
    }

    @st.composite
    def catalog_entry(draw_entry: st.DrawFn) -> dict[str, object]:
        entry: dict[str, object] = draw_entry(
            st.fixed_dictionaries(
                {},
                optional={
                    "categories": st.lists(category_ref, max_size=2),
                    "consented": st.lists(purposes, max_size=2),
                    "aggregated": st.booleans(),
                    "origin_zones": st.lists(zone_ref, max_size=2),
                },
            )
        )
        kinds = draw_entry(
            mostly(
                st.sampled_from([["uri"], ["table"], ["uri_regex"], ["table_regex"]]),
                st.lists(st.sampled_from(["uri", "table", "uri_regex", "table_regex"]), max_size=2),
            )
        )
        for kind in kinds:
            entry[kind] = draw_entry(
                globs
                if "regex" not in kind
                else mostly(st.just(r"s3://.*|warehouse\..*"), st.sampled_from(SPECIAL))
            )
        return entry

    reclassifier_ref = referring(reclassifier_names, ["daily", "sample"])
    policy: dict[str, object] = {"version": maybe(st.just(1)), "zones": zone_specs}
    optional = {
        "settings": st.fixed_dictionaries(
            {}, optional={"require_zone": st.booleans(), "default_zone": zone_ref}
        ),
        "categories": st.just({name: {"description": name} for name in categories}),
        "catalog": st.lists(catalog_entry(), max_size=3),
        "flows": st.lists(
            st.fixed_dictionaries(
                {"from": zone_ref, "to": zone_ref}, optional={"via": st.lists(reclassifier_ref, max_size=1)}
            ),
            max_size=2,
        ),
        "reclassifiers": st.just(
            {
                name: {
                    "zone": draw(zone_ref),
                    "dag_id": "d",
                    "task_id": "t",
                    "outputs": {
                        "aggregated": draw(st.booleans()),
                        "consented": draw(st.lists(purposes, max_size=1)),
                    },
                }
                for name in reclassifier_names
            }
        ),
        "exemptions": st.lists(
            st.fixed_dictionaries(
                {
                    "zone": zone_ref,
                    "reason": st.just("why"),
                    "ticket": st.sampled_from(["T-1", "T-2"]),
                    "expires": mostly(st.one_of(st.dates(), st.datetimes()), st.sampled_from(SPECIAL)),
                },
                optional={"dag": globs, "task": globs, "asset": globs},
            ),
            max_size=2,
        ),
    }
    for key, strategy in optional.items():
        if key == "categories" or draw(st.booleans()):
            policy[key] = maybe(strategy)
    return policy


def test_generated_documents_load_or_raise_policy_error() -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(documents, policies()))
    def check(document: object) -> None:
        loaded = _load_or_policy_error(yaml.safe_dump(document, allow_unicode=True).encode())
        outcomes["loaded" if loaded is not None else "rejected"] += 1

    check()
    # Both paths must be exercised: validation errors, and loading + compiling + deciding.
    total = sum(outcomes.values())
    assert outcomes["loaded"] / total > 0.05, outcomes
    assert outcomes["rejected"] / total > 0.05, outcomes


@pytest.mark.parametrize(
    "pattern",
    ["s3://lake/raw/", "s3://lake//raw/*", "s3://lake/./raw/*", "s3://lake/raw/../x/*"],
)
def test_catalog_uri_patterns_that_cannot_match_a_normalized_input_warn(pattern: str) -> None:
    text = (
        "categories: {c: {}}\n"
        f"catalog:\n  - uri: {pattern!r}\n    categories: [c]\n"
        "zones:\n  z: {purpose: p, allowed_categories: [c], members: {dag_ids: ['*']}}\n"
    )
    loaded = load_policy_bytes(text.encode(), source="policy.yaml")
    (warning,) = loaded.warnings
    assert warning.severity == "warning"
    assert warning.field == "catalog[0].uri"
    assert warning.line == 3
    assert "can never match" in warning.message


@pytest.mark.parametrize("pattern", ["s3://lake/raw/**", "s3://lake", "file:///tmp/x/*", "purchases"])
def test_normal_form_catalog_uri_patterns_do_not_warn(pattern: str) -> None:
    text = (
        "categories: {c: {}}\n"
        f"catalog:\n  - uri: {pattern!r}\n    categories: [c]\n"
        "zones:\n  z: {purpose: p, allowed_categories: [c], members: {dag_ids: ['*']}}\n"
    )
    assert load_policy_bytes(text.encode(), source="policy.yaml").warnings == ()
