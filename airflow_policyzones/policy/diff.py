"""The semantic difference between two policies: what a reviewer must look at before a change.

Two policy files can differ in many ways that mean nothing (key order, comments, the order of
catalog entries, the order of names in a list): :func:`diff_policies` compares what the engine
uses, section by section, and reports each zone, category, catalog entry, flow, reclassifier and
exemption that was added, removed or changed, with the fields that changed. Lists whose order
the engine ignores (categories, consented purposes, members, inflows, ``via``) are compared as
sets and reported as names added and removed.

Identity within a section: zones, categories and reclassifiers by name; catalog entries by their
pattern (``uri``, ``table``, ``uri_regex`` or ``table_regex`` and its value); flows by
``from``/``to``; exemptions by zone, DAG, task and asset. Where a policy repeats an identity, the
repeats are paired in file order.

:func:`apply_changes` applies a diff to the old policy; applying ``diff_policies(old, new)`` to
``old`` gives a policy that decides exactly like ``new`` (the tests check it on generated
policies), so a diff never hides a change that matters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from airflow_policyzones.policy.loader import gc_paused
from airflow_policyzones.policy.models import CatalogEntry, Exemption, Flow, Policy

Section = Literal["settings", "categories", "catalog", "zones", "flows", "reclassifiers", "exemptions"]
Kind = Literal["added", "removed", "changed"]

SECTIONS: tuple[Section, ...] = (
    "settings",
    "categories",
    "catalog",
    "zones",
    "flows",
    "reclassifiers",
    "exemptions",
)

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
    settings = (
        ("require_zone", old.settings.require_zone, new.settings.require_zone),
        ("default_zone", old.settings.default_zone, new.settings.default_zone),
        ("name", old.name, new.name),
    )
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
    return PolicyDiff(changes=tuple(changes))


Item = tuple[tuple[Hashable, ...], BaseModel]
"""(identity, the model)."""


def _named(items: Mapping[str, BaseModel]) -> list[Item]:
    return [((name,), value) for name, value in items.items()]


ModelT = TypeVar("ModelT", bound=BaseModel)


def _keyed(items: Sequence[ModelT], key: Callable[[ModelT], tuple[str, ...]]) -> list[Item]:
    """Items with their identity; repeats of one identity get their position among the repeats."""
    seen: dict[tuple[str, ...], int] = {}
    keyed: list[Item] = []
    for item in items:
        identity = key(item)
        position = seen.get(identity, 0)
        seen[identity] = position + 1
        keyed.append(((*identity, position), item))
    return keyed


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


def _diff_items(section: Section, old: list[Item], new: list[Item]) -> list[Change]:
    """Items matched by identity; repeats of one identity are matched as a multiset first (an
    unchanged repeat is no change wherever it moved), the rest paired in file order."""
    old_groups: dict[tuple[Hashable, ...], list[Item]] = {}
    new_groups: dict[tuple[Hashable, ...], list[Item]] = {}
    for groups, items in ((old_groups, old), (new_groups, new)):
        for entry in items:
            groups.setdefault(entry[0][:-1] if _positioned(entry) else entry[0], []).append(entry)
    changes: list[Change] = []
    added: list[Change] = []
    for base in [*old_groups, *(key for key in new_groups if key not in old_groups)]:
        before, after = old_groups.get(base, []), new_groups.get(base, [])
        if len(before) > 1 or len(after) > 1:
            before, after = list(before), list(after)
            for candidate in list(before):
                twin = next((other for other in after if _normal(other[1]) == _normal(candidate[1])), None)
                if twin is not None:
                    before.remove(candidate)
                    after.remove(twin)
        for index, (identity, item) in enumerate(before):
            if index >= len(after):
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
            fields = _field_changes(item, after[index][1])
            if fields:
                changes.append(
                    Change(
                        section=section,
                        kind="changed",
                        key=_display(section, identity),
                        before=item,
                        after=after[index][1],
                        fields=fields,
                        identity=identity,
                    )
                )
        for position, (identity, item) in enumerate(after[len(before) :]):
            display = _display(section, identity)
            if len(identity) > 1 and isinstance(identity[-1], int):
                identity = (*base, "added", position)  # never one of the old policy's identities
            added.append(Change(section=section, kind="added", key=display, after=item, identity=identity))
    # Removed and changed items first, in the old file's order, then added ones in the new file's.
    return changes + added


def _positioned(item: Item) -> bool:
    """Whether the item's identity ends with its position among repeats (list sections)."""
    return len(item[0]) > 1 and isinstance(item[0][-1], int)


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
        "categories": {identity: item for identity, item in _named(policy.categories)},
        "catalog": {identity: item for identity, item in _keyed(policy.catalog, _catalog_key)},
        "zones": {identity: item for identity, item in _named(policy.zones)},
        "flows": {identity: item for identity, item in _keyed(policy.flows, _flow_key)},
        "reclassifiers": {identity: item for identity, item in _named(policy.reclassifiers)},
        "exemptions": {identity: item for identity, item in _keyed(policy.exemptions, _exemption_key)},
    }
    settings = {"require_zone": policy.settings.require_zone, "default_zone": policy.settings.default_zone}
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
        }
    )


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
