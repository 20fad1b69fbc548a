"""Patterns: validation, input normalization, and the compiled matcher for catalog patterns.

Catalog globs match segment by segment so that thousands of them compile into a trie walked
once per input (a dictionary lookup per literal segment), instead of a loop of ``fnmatch``.
"""

from __future__ import annotations

import fnmatch
import itertools
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote

from airflow_policyzones.policy.vocabulary import Namespace

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


class UriNormalizer(Protocol):
    """How the platform stores asset URIs, injected by the Airflow glue (the core imports no Airflow).

    Airflow rewrites an ``Asset``'s URI when it is created, by rules that installed providers
    register per scheme (``postgres://db/a/b/c`` is stored as ``postgres://db:5432/a/b/c``), so
    catalog URI patterns are put through the same rules before they are compiled.
    """

    def __call__(self, uri: str, /) -> str:
        """``uri`` as the platform stores it; ``ValueError`` with the reason when it rejects it."""
        ...

    def has_rules(self, scheme: str, /) -> bool:
        """Whether URIs of ``scheme`` (lower case) have rules of their own."""
        ...


@dataclass(frozen=True, slots=True)
class UriPattern:
    """A catalog ``uri`` glob as it is compiled: the globs to match, and why it may never match.

    ``patterns`` are in the form inputs take (the platform's rules, then :func:`normalize_pattern`);
    a pattern that the rules rewrite differently for different names it could match compiles to
    more than one glob. ``problem`` and ``hint`` say why it (or part of it) can never match.
    """

    written: str
    patterns: tuple[str, ...]
    problem: str | None = None
    hint: str = ""


_GLOBSTAR_EXPANSIONS = 4
"""A ``**`` the platform's rules reject as one segment is tried as 0..3 segments (schemes with a
fixed depth, such as ``postgres://host/database/schema/table``)."""
_MAX_GLOBSTARS = 3


def _glob_tokens(segment: str) -> list[tuple[bool, str]]:
    """``segment`` split into literal runs and glob tokens (``*``, ``?``, ``[...]``), in order."""
    tokens: list[tuple[bool, str]] = []
    literal = ""
    position, length = 0, len(segment)
    while position < length:
        char = segment[position]
        if char in "*?":
            end = position + 1
            while end < length and segment[end] == "*":
                end += 1
            token = segment[position:end] if char == "*" else char
            position = end if char == "*" else position + 1
        elif char == "[":
            end = position + 1
            if end < length and segment[end] == "!":
                end += 1
            if end < length and segment[end] == "]":
                end += 1
            while end < length and segment[end] != "]":
                end += 1
            if end >= length:  # never closed: a literal '[' (check_glob rejects it in catalog globs)
                literal += char
                position += 1
                continue
            token = segment[position : end + 1]
            position = end + 1
        else:
            literal += char
            position += 1
            continue
        if literal:
            tokens.append((False, literal))
            literal = ""
        tokens.append((True, token))
    if literal:
        tokens.append((False, literal))
    return tokens


def normalize_uri_pattern(pattern: str, *, normalize_uri: UriNormalizer | None) -> UriPattern:
    """Put a catalog ``uri`` glob through the platform's URI rules, keeping its wildcards.

    Each wildcard (``*``, ``?``, ``[...]``, a whole-segment ``**``) is replaced by a placeholder
    name that the rules keep as it is, the result is normalized like a URI, and the wildcards are
    put back where their placeholders ended up: ``postgres://db/warehouse/raw/*`` becomes
    ``postgres://db:5432/warehouse/raw/*``. A ``**`` that the rules reject as one segment is
    expanded into the numbers of ``*`` segments they accept (``postgres://db/warehouse/**`` becomes
    ``postgres://db:5432/warehouse/*/*``). A wildcard in the host keeps matching as written too
    (it may have been meant to cover explicit ports). Patterns without a scheme, with a wildcard
    in the scheme or a ``**`` host are left as they are.
    """
    written = normalize_pattern("asset", pattern)
    if normalize_uri is None:
        return UriPattern(pattern, (written,))
    scheme, separator, rest = pattern.partition("://")
    if not separator or not scheme or _WILDCARD.search(scheme) or rest.partition("/")[0] == "**":
        return UriPattern(pattern, (written,))
    stem = "pzglob"
    while stem in pattern.lower():
        stem += "q"
    placeholders: dict[str, str] = {}
    # Each segment is a list of parts: literal text, a placeholder, or None for a '**'.
    segments: list[list[str | None]] = []
    for segment in rest.split("/"):
        if segment == "**":
            segments.append([None])
            continue
        parts: list[str | None] = []
        for is_glob, text in _glob_tokens(segment):
            if is_glob:
                name = f"{stem}{len(placeholders)}x"
                placeholders[name] = text
                parts.append(name)
            else:
                parts.append(text)
        segments.append(parts)
    globstars = sum(1 for parts in segments if parts == [None])
    host_has_glob = any(part in placeholders for part in segments[0])

    def attempt(counts: Sequence[int] | None) -> str:
        """The rules applied to one instance of the template; ``ValueError`` if they reject it.

        ``counts`` gives the number of ``*`` segments each ``**`` stands for; ``None`` keeps each
        ``**`` as one placeholder that is put back as ``**``.
        """
        restore = dict(placeholders)
        names: list[str] = []
        texts: list[str] = []
        expansions = iter(counts or ())
        for parts in segments:
            if parts == [None]:
                for _ in range(1 if counts is None else next(expansions)):
                    name = f"{stem}{len(restore)}x"
                    restore[name] = "**" if counts is None else "*"
                    names.append(name)
                    texts.append(name)
                continue
            names.extend(part for part in parts if part is not None and part in placeholders)
            texts.append("".join(part or "" for part in parts))
        normalized = normalize_uri(f"{scheme}://{'/'.join(texts)}")
        if re.findall(rf"{re.escape(stem)}\d+x", normalized) != names:
            raise _CannotFollow(normalized)
        for name in names:
            normalized = normalized.replace(name, restore[name], 1)
        return normalized

    results: list[str] = []
    problem: str | None = None
    try:
        results.append(attempt(None))
    except _CannotFollow as changed:
        return UriPattern(
            pattern,
            (written,),
            f"pattern {pattern!r} is rewritten by the rules for {scheme.lower()}:// URIs in a way its "
            f"wildcards cannot follow ({changed.normalized!r}), so it is matched as written and may miss "
            "URIs as Airflow stores them",
            "write the parts that the rules rewrite (host, port, ...) literally, in their stored form, "
            "e.g. as shown by Asset(uri).uri",
        )
    except ValueError as error:
        # Airflow's reason, with the wildcards it saw as placeholders shown as written
        problem = re.sub(rf"{re.escape(stem)}\d+x", lambda found: placeholders.get(found[0], "*"), str(error))
        if globstars and globstars <= _MAX_GLOBSTARS:
            for counts in itertools.product(range(_GLOBSTAR_EXPANSIONS), repeat=globstars):
                try:
                    results.append(attempt(counts))
                except ValueError:
                    continue
    if not results:
        return UriPattern(
            pattern,
            (written,),
            f"pattern {pattern!r} can never match: Airflow rejects every {scheme.lower()}:// URI it "
            f"could match ({problem})",
            f"write it in a form Airflow accepts for {scheme.lower()}:// assets (try Asset(uri)), "
            "with a wildcard for each part that varies",
        )
    compiled: list[str] = []
    for result in results:
        variants = [result]
        if host_has_glob:  # also as written: the wildcard may have been meant to cover a port
            head, _, tail = result.partition("://")
            variants.append(f"{head}://{rest.partition('/')[0]}{tail[len(tail.partition('/')[0]) :]}")
        for variant in variants:
            normalized = normalize_pattern("asset", variant)
            if normalized not in compiled:
                compiled.append(normalized)
    return UriPattern(pattern, tuple(compiled))


class _CannotFollow(ValueError):
    def __init__(self, normalized: str) -> None:
        super().__init__(normalized)
        self.normalized = normalized


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


# --- overlap of whole-string globs ---------------------------------------------------------------

_Token = tuple[str, frozenset[str], bool]
"""``("*", ∅, False)``, or one character: ``("c", chars, negated)`` (``?`` is an empty negated set)."""


def _tokens(pattern: str) -> list[_Token]:
    """``pattern`` in fnmatch syntax as tokens (a pattern that passed :func:`check_glob`)."""
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if not tokens or tokens[-1][0] != "*":
                tokens.append(("*", frozenset(), False))
            i += 1
        elif char == "?":
            tokens.append(("c", frozenset(), True))
            i += 1
        elif char == "[" and (end := _set_end(pattern, i)) > 0:
            body = pattern[i + 1 : end]
            negated = body[:1] == "!"
            body = body[1:] if negated else body
            members: set[str] = set()
            j = 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    low, high = ord(body[j]), ord(body[j + 2])
                    members.update(chr(code) for code in range(low, min(high, low + 4096) + 1))
                    j += 3
                else:
                    members.add(body[j])
                    j += 1
            tokens.append(("c", frozenset(members), negated))
            i = end + 1
        else:
            tokens.append(("c", frozenset(char), False))
            i += 1
    return tokens


def _set_end(pattern: str, start: int) -> int:
    """Where the ``[...]`` set opening at ``start`` closes (fnmatch rules), or -1: a literal '['."""
    j = start + 1
    if pattern[j : j + 1] == "!":
        j += 1
    if pattern[j : j + 1] == "]":
        j += 1
    return pattern.find("]", j)


def _chars_meet(a: _Token, b: _Token) -> bool:
    _, a_chars, a_negated = a
    _, b_chars, b_negated = b
    if a_negated and b_negated:
        return True  # two finite exclusions leave characters both accept
    if a_negated:
        return not b_chars <= a_chars
    if b_negated:
        return not a_chars <= b_chars
    return not a_chars.isdisjoint(b_chars)


def globs_overlap(first: str, second: str) -> bool:
    """Whether some string matches both fnmatch globs (``*``, ``?``, ``[...]``, ``[!...]``)."""
    a, b = _tokens(first), _tokens(second)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i][0] == "*":
            stack.append((i + 1, j))  # the star matches nothing more
            if j < len(b):
                stack.append((i, j + 1))  # the star swallows b's next token (a character or a star)
            continue
        if j < len(b) and b[j][0] == "*":
            stack.append((i, j + 1))
            if i < len(a):
                stack.append((i + 1, j))
            continue
        if i < len(a) and j < len(b) and _chars_meet(a[i], b[j]):
            stack.append((i + 1, j + 1))
    return False
