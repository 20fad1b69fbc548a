"""Checks that need the whole policy: every name a policy uses must be declared somewhere.

Each finding carries the field path that the loader turns into a file line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from airflow_policyzones.policy.errors import Severity
from airflow_policyzones.policy.models import Policy, credential_key
from airflow_policyzones.policy.patterns import (
    UriNormalizer,
    UriPattern,
    check_glob,
    globs_overlap,
    normalize_uri_pattern,
)

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ReferenceProblem:
    path: FieldPath
    message: str
    hint: str
    severity: Severity = "error"


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_references(
    policy: Policy,
    *,
    now: datetime,
    uri_patterns: Sequence[UriPattern | None] | None = None,
    normalize_uri: UriNormalizer | None = None,
) -> list[ReferenceProblem]:
    """Every dangling reference and suspicious setting in ``policy``, in file order.

    ``uri_patterns`` are the catalog's ``uri`` patterns as compiled (per entry), ``normalize_uri``
    the platform's URI rules they were put through (see :func:`normalize_uri_pattern`).
    """
    problems: list[ReferenceProblem] = []
    categories = set(policy.categories)
    zones = set(policy.zones)

    def category(path: FieldPath, name: str) -> None:
        if name not in categories:
            problems.append(
                ReferenceProblem(
                    path,
                    f"unknown category {name!r}{_suggest(name, categories)}",
                    f"declare it under 'categories:' or correct the name; declared: {_listing(categories)}",
                )
            )

    def zone(path: FieldPath, name: str) -> None:
        if name not in zones:
            problems.append(
                ReferenceProblem(
                    path,
                    f"unknown zone {name!r}{_suggest(name, zones)}",
                    f"declare it under 'zones:' or correct the name; declared: {_listing(zones)}",
                )
            )

    if not zones:
        problems.append(
            ReferenceProblem(
                ("zones",),
                "the policy defines no zones",
                "add at least one zone under 'zones:' (see dags_examples/policy.yaml)",
            )
        )
    if policy.settings.default_zone is not None:
        zone(("settings", "default_zone"), policy.settings.default_zone)

    for index, entry in enumerate(policy.catalog):
        if entry.uri is not None:
            compiled = uri_patterns[index] if uri_patterns is not None else None
            problem = _unmatchable(compiled or normalize_uri_pattern(entry.uri, normalize_uri=normalize_uri))
            if problem is not None:
                problems.append(ReferenceProblem(("catalog", index, "uri"), *problem, "warning"))
        elif entry.uri_regex is not None and normalize_uri is not None:
            scheme = _regex_scheme(entry.uri_regex)
            if scheme is not None and normalize_uri.has_rules(scheme):
                problems.append(
                    ReferenceProblem(
                        ("catalog", index, "uri_regex"),
                        f"Airflow rewrites {scheme}:// asset URIs by rules of their own (e.g. a default "
                        f"port) and a uri_regex is matched as written: {entry.uri_regex!r} may miss "
                        "URIs as Airflow stores them",
                        "write the regex against the stored form (Asset(uri).uri), or use a 'uri' glob, "
                        "which is put through the same rules",
                        "warning",
                    )
                )
        for position, name in enumerate(entry.categories):
            category(("catalog", index, "categories", position), name)
        for position, name in enumerate(entry.origin_zones):
            zone(("catalog", index, "origin_zones", position), name)

    for zone_name, spec in policy.zones.items():
        for position, name in enumerate(spec.allowed_categories):
            category(("zones", zone_name, "allowed_categories", position), name)
        for position, name in enumerate(spec.inflows):
            zone(("zones", zone_name, "inflows", position), name)
            if name == zone_name:
                problems.append(
                    ReferenceProblem(
                        ("zones", zone_name, "inflows", position),
                        f"zone {zone_name!r} lists itself as an inflow",
                        "remove it: data always flows within its own zone",
                        "warning",
                    )
                )
        if spec.members.is_empty:
            problems.append(
                ReferenceProblem(
                    ("zones", zone_name),
                    f"zone {zone_name!r} has no members, so no DAG may run in it",
                    "add 'members:' with 'files', 'dag_ids', 'tags' or 'owners' "
                    "(e.g. members: {dag_ids: ['*']} to admit every DAG)",
                )
            )

    reclassifiers = set(policy.reclassifiers)
    for index, flow in enumerate(policy.flows):
        zone(("flows", index, "from"), flow.source)
        zone(("flows", index, "to"), flow.target)
        if flow.source == flow.target:
            problems.append(
                ReferenceProblem(
                    ("flows", index),
                    f"flow from {flow.source!r} to itself",
                    "remove it: data always flows within its own zone",
                    "warning",
                )
            )
        for position, name in enumerate(flow.via):
            if name not in reclassifiers:
                problems.append(
                    ReferenceProblem(
                        ("flows", index, "via", position),
                        f"unknown reclassifier {name!r}{_suggest(name, reclassifiers)}",
                        "declare it under 'reclassifiers:' or correct the name; "
                        f"declared: {_listing(reclassifiers)}",
                    )
                )
            elif policy.reclassifiers[name].zone != flow.source:
                problems.append(
                    ReferenceProblem(
                        ("flows", index, "via", position),
                        f"reclassifier {name!r} runs in zone {policy.reclassifiers[name].zone!r}, "
                        f"not in the flow's source zone {flow.source!r}",
                        "a reclassifier moves data out of the zone it runs in: "
                        "fix the reclassifier's 'zone' or the flow's 'from'",
                    )
                )

    for name, reclassifier in policy.reclassifiers.items():
        zone(("reclassifiers", name, "zone"), reclassifier.zone)
        for position, category_name in enumerate(reclassifier.outputs.categories or ()):
            category(("reclassifiers", name, "outputs", "categories", position), category_name)

    for index, exemption in enumerate(policy.exemptions):
        zone(("exemptions", index, "zone"), exemption.zone)
        if exemption.expires_at <= now:
            problems.append(
                ReferenceProblem(
                    ("exemptions", index, "expires"),
                    f"exemption {exemption.ticket!r} expired on {exemption.expires_at:%Y-%m-%d %H:%M} UTC "
                    "and no longer applies",
                    "renew it with a new 'expires' date or remove it",
                    "warning",
                )
            )
    catalog_patterns = {entry.pattern for entry in policy.catalog}
    for section in ("connections", "variables"):
        credentials = getattr(policy, section)
        valid: list[str] = []
        for pattern, credential in credentials.items():
            try:
                check_glob(pattern)
            except ValueError as error:
                problems.append(
                    ReferenceProblem(
                        (section, pattern), str(error), "fix the pattern (globs: '*', '?', '[abc]')"
                    )
                )
            else:
                valid.append(pattern)
            for position, name in enumerate(credential.categories):
                category((section, pattern, "categories", position), name)
            for position, name in enumerate(credential.zones):
                zone((section, pattern, "zones", position), name)
            for position, written in enumerate(credential.catalog):
                if written not in catalog_patterns:
                    problems.append(
                        ReferenceProblem(
                            (section, pattern, "catalog", position),
                            f"no catalog entry has the pattern {written!r}"
                            f"{_suggest(written, catalog_patterns)}",
                            "write a catalog entry's uri, table, uri_regex or table_regex exactly as "
                            "it is written under 'catalog:', or list the data's 'categories' instead",
                        )
                    )
        what = "connection id" if section == "connections" else "variable key"
        for index, first in enumerate(valid):
            for second in valid[index + 1 :]:
                if globs_overlap(credential_key(first), credential_key(second)):
                    problems.append(
                        ReferenceProblem(
                            (section, second),
                            f"{section} patterns {first!r} and {second!r} overlap: some {what} matches "
                            "both (ids match in any case, without trailing spaces)",
                            "make the patterns disjoint (each id must match at most one pattern), "
                            "e.g. list the exact id and narrow the glob",
                        )
                    )
    return problems


def _unmatchable(compiled: UriPattern) -> tuple[str, str] | None:
    """Why a catalog ``uri`` pattern (or part of it) can never match an input, with a fix."""
    if compiled.problem is not None:
        return compiled.problem, compiled.hint
    if not any(_matches_normalized_uris(pattern) for pattern in compiled.patterns):
        return (
            f"pattern {compiled.written!r} can never match: input URIs are normalized first "
            "(no '//' in the path, no '.' or '..' segments, no trailing '/')",
            "write the pattern in that normal form, e.g. 's3://bucket/path/**'",
        )
    return None


_REGEX_SCHEME = re.compile(r"\^?([A-Za-z][A-Za-z0-9+.\-]*)://")


def _regex_scheme(regex: str) -> str | None:
    """The scheme a ``uri_regex`` names literally at its start, lower-cased, if it names one."""
    match = _REGEX_SCHEME.match(regex)
    return match.group(1).lower() if match else None


def _matches_normalized_uris(pattern: str) -> bool:
    """Whether a URI glob is written in the form inputs are normalized to before matching."""
    _, separator, rest = pattern.partition("://")
    path = rest.partition("/")[2] if separator else pattern.lstrip("/")
    segments = path.split("/") if path else []
    return not (path.endswith("/") or any(segment in {"", ".", ".."} for segment in segments))


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names)) if names else "(none)"
