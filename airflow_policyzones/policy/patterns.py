"""Patterns: validation, input normalization, and the compiled matcher for catalog patterns.

Catalog globs match segment by segment so that thousands of them compile into a trie walked
once per input (a dictionary lookup per literal segment), instead of a loop of ``fnmatch``.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

Namespace = Literal["asset", "table"]
SEPARATORS: dict[Namespace, str] = {"asset": "/", "table": "."}
_WILDCARD = re.compile(r"[*?\[]")


def _check_brackets(pattern: str) -> None:
    # Inside a [...] set a '[' is an ordinary member (fnmatch semantics), which is what makes the
    # documented escape '[[]' work.
    depth_open = False
    for char in pattern:
        if char == "[":
            depth_open = True
        elif char == "]" and depth_open:
            depth_open = False
    if depth_open:
        raise ValueError(f"invalid glob {pattern!r}: '[' is never closed; write [[] for a literal '['")


def check_glob(pattern: str, *, separator: str | None = None) -> None:
    """Raise ``ValueError`` with a fix if ``pattern`` is not a valid glob.

    With a ``separator`` (catalog globs), ``**`` is allowed only as a whole segment.
    """
    if not pattern:
        raise ValueError("pattern is empty: write '*' to match everything")
    _check_brackets(pattern)
    if separator is None:
        return
    for segment in pattern.split(separator):
        if "**" in segment and segment != "**":
            raise ValueError(
                f"invalid glob {pattern!r}: '**' must be a whole segment "
                f"(e.g. 'a{separator}**{separator}b'); use '*' inside a segment"
            )


def check_regex(pattern: str) -> None:
    """Raise ``ValueError`` with the regex engine's complaint if ``pattern`` does not compile."""
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regular expression {pattern!r}: {error}") from None
    except OverflowError as error:  # e.g. 'a{4294967296}'
        raise ValueError(f"invalid regular expression {pattern!r}: {error}") from None
    except RecursionError:  # thousands of nested groups
        raise ValueError(f"invalid regular expression {pattern[:40]!r}...: nests too deeply") from None


def normalize_asset_uri(uri: str) -> str:
    """Canonical form of an asset URI, so that spelling tricks cannot dodge a catalog pattern.

    Percent-escapes are decoded, scheme and host are lower-cased, ``.``/``..`` segments and
    repeated or trailing slashes are removed.
    """
    uri = unquote(uri.strip())
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return _normalize_path(uri)
    authority, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{authority.lower()}{_normalize_path(slash + path)}"


def _normalize_path(path: str) -> str:
    if not path or ("//" not in path and "/." not in path and not path.endswith("/") and path[0] != "."):
        return path  # already canonical: the common case, kept cheap
    normalized = posixpath.normpath(path)
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    return "" if normalized == "." else normalized


def normalize_table(name: str) -> str:
    """Canonical form of a table name: unquoted, lower-cased parts (SQL identifiers fold case)."""
    return ".".join(part.strip().strip('"`[]').lower() for part in name.strip().split("."))


def normalize_pattern(namespace: Namespace, pattern: str) -> str:
    """Patterns get the same case folding as the names they match (no path resolution)."""
    if namespace == "table":
        return pattern.lower()
    scheme, sep, rest = pattern.partition("://")
    if not sep:
        return pattern
    authority, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{authority.lower()}{slash}{path}"


@dataclass(slots=True)
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    wildcard: list[tuple[re.Pattern[str] | None, _Node]] = field(default_factory=list)
    globstar: _Node | None = None
    terminal: list[int] = field(default_factory=list)


class SegmentTrie:
    """All globs of one namespace compiled into a trie over segments.

    ``match`` returns the indices (in insertion order) of every pattern that matches.
    """

    __slots__ = ("_root", "_separator", "_size", "_wild_cache")

    def __init__(self, *, separator: str) -> None:
        self._separator = separator
        self._root = _Node()
        self._size = 0
        self._wild_cache: dict[str, re.Pattern[str] | None] = {}

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: str, index: int) -> None:
        node = self._root
        for segment in pattern.split(self._separator):
            if segment == "**":
                if node.globstar is None:
                    node.globstar = _Node()
                node = node.globstar
            elif _WILDCARD.search(segment):
                matcher = self._compile_segment(segment)
                for existing, child in node.wildcard:
                    if existing is matcher:
                        node = child
                        break
                else:
                    child = _Node()
                    node.wildcard.append((matcher, child))
                    node = child
            else:
                node = node.literal.setdefault(segment, _Node())
        node.terminal.append(index)
        self._size += 1

    def _compile_segment(self, segment: str) -> re.Pattern[str] | None:
        """``None`` stands for a bare ``*`` (any one segment), which needs no regex."""
        if segment not in self._wild_cache:
            self._wild_cache[segment] = None if segment == "*" else re.compile(fnmatch.translate(segment))
        return self._wild_cache[segment]

    def match(self, name: str) -> list[int]:
        segments = name.split(self._separator)
        count = len(segments)
        found: list[int] = []
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        seen: set[tuple[int, int]] | None = None
        while stack:
            node, position = stack.pop()
            # Walk down literal children without the stack (the hot path); other branches are pushed.
            while True:
                globstar = node.globstar
                if globstar is not None:
                    if not globstar.literal and not globstar.wildcard and globstar.globstar is None:
                        # A trailing '**' matches whatever is left of the name, even nothing.
                        found.extend(globstar.terminal)
                    else:
                        if seen is None:
                            seen = set()
                        key = (id(globstar), position)
                        if key not in seen:
                            seen.add(key)
                            stack.extend([(globstar, skip) for skip in range(position, count + 1)])
                if position == count:
                    found.extend(node.terminal)
                    break
                segment = segments[position]
                position += 1
                for matcher, wild_child in node.wildcard:
                    if matcher is None or matcher.match(segment):
                        stack.append((wild_child, position))
                child = node.literal.get(segment)
                if child is None:
                    break
                node = child
        if len(found) > 1:
            found = sorted(set(found))
        return found


class RegexList:
    """Regex catalog entries: checked one by one (documented as the slow path)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[tuple[re.Pattern[str], int]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, pattern: str, index: int, *, flags: int = 0) -> None:
        self._entries.append((re.compile(pattern, flags), index))

    def match(self, name: str) -> list[int]:
        return [index for regex, index in self._entries if regex.fullmatch(name)]


class GlobSet:
    """Whole-string globs (DAG ids, task ids, asset names in exemptions) as one compiled regex."""

    __slots__ = ("_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: Sequence[str] = tuple(patterns)
        self._regex = (
            re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns))
            if self.patterns
            else None
        )

    def __bool__(self) -> bool:
        return self._regex is not None

    def matches(self, value: str) -> bool:
        return self._regex is not None and self._regex.match(value) is not None
