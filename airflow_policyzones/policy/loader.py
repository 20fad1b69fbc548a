"""Load a policy file: YAML → located data → pydantic models → reference checks.

Every problem becomes a :class:`PolicyError` that names the file, line, column and field path;
nothing else escapes :func:`load_policy` (a property-based test holds us to that).
"""

from __future__ import annotations

import difflib
import gc
import hashlib
import re
import threading
import types
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
import yaml_rs
from pydantic import BaseModel, ValidationError

from airflow_policyzones.policy.errors import PolicyError, PolicyIssue
from airflow_policyzones.policy.models import NAME_PATTERN, Policy
from airflow_policyzones.policy.patterns import UriNormalizer, UriPattern, normalize_uri_pattern
from airflow_policyzones.policy.references import FieldPath, check_references

MAX_EXPANDED_NODES = 1_000_000
"""Guard against alias bombs: a policy may not expand to more YAML nodes than this."""

Mark = tuple[int, int]


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy with where it came from, its content hash and any warnings."""

    policy: Policy
    source: str
    version: str
    warnings: tuple[PolicyIssue, ...] = field(default=())
    uri_patterns: tuple[tuple[str, ...], ...] | None = field(default=None, compare=False, repr=False)
    """Per catalog entry, the globs its ``uri`` compiles to (empty for other entries); ``None``
    when the policy was not loaded by :func:`load_policy_bytes` (then they are derived as written)."""
    normalize_uri: UriNormalizer | None = field(default=None, compare=False, repr=False)
    """The platform's URI rules the catalog's ``uri`` patterns were put through, if any."""

    @property
    def short_version(self) -> str:
        return self.version.removeprefix("sha256:")[:12]


def policy_version(content: bytes) -> str:
    """The policy version: a hash of the file's bytes, checkable with ``sha256sum``."""
    return "sha256:" + hashlib.sha256(content).hexdigest()


_TEXTS: dict[str, tuple[str, str]] = {}
_TEXTS_KEPT = 16
_texts_lock = threading.Lock()


def _remember_text(version: str, *, text: str, source: str) -> None:
    with _texts_lock:
        _TEXTS.pop(version, None)
        _TEXTS[version] = (text, source)
        while len(_TEXTS) > _TEXTS_KEPT:
            del _TEXTS[next(iter(_TEXTS))]


def loaded_text(version: str) -> tuple[str, str] | None:
    """The text and source of a policy version this process loaded (the last few), so that the
    first decision under it can store its text (see :mod:`airflow_policyzones.db.chain`)."""
    return _TEXTS.get(version)


def load_policy(
    path: str | Path, *, now: datetime | None = None, normalize_uri: UriNormalizer | None = None
) -> LoadedPolicy:
    """Read, validate and cross-check the policy at ``path``.

    ``normalize_uri`` is how the platform stores asset URIs (Airflow's per-scheme rules, given by
    the Airflow glue): catalog ``uri`` patterns are put through it, so that they match inputs as
    Airflow stores them, and validation warns about patterns it makes unmatchable.
    """
    source = str(path)
    try:
        content = Path(path).read_bytes()
    except FileNotFoundError:
        raise PolicyError(
            [PolicyIssue("policy file not found", "check the path or [policyzones] policy_file", file=source)]
        ) from None
    except IsADirectoryError:
        raise PolicyError(
            [PolicyIssue("policy path is a directory", "point at the YAML file itself", file=source)]
        ) from None
    except OSError as error:
        raise PolicyError(
            [PolicyIssue(f"cannot read policy file: {error.strerror}", "check its permissions", file=source)]
        ) from None
    return load_policy_bytes(content, source=source, now=now, normalize_uri=normalize_uri)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small, long-lived objects.

    Loading or compiling a large policy allocates hundreds of thousands of objects and none of
    them is garbage; without the pause, collections take about half the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_policy_bytes(
    content: bytes,
    *,
    source: str = "<policy>",
    now: datetime | None = None,
    normalize_uri: UriNormalizer | None = None,
) -> LoadedPolicy:
    """Validate policy ``content``; ``source`` names it in error messages (see :func:`load_policy`)."""
    with gc_paused():
        return _load(content, source=source, now=now, normalize_uri=normalize_uri)


def _load(
    content: bytes, *, source: str, now: datetime | None, normalize_uri: UriNormalizer | None
) -> LoadedPolicy:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        column = error.start - (content.rfind(b"\n", 0, error.start) + 1) + 1
        raise PolicyError(
            [
                PolicyIssue(
                    f"not UTF-8 text (byte {error.start})",
                    "save the policy as UTF-8",
                    file=source,
                    line=line,
                    column=column,
                )
            ]
        ) from None
    data = _parse(text, source=source)
    if data is None:
        raise PolicyError(
            [PolicyIssue("the policy is empty", "start from dags_examples/policy.yaml", file=source, line=1)]
        )
    if not isinstance(data, dict):
        _compose_with_positions(text, source=source)  # says where a second document starts
        raise PolicyError(
            [
                PolicyIssue(
                    f"the policy must be a mapping of sections, not a {_yaml_type(data)}",
                    "start the file with top-level keys such as 'categories:' and 'zones:'",
                    file=source,
                    line=1,
                )
            ]
        )
    locate = _Locator(text, source=source)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as error:
        raise PolicyError(_validation_issues(error, locate=locate)) from None
    except RecursionError:
        raise PolicyError(
            [
                PolicyIssue(
                    "the policy nests too deeply",
                    "flatten it; aliases must not refer to themselves",
                    file=source,
                )
            ]
        ) from None

    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:  # a naive moment is UTC, as naive expiry dates are
        moment = moment.replace(tzinfo=timezone.utc)
    uri_patterns = _uri_patterns(policy, normalize_uri=normalize_uri)
    issues = [
        locate(problem.path, message=problem.message, hint=problem.hint, severity=problem.severity)
        for problem in check_references(
            policy, now=moment, uri_patterns=uri_patterns, normalize_uri=normalize_uri
        )
    ]
    errors = [issue for issue in issues if issue.severity == "error"]
    if errors:
        raise PolicyError(errors + [issue for issue in issues if issue.severity == "warning"])
    version = policy_version(content)
    _remember_text(version, text=text, source=source)
    return LoadedPolicy(
        policy=policy,
        source=source,
        version=version,
        warnings=tuple(issues),
        uri_patterns=tuple(pattern.patterns if pattern else () for pattern in uri_patterns),
        normalize_uri=normalize_uri,
    )


def _uri_patterns(policy: Policy, *, normalize_uri: UriNormalizer | None) -> Sequence[UriPattern | None]:
    """Each catalog entry's ``uri`` put through the platform's rules (``None`` for other entries).

    Entries that repeat a pattern are normalized once: with Airflow's rules each call creates an
    ``Asset``.
    """
    seen: dict[str, UriPattern] = {}
    patterns: list[UriPattern | None] = []
    for entry in policy.catalog:
        if entry.uri is None:
            patterns.append(None)
            continue
        pattern = seen.get(entry.uri)
        if pattern is None:
            pattern = seen[entry.uri] = normalize_uri_pattern(entry.uri, normalize_uri=normalize_uri)
        patterns.append(pattern)
    return patterns


# --- parsing ------------------------------------------------------------------------------------


_RUST_POSITION = re.compile(r"line (\d+), column (\d+)")
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
"""Characters YAML does not allow in a document (yaml-rs lets some through)."""


def _parse(text: str, *, source: str) -> Any:
    """The policy's data, parsed by yaml-rs (YAML 1.2, fast, rejects duplicate keys).

    PyYAML is used only when something is wrong, to say where: it composes the document with
    positions and reports duplicate keys, syntax errors and alias bombs with their line.
    """
    if _NON_PRINTABLE.search(text) is not None:
        _compose_with_positions(text, source=source)  # PyYAML's reader says where
    try:
        return yaml_rs.loads(text, parse_datetime=False)
    except Exception as error:  # yaml_rs.YAMLDecodeError, or anything else it may raise
        failure: BaseException = error
    except BaseException as error:  # a Rust panic surfaces as pyo3's PanicException
        if type(error).__name__ != "PanicException":
            raise
        failure = error
    _compose_with_positions(text, source=source)  # raises a located PolicyError when it can
    lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
    head = lines[0] if lines else "invalid YAML"
    position = _RUST_POSITION.search(head)
    problem = lines[-1] if position and len(lines) > 1 else head
    raise PolicyError(
        [
            PolicyIssue(
                f"invalid YAML: {problem}",
                "fix the YAML at this position (check indentation, quotes, colons and tags)",
                file=source,
                line=int(position.group(1)) if position else None,
                column=int(position.group(2)) if position else None,
            )
        ]
    ) from None


class _Locator:
    """Turns field paths into file positions, composing the YAML with PyYAML on first use only."""

    def __init__(self, text: str, *, source: str) -> None:
        self._text = text
        self._source = source
        self._marks: dict[FieldPath, Mark] | None = None

    def __call__(
        self,
        path: FieldPath,
        *,
        message: str,
        hint: str,
        severity: typing.Literal["error", "warning"] = "error",
    ) -> PolicyIssue:
        if self._marks is None:  # a structural problem found here (a recursive alias) is the root cause
            self._marks = _compose_with_positions(self._text, source=self._source)
        line, column = _nearest_mark(path, self._marks)
        return PolicyIssue(
            message=message,
            hint=hint,
            field=_format_path(path),
            file=self._source,
            line=line,
            column=column,
            severity=severity,
        )


# --- YAML with locations ------------------------------------------------------------------------


def _compose_with_positions(text: str, *, source: str) -> dict[FieldPath, Mark]:
    """The line and column of every field path; a located PolicyError for malformed YAML."""
    try:
        loader = yaml.SafeLoader(text)  # rejects control characters such as NUL
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise PolicyError(
            [
                PolicyIssue(
                    f"invalid YAML: character {error.character:#06x} is not allowed",
                    "remove the control character (or write it as an escape in a double-quoted string)",
                    file=source,
                    line=line,
                    column=column,
                )
            ]
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        # Size first: it visits each node once, while _index walks every alias expansion, so an
        # alias bomb must be rejected before _index runs.
        _check_size(node, source=source)
        marks: dict[FieldPath, Mark] = {}
        _index(node, (), marks, source=source)
        return marks
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        raise PolicyError(
            [
                PolicyIssue(
                    f"invalid YAML: {problem}",
                    "fix the YAML syntax at this position (check indentation, quotes and colons)",
                    file=source,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                )
            ]
        ) from None
    except yaml.YAMLError as error:
        raise PolicyError(
            [PolicyIssue(f"invalid YAML: {error}", "fix the YAML syntax", file=source)]
        ) from None
    except RecursionError:
        raise PolicyError([PolicyIssue("the policy nests too deeply", "flatten it", file=source)]) from None
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: FieldPath, marks: dict[FieldPath, Mark], *, source: str) -> None:
    """Record the position of every field path and reject duplicate keys.

    Runs after :func:`_check_size`, which has already rejected recursive aliases and alias bombs.
    """
    marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key_node, value_node in node.value:
            key: object = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise PolicyError(
                    [
                        PolicyIssue(
                            f"duplicate key {key!r} (first defined on line {seen[key]})",
                            "each name may be defined once: merge the two definitions or rename one",
                            field=_format_path(path),
                            file=source,
                            line=line,
                            column=key_node.start_mark.column + 1,
                        )
                    ]
                )
            seen[key] = line
            child = (*path, str(key))
            marks[child] = (line, key_node.start_mark.column + 1)
            _index(value_node, child, marks, source=source)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _index(item, (*path, position), marks, source=source)


def _check_size(root: yaml.Node, *, source: str) -> None:
    sizes: dict[int, int] = {}
    active: set[int] = set()
    culprit: list[yaml.Node] = []

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise PolicyError(
                [
                    PolicyIssue(
                        "an alias refers to the node that contains it",
                        "remove the recursive alias",
                        file=source,
                        line=node.start_mark.line + 1,
                        column=node.start_mark.column + 1,
                    )
                ]
            )
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        active.discard(id(node))
        sizes[id(node)] = total
        if total > MAX_EXPANDED_NODES and not culprit:
            culprit.append(node)  # the innermost node that is too big: where to look
        return total

    if size(root) > MAX_EXPANDED_NODES:
        mark = culprit[0].start_mark
        raise PolicyError(
            [
                PolicyIssue(
                    f"the policy expands to more than {MAX_EXPANDED_NODES:,} values through aliases",
                    "write the values out instead of nesting aliases",
                    file=source,
                    line=mark.line + 1,
                    column=mark.column + 1,
                )
            ]
        )


def _yaml_type(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


# --- pydantic errors → located issues ----------------------------------------------------------------


def _validation_issues(error: ValidationError, *, locate: _Locator) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    for detail in error.errors(include_url=False):
        path = tuple(part for part in detail["loc"] if part != "[key]")
        message, hint = _explain(detail, path)
        issues.append(locate(path, message=message, hint=hint))
    return issues


def _explain(detail: Any, path: FieldPath) -> tuple[str, str]:
    kind: str = detail["type"]
    message: str = detail["msg"].removeprefix("Value error, ")
    name = path[-1] if path else ""
    if kind == "extra_forbidden":
        allowed = _allowed_fields(path[:-1])
        close = difflib.get_close_matches(str(name), allowed, n=1)
        suggestion = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown field {name!r}", f"{suggestion}allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"required field {name!r} is missing", f"add '{name}:' here"
    if kind == "string_pattern_mismatch":
        return (
            f"{detail['input']!r} is not a valid name",
            f"names match {NAME_PATTERN}: start with a letter, then letters, digits, '_' or '-'",
        )
    if kind == "literal_error":
        return message, "use one of the values listed"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"expected a mapping, got {_yaml_type(detail['input'])}", "write 'key: value' pairs here"
    if kind == "list_type":
        return f"expected a list, got {_yaml_type(detail['input'])}", "write a YAML list, e.g. [a, b]"
    if kind in {
        "string_type",
        "bool_type",
        "bool_parsing",
        "int_type",
        "datetime_type",
        "date_type",
        "datetime_from_date_parsing",
        "date_from_datetime_parsing",
        "datetime_parsing",
    }:
        return message, "write a value of the expected type"
    if kind == "string_too_short":
        return f"{name!r} must not be empty", f"give '{name}' a value"
    return message, "see the policy reference in README.md"


def _allowed_fields(path: FieldPath) -> list[str]:
    """The field names of the model at ``path`` (following dict values and list items)."""
    model: Any = Policy
    for part in path:
        annotation = _model_field_annotation(model, part)
        if annotation is None:
            return []
        model = annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(info.alias or name for name, info in model.model_fields.items())
    return []


def _model_field_annotation(model: Any, part: str | int) -> Any:
    if isinstance(model, type) and issubclass(model, BaseModel):
        for name, info in model.model_fields.items():
            if part in (name, info.alias):
                return _unwrap(info.annotation)
        return None
    origin = typing.get_origin(model)
    if origin in (list, dict):
        return _unwrap(typing.get_args(model)[-1])
    return None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``; ``Annotated[X, ...]`` → ``X``; ``list[X]`` and ``dict[K, X]`` stay."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _nearest_mark(path: FieldPath, marks: dict[FieldPath, Mark]) -> tuple[int | None, int | None]:
    for length in range(len(path), -1, -1):
        mark = marks.get(tuple(str(p) if isinstance(p, str) else p for p in path[:length]))
        if mark is not None:
            return mark
    return None, None


def _format_path(path: FieldPath) -> str:
    return "".join(
        f"[{part}]" if isinstance(part, int) else (f".{part}" if i else part) for i, part in enumerate(path)
    )
