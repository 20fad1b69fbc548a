"""The semantic difference between two policies: what a reviewer must look at before a change.

Two policy files can differ in many ways that mean nothing (key order, comments, the order of
catalog entries, the order of names in a list): :func:`diff_policies` compares what the engine
uses, section by section, and reports each setting, zone, category, catalog entry, flow,
reclassifier, exemption, connection and variable pattern that was added, removed or changed, with
the fields that changed. Lists whose order the engine ignores (categories, consented purposes,
members, inflows, ``via``, a connection's catalog patterns and zones) are compared as sets and
reported as names added and removed.

Identity within a section: zones, categories and reclassifiers by name; connections and variables
by their id pattern; catalog entries by their pattern (``uri``, ``table``, ``uri_regex`` or
``table_regex`` and its value); flows by ``from``/``to``; exemptions by zone, DAG, task and asset.
Where a policy repeats an identity, the repeats are paired in file order.

:func:`apply_changes` applies a diff to the old policy; applying ``diff_policies(old, new)`` to
``old`` gives a policy that decides exactly like ``new`` (the tests check it on generated
policies), so a diff never hides a change that matters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel

from airflow_policyzones.policy.loader import gc_paused
from airflow_policyzones.policy.models import CatalogEntry, Exemption, Flow, Policy

Section = Literal[
    "settings",
    "categories",
    "catalog",
    "zones",
    "flows",
    "reclassifiers",
    "exemptions",
    "connections",
    "variables",
]
Kind = Literal["added", "removed", "changed"]

SECTIONS: tuple[Section, ...] = get_args(Section)
SETTINGS: tuple[str, ...] = ("require_zone", "default_zone", "unlisted_connections", "unlisted_variables")
"""The policy's settings, compared one by one (with the policy's name, reported as a setting)."""

_SET_FIELDS = frozenset(
    {
        "categories",
        "consented",
        "origin_zones",
        "allowed_categories",
        "inflows",
        "via",
        "dag_ids",
        "tags",
        "owners",
        "files",
        "catalog",
        "zones",
    }
)
"""List fields whose order the engine ignores: compared as sets."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldChange:
    """One field of a changed item: its dotted path, its values before and after.

    For set-like lists, ``added`` and ``removed`` name the members that changed.
    """

    field: str
    before: Any
    after: Any
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.added or self.removed:
            parts = [f"+{name}" for name in self.added] + [f"-{name}" for name in self.removed]
            return f"{self.field}: {' '.join(parts)}"
        return f"{self.field}: {_show(self.before)} -> {_show(self.after)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One item of one section that was added, removed or changed."""

    section: Section
    kind: Kind
    key: str
    """How the item is named in its section: a zone name, ``uri s3://lake/**``, ``ads -> ai``, ..."""
    before: Any = None
    """The old item (a model, or a settings value); ``None`` when added."""
    after: Any = None
    """The new item; ``None`` when removed."""
    fields: tuple[FieldChange, ...] = ()
    identity: tuple[Hashable, ...] = ()
    """The key the item is matched by (with its position among repeats)."""

    def describe(self) -> str:
        sign = {"added": "+", "removed": "-", "changed": "~"}[self.kind]
        text = f"{sign} {self.section} {self.key}"
        if self.kind == "changed" and self.fields:
            text += ": " + "; ".join(item.describe() for item in self.fields)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "kind": self.kind,
            "key": self.key,
            "fields": [
                {
                    "field": item.field,
                    "before": _plain(item.before),
                    "after": _plain(item.after),
                    **(
                        {"added": list(item.added), "removed": list(item.removed)}
                        if item.added or item.removed
                        else {}
                    ),
                }
                for item in self.fields
            ],
            "before": _plain(self.before),
            "after": _plain(self.after),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDiff:
    """Every change from ``old`` to ``new``, in section order."""

    changes: tuple[Change, ...]

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def in_section(self, section: Section) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.section == section)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per section: how many items were added, removed and changed (sections with changes only)."""
        counts: dict[str, dict[str, int]] = {}
        for change in self.changes:
            section = counts.setdefault(change.section, {"added": 0, "removed": 0, "changed": 0})
            section[change.kind] += 1
        return counts

    def render(self) -> str:
        """The diff as text, one line per change, grouped by section (empty policy diff: one line)."""
        if not self.changes:
            return "no semantic changes\n"
        lines: list[str] = []
        for section in SECTIONS:
            changes = self.in_section(section)
            if not changes:
                continue
            tally = self.counts()[section]
            summary = ", ".join(f"{count} {kind}" for kind, count in tally.items() if count)
            lines.append(f"{section} ({summary}):")
            lines.extend(f"  {change.describe()}" for change in changes)
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts(), "changes": [change.to_dict() for change in self.changes]}


# --- comparing ------------------------------------------------------------------------------------


def diff_policies(*, old: Policy, new: Policy) -> PolicyDiff:
    """The semantic changes from ``old`` to ``new`` (empty when they decide alike by construction)."""
    with gc_paused():  # many small lists and tuples, none of them garbage
        return _diff(old=old, new=new)


def _diff(*, old: Policy, new: Policy) -> PolicyDiff:
    changes: list[Change] = []
    settings = [(name, getattr(old.settings, name), getattr(new.settings, name)) for name in SETTINGS]
    settings.append(("name", old.name, new.name))
    for name, before, after in settings:
        if before != after:
            changes.append(
                Change(
                    section="settings",
                    kind="changed",
                    key=name,
                    before=before,
                    after=after,
                    fields=(FieldChange(field=name, before=before, after=after),),
                    identity=(name,),
                )
            )
    changes += _diff_items("categories", _named(old.categories), _named(new.categories))
    changes += _diff_items("catalog", _keyed(old.catalog, _catalog_key), _keyed(new.catalog, _catalog_key))
    changes += _diff_items("zones", _named(old.zones), _named(new.zones))
    changes += _diff_items("flows", _keyed(old.flows, _flow_key), _keyed(new.flows, _flow_key))
    changes += _diff_items("reclassifiers", _named(old.reclassifiers), _named(new.reclassifiers))
    changes += _diff_items(
        "exemptions", _keyed(old.exemptions, _exemption_key), _keyed(new.exemptions, _exemption_key)
    )
    changes += _diff_items("connections", _named(old.connections), _named(new.connections))
    changes += _diff_items("variables", _named(old.variables), _named(new.variables))
    return PolicyDiff(changes=tuple(changes))


Groups = dict[tuple[str, ...], list[Any]]
"""Items by identity; ``None`` as the last element of a key marks a named section's item."""


def _named(items: Mapping[str, BaseModel]) -> tuple[Groups, bool]:
    return {(name,): [value] for name, value in items.items()}, False


ModelT = TypeVar("ModelT", bound=BaseModel)


def _keyed(items: Sequence[ModelT], key: Callable[[ModelT], tuple[str, ...]]) -> tuple[Groups, bool]:
    """Items of a list section grouped by identity, repeats in file order."""
    groups: Groups = {}
    for item in items:
        identity = key(item)
        group = groups.get(identity)
        if group is None:
            groups[identity] = [item]
        else:
            group.append(item)
    return groups, True


def _catalog_key(entry: CatalogEntry) -> tuple[str, ...]:
    if entry.uri is not None:
        return ("uri", entry.uri)
    if entry.table is not None:
        return ("table", entry.table)
    if entry.uri_regex is not None:
        return ("uri_regex", entry.uri_regex)
    return ("table_regex", str(entry.table_regex))


def _flow_key(flow: Flow) -> tuple[str, ...]:
    return (flow.source, flow.target)


def _exemption_key(exemption: Exemption) -> tuple[str, ...]:
    return (exemption.zone, exemption.dag, exemption.task, exemption.asset)


def _display(section: Section, identity: tuple[Hashable, ...]) -> str:
    """How an item is named in the report (computed for changed items only)."""
    if section == "catalog":
        text = f"{identity[0]} {identity[1]}"
    elif section == "flows":
        text = f"{identity[0]} -> {identity[1]}"
    elif section == "exemptions":
        text = f"zone {identity[0]} dag {identity[1]} task {identity[2]} asset {identity[3]}"
    else:
        return str(identity[0])
    position = identity[-1]
    return text + (f" (#{position + 1})" if isinstance(position, int) and position else "")


def _diff_items(section: Section, old: tuple[Groups, bool], new: tuple[Groups, bool]) -> list[Change]:
    """Items matched by identity; repeats of one identity are matched as a multiset first (an
    unchanged repeat is no change wherever it moved), the rest paired in file order.

    A change's identity is the item's key, plus, in list sections, its position among the old
    policy's repeats (``"added"`` and a count for items only the new policy has).
    """
    old_groups, positioned = old
    new_groups = new[0]
    changes: list[Change] = []
    added: list[Change] = []

    def ident(base: tuple[str, ...], position: int) -> tuple[Hashable, ...]:
        return (*base, position) if positioned else base

    for base, before_items in old_groups.items():
        after_items = new_groups.get(base, ())
        if len(before_items) == 1 and len(after_items) == 1:
            item, other = before_items[0], after_items[0]
            if item.__dict__ == other.__dict__:  # the common case, compared in C
                continue
            pairs_before, pairs_after = [(0, item)], [(0, other)]
        else:
            pairs_before, pairs_after = list(enumerate(before_items)), list(enumerate(after_items))
            if len(before_items) > 1 or len(after_items) > 1:
                for candidate in list(pairs_before):
                    wanted = _normal(candidate[1])
                    twin = next((pair for pair in pairs_after if _normal(pair[1]) == wanted), None)
                    if twin is not None:
                        pairs_before.remove(candidate)
                        pairs_after.remove(twin)
        for index, (position, item) in enumerate(pairs_before):
            identity = ident(base, position)
            if index >= len(pairs_after):
                changes.append(
                    Change(
                        section=section,
                        kind="removed",
                        key=_display(section, identity),
                        before=item,
                        identity=identity,
                    )
                )
                continue
            fields = _field_changes(item, pairs_after[index][1])
            if fields:
                changes.append(
                    Change(
                        section=section,
                        kind="changed",
                        key=_display(section, identity),
                        before=item,
                        after=pairs_after[index][1],
                        fields=fields,
                        identity=identity,
                    )
                )
        for count, (position, item) in enumerate(pairs_after[len(pairs_before) :]):
            identity = (*base, "added", count) if positioned else base
            added.append(
                Change(
                    section=section,
                    kind="added",
                    key=_display(section, ident(base, position)),
                    after=item,
                    identity=identity,
                )
            )
    for base, after_items in new_groups.items():
        if base in old_groups:
            continue
        for position, item in enumerate(after_items):
            identity = (*base, "added", position) if positioned else base
            added.append(
                Change(
                    section=section,
                    kind="added",
                    key=_display(section, ident(base, position)),
                    after=item,
                    identity=identity,
                )
            )
    # Removed and changed items first, in the old file's order, then added ones in the new file's.
    return changes + added


def _normal(model: BaseModel) -> str:
    """A model as the engine sees it: set-like lists sorted."""

    def normal(value: Any, name: str = "") -> Any:
        if isinstance(value, dict):
            return {key: normal(inner, key) for key, inner in value.items()}
        if isinstance(value, list):
            items = [normal(inner) for inner in value]
            return sorted(items, key=repr) if name in _SET_FIELDS else items
        return value

    return json.dumps(normal(model.model_dump(mode="json")), sort_keys=True)


def _field_changes(before: BaseModel, after: BaseModel, prefix: str = "") -> tuple[FieldChange, ...]:
    if before == after:  # the common case, compared in C: most items of a policy do not change
        return ()
    found: list[FieldChange] = []
    for name in type(before).model_fields:
        old_value, new_value = getattr(before, name), getattr(after, name)
        path = prefix + name
        if isinstance(old_value, BaseModel) and isinstance(new_value, BaseModel):
            found.extend(_field_changes(old_value, new_value, prefix=path + "."))
        elif name in _SET_FIELDS and isinstance(old_value, list) and isinstance(new_value, list):
            added = tuple(sorted(set(new_value) - set(old_value)))
            removed = tuple(sorted(set(old_value) - set(new_value)))
            if added or removed:
                found.append(
                    FieldChange(field=path, before=old_value, after=new_value, added=added, removed=removed)
                )
        elif _comparable(old_value) != _comparable(new_value):
            found.append(FieldChange(field=path, before=old_value, after=new_value))
    return tuple(found)


def _comparable(value: Any) -> Any:
    """Dates compare with their type: a bare date lasts the whole day, a date-time is one moment."""
    if isinstance(value, (date, datetime)):
        return (type(value).__name__, value.isoformat())
    return value


# --- applying -------------------------------------------------------------------------------------


def apply_changes(*, policy: Policy, changes: Iterable[Change]) -> Policy:
    """``policy`` with ``changes`` applied (a diff from ``policy`` to another one).

    Raises ``ValueError`` when a change does not fit ``policy`` (an item it removes or changes is
    not there, or one it adds already is).
    """
    sections: dict[str, dict[tuple[Hashable, ...], Any]] = {
        "categories": _by_identity(_named(policy.categories)),
        "catalog": _by_identity(_keyed(policy.catalog, _catalog_key)),
        "zones": _by_identity(_named(policy.zones)),
        "flows": _by_identity(_keyed(policy.flows, _flow_key)),
        "reclassifiers": _by_identity(_named(policy.reclassifiers)),
        "exemptions": _by_identity(_keyed(policy.exemptions, _exemption_key)),
        "connections": _by_identity(_named(policy.connections)),
        "variables": _by_identity(_named(policy.variables)),
    }
    settings = {name: getattr(policy.settings, name) for name in SETTINGS}
    name = policy.name
    for change in changes:
        if change.section == "settings":
            if change.key == "name":
                name = change.after
            else:
                settings[change.key] = change.after
            continue
        items = sections[change.section]
        present = change.identity in items
        if (change.kind == "added") == present:
            raise ValueError(f"cannot apply {change.describe()!r}: the policy does not fit it")
        if change.kind == "removed":
            del items[change.identity]
        else:
            items[change.identity] = change.after
    return Policy.model_validate(
        {
            "version": policy.version,
            "name": name,
            "settings": settings,
            "categories": {identity[0]: item for identity, item in sections["categories"].items()},
            "catalog": list(sections["catalog"].values()),
            "zones": {identity[0]: item for identity, item in sections["zones"].items()},
            "flows": list(sections["flows"].values()),
            "reclassifiers": {identity[0]: item for identity, item in sections["reclassifiers"].items()},
            "exemptions": list(sections["exemptions"].values()),
            "connections": {identity[0]: item for identity, item in sections["connections"].items()},
            "variables": {identity[0]: item for identity, item in sections["variables"].items()},
        }
    )


def _by_identity(grouped: tuple[Groups, bool]) -> dict[tuple[Hashable, ...], Any]:
    groups, positioned = grouped
    return {
        ((*base, position) if positioned else base): item
        for base, items in groups.items()
        for position, item in enumerate(items)
    }


# --- rendering helpers ----------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
