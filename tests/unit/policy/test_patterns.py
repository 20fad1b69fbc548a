"""Catalog pattern matching, glob/regex validation and input normalization."""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_policyzones.policy.patterns import (
    GlobSet,
    RegexList,
    SegmentTrie,
    check_glob,
    check_regex,
    normalize_asset_uri,
    normalize_pattern,
    normalize_table,
)

# --- SegmentTrie against a reference implementation ----------------------------------------------


def reference_match(pattern: str, name: str, separator: str) -> bool:
    """Segment-by-segment fnmatch; '**' spans zero or more whole segments."""
    parts = pattern.split(separator)
    segments = name.split(separator)

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(parts):
            return j == len(segments)
        if parts[i] == "**":
            return any(match(i + 1, k) for k in range(j, len(segments) + 1))
        return j < len(segments) and fnmatch.fnmatchcase(segments[j], parts[i]) and match(i + 1, j + 1)

    return match(0, 0)


# A small alphabet, so that generated names and patterns actually meet.
NAME_SEGMENTS = ["a", "b", "ab", "ba", "", "a.b"]
PATTERN_SEGMENTS = [*NAME_SEGMENTS, "*", "?", "a*", "*b", "[ab]", "[!a]", "**", "?b", "a?"]


def _joined(segments: st.SearchStrategy[str], separator: str, max_size: int) -> st.SearchStrategy[str]:
    return st.lists(segments, min_size=1, max_size=max_size).map(separator.join)


@st.composite
def trie_cases(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    separator = draw(st.sampled_from(["/", "."]))
    name_segments = st.sampled_from([s for s in NAME_SEGMENTS if separator not in s])
    pattern_segments = st.sampled_from([s for s in PATTERN_SEGMENTS if separator not in s])
    patterns = draw(st.lists(_joined(pattern_segments, separator, 4), min_size=1, max_size=6))
    names = draw(st.lists(_joined(name_segments, separator, 4), min_size=1, max_size=4))
    return separator, patterns, names


def test_segment_trie_agrees_with_reference_implementation() -> None:
    stats: Counter[str] = Counter()

    @settings(max_examples=400, deadline=None)
    @given(trie_cases())
    def check(case: tuple[str, list[str], list[str]]) -> None:
        separator, patterns, names = case
        trie = SegmentTrie(separator=separator)
        for index, pattern in enumerate(patterns):
            trie.add(pattern, index)
        assert len(trie) == len(patterns)
        for name in names:
            expected = [i for i, pattern in enumerate(patterns) if reference_match(pattern, name, separator)]
            assert trie.match(name) == expected, (patterns, name)
            stats["names"] += 1
            stats["matched"] += bool(expected)
            stats["unmatched"] += not expected

    check()
    # The property is only meaningful if both outcomes happen often.
    assert stats["matched"] / stats["names"] > 0.2, stats
    assert stats["unmatched"] / stats["names"] > 0.2, stats


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        pytest.param("s3://lake/raw/**", "s3://lake/raw", True, id="globstar-matches-zero-segments"),
        pytest.param("s3://lake/raw/**", "s3://lake/raw/a/b/c.parquet", True, id="globstar-many-segments"),
        pytest.param("s3://lake/*/x", "s3://lake/a/b/x", False, id="star-stays-in-one-segment"),
        pytest.param("s3://lake/*/x", "s3://lake/a/x", True, id="star-one-segment"),
        pytest.param("s3://lake/**/x", "s3://lake/x", True, id="inner-globstar-zero"),
        pytest.param("s3://lake/**/x", "s3://lake/a/b/x", True, id="inner-globstar-many"),
        pytest.param("s3://lake/**/x", "s3://lake/a/b/y", False, id="inner-globstar-wrong-tail"),
        pytest.param("s3://lake/p?rt", "s3://lake/part", True, id="question-mark"),
        pytest.param("s3://lake/p?rt", "s3://lake/p/rt", False, id="question-mark-not-separator"),
        pytest.param("s3://lake/[[]x", "s3://lake/[x", True, id="escaped-bracket"),
        pytest.param("s3://lake/raw", "s3://lake/raw/x", False, id="literal-is-whole"),
        pytest.param("s3://lake/Raw", "s3://lake/raw", False, id="case-sensitive-path"),
    ],
)
def test_segment_trie_examples(pattern: str, name: str, expected: bool) -> None:
    trie = SegmentTrie(separator="/")
    trie.add(pattern, 0)
    assert (trie.match(name) == [0]) is expected
    assert reference_match(pattern, name, "/") is expected


def test_segment_trie_returns_every_matching_index_once_in_order() -> None:
    trie = SegmentTrie(separator=".")
    for index, pattern in enumerate(["warehouse.**", "warehouse.raw.*", "**", "other.*", "**.**"]):
        trie.add(pattern, index)
    assert trie.match("warehouse.raw.purchases") == [0, 1, 2, 4]
    assert trie.match("other.x") == [2, 3, 4]


def test_regex_list_uses_full_match_and_flags() -> None:
    regexes = RegexList()
    assert not regexes
    regexes.add(r"warehouse\.raw\.p\w+", 3)
    regexes.add(r"WAREHOUSE\..*", 7, flags=re.IGNORECASE)
    assert len(regexes) == 2
    assert regexes.match("warehouse.raw.purchases") == [3, 7]
    assert regexes.match("warehouse.raw.purchases.bak") == [7]
    assert regexes.match("x.warehouse.raw.purchases") == []


# --- GlobSet ------------------------------------------------------------------------------------


def test_globset_empty_matches_nothing() -> None:
    empty = GlobSet([])
    assert not empty
    assert not empty.matches("")
    assert not empty.matches("anything")


@pytest.mark.parametrize(
    ("patterns", "value", "expected"),
    [
        pytest.param(["ads_*"], "ads_daily", True, id="prefix-glob"),
        pytest.param(["ads_*"], "xads_daily", False, id="anchored-start"),
        pytest.param(["ads_daily"], "ads_daily_2", False, id="anchored-end"),
        pytest.param(["ads_*"], "ADS_daily", False, id="case-sensitive"),
        pytest.param(["ads_*", "purchases_*"], "purchases_reclassify", True, id="second-pattern"),
        pytest.param(["ads_*", "purchases_*"], "recs_daily", False, id="no-pattern"),
        pytest.param(["*"], "", True, id="star-matches-empty"),
        pytest.param(["ads/*.py"], "ads/ranking.py", True, id="file-glob"),
        pytest.param(["ads/*.py"], "recs/ranking.py", False, id="file-glob-other-folder"),
        pytest.param(["a?c"], "abc", True, id="question-mark"),
        pytest.param(["[ab]x"], "bx", True, id="set"),
        pytest.param(["[!ab]x"], "bx", False, id="negated-set"),
        pytest.param(["ads_*"], "ads_x\nrecs", True, id="newline-inside-star"),
        pytest.param(["*x*y*", "*y*x*"], "ayxb", True, id="several-stars-in-several-patterns"),
    ],
)
def test_globset(patterns: list[str], value: str, expected: bool) -> None:
    globs = GlobSet(patterns)
    assert globs
    assert globs.patterns == tuple(patterns)
    assert globs.matches(value) is expected


# --- check_glob / check_regex -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "separator", "fragments"),
    [
        pytest.param("", None, ["pattern is empty", "'*'"], id="empty"),
        pytest.param("s3://lake/[raw/**", "/", ["'[' is never closed", "[[]"], id="unclosed-bracket"),
        pytest.param("ads_[", None, ["'[' is never closed"], id="unclosed-bracket-no-separator"),
        pytest.param(
            "s3://lake/raw**/x", "/", ["'**' must be a whole segment", "a/**/b"], id="globstar-in-uri"
        ),
        pytest.param(
            "warehouse.raw**", ".", ["'**' must be a whole segment", "a.**.b"], id="globstar-in-table"
        ),
    ],
)
def test_check_glob_rejects(pattern: str, separator: str | None, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        check_glob(pattern, separator=separator)
    for fragment in fragments:
        assert fragment in str(caught.value)
    if pattern:
        assert repr(pattern) in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "separator"),
    [
        pytest.param("*", None, id="star"),
        pytest.param("s3://lake/**", "/", id="trailing-globstar"),
        pytest.param("**", "/", id="only-globstar"),
        pytest.param("a/**/b", "/", id="inner-globstar"),
        pytest.param("ads**", None, id="double-star-without-separator"),
        pytest.param("[[]literal", "/", id="documented-bracket-escape"),
        pytest.param("[a-z]x", "/", id="range"),
        pytest.param("a]b", None, id="lone-closing-bracket"),
    ],
)
def test_check_glob_accepts(pattern: str, separator: str | None) -> None:
    check_glob(pattern, separator=separator)


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        pytest.param("s3://(unclosed", "missing )", id="unclosed-group"),
        pytest.param("[z-a]", "bad character range", id="bad-range"),
        pytest.param("*x", "nothing to repeat", id="nothing-to-repeat"),
        pytest.param("a{4294967296}", "repetition number is too large", id="overflowing-repeat"),
        pytest.param("(" * 2000 + ")" * 2000, "nests too deeply", id="deep-nesting"),
    ],
)
def test_check_regex_rejects(pattern: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_regex(pattern)
    assert "invalid regular expression" in str(caught.value)
    assert fragment in str(caught.value)


def test_check_regex_accepts() -> None:
    check_regex(r"s3://lake/events/\d{4}/.*\.parquet")


# --- normalization ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        pytest.param("s3://lake/raw/purchases/x", "s3://lake/raw/purchases/x", id="already-canonical"),
        pytest.param("s3://lake/raw/purchases/", "s3://lake/raw/purchases", id="trailing-slash"),
        pytest.param("s3://lake/raw/tmp/../purchases/x", "s3://lake/raw/purchases/x", id="dot-dot"),
        pytest.param("s3://lake/./raw/./purchases", "s3://lake/raw/purchases", id="dot"),
        pytest.param("s3://lake//raw///purchases", "s3://lake/raw/purchases", id="repeated-slashes"),
        pytest.param("s3://lake/raw/%70urchases", "s3://lake/raw/purchases", id="percent-letter"),
        pytest.param("s3://lake/raw%2Fpurchases", "s3://lake/raw/purchases", id="percent-slash"),
        pytest.param("s3://lake/raw/%2e%2e/raw/purchases", "s3://lake/raw/purchases", id="percent-dot-dot"),
        pytest.param("S3://LAKE/raw/purchases", "s3://lake/raw/purchases", id="upper-scheme-host"),
        pytest.param("s3://lake/Raw/Purchases", "s3://lake/Raw/Purchases", id="path-case-kept"),
        pytest.param("  s3://lake/raw  ", "s3://lake/raw", id="whitespace"),
        pytest.param("s3://lake", "s3://lake", id="host-only"),
        pytest.param("s3://lake/..", "s3://lake/", id="dot-dot-at-root"),
        pytest.param("/data/raw/../x/", "/data/x", id="no-scheme"),
        pytest.param("", "", id="empty"),
    ],
)
def test_normalize_asset_uri(uri: str, expected: str) -> None:
    assert normalize_asset_uri(uri) == expected
    assert normalize_asset_uri(expected) == expected  # idempotent on canonical forms


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("warehouse.raw.purchases", "warehouse.raw.purchases", id="canonical"),
        pytest.param("Warehouse.RAW.Purchases", "warehouse.raw.purchases", id="case-folding"),
        pytest.param('"Warehouse"."RAW".purchases', "warehouse.raw.purchases", id="double-quotes"),
        pytest.param("`warehouse`.`raw`.`purchases`", "warehouse.raw.purchases", id="backticks"),
        pytest.param("[dbo].[Purchases]", "dbo.purchases", id="brackets"),
        pytest.param(" warehouse . raw . purchases ", "warehouse.raw.purchases", id="whitespace"),
    ],
)
def test_normalize_table(name: str, expected: str) -> None:
    assert normalize_table(name) == expected


@pytest.mark.parametrize(
    ("namespace", "pattern", "expected"),
    [
        pytest.param("table", "Warehouse.RAW.*", "warehouse.raw.*", id="table-folds-case"),
        pytest.param("asset", "S3://Lake/Raw/**", "s3://lake/Raw/**", id="asset-folds-scheme-and-host"),
        pytest.param("asset", "relative/Path/*", "relative/Path/*", id="asset-without-scheme"),
    ],
)
def test_normalize_pattern(namespace: str, pattern: str, expected: str) -> None:
    assert normalize_pattern(namespace, pattern) == expected  # type: ignore[arg-type]
