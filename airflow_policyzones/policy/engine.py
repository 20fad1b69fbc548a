"""The decision engine: may a task in zone Z read these inputs, and if not, why?

Pure Python, no Airflow import. A :class:`PolicyEngine` is compiled once per policy version and
then answers every decision: on the worker's path (through the api-server), in ``dag.test()``,
in the CLI and in the tests. There is no second implementation of any rule.

The module stays whole (over 600 lines): it is the compiled policy and the one method per rule
that consults it (zones, credentials, undecided runs share the same compiled catalog, exemptions
and zone matchers), plus the small value types those methods return; the types are imported
from here by some two dozen modules, so moving them would only add an indirection.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_policyzones.policy.loader import LoadedPolicy, gc_paused, load_policy
from airflow_policyzones.policy.models import CatalogEntry, Credential, CredentialKind, Policy, credential_key
from airflow_policyzones.policy.patterns import (
    SEPARATORS,
    GlobSet,
    RegexList,
    SegmentTrie,
    UriNormalizer,
    normalize_asset_uri,
    normalize_pattern,
    normalize_table,
    normalize_uri_pattern,
)
from airflow_policyzones.policy.vocabulary import Mode, Namespace, Outcome, Rule


@dataclass(frozen=True, slots=True)
class AssetLabels:
    """What is known about one input: its categories, the purposes consented to, whether it is
    aggregated, the zones it came from and the reclassifiers it passed."""

    categories: frozenset[str] = frozenset()
    consented: frozenset[str] = frozenset()
    aggregated: bool = False
    origins: frozenset[str] = frozenset()
    reclassified_by: frozenset[str] = frozenset()

    def merge(self, other: AssetLabels) -> AssetLabels:
        """Most restrictive combination: restrictions never decrease when sources disagree."""
        return AssetLabels(
            categories=self.categories | other.categories,
            consented=self.consented & other.consented,
            aggregated=self.aggregated and other.aggregated,
            origins=self.origins | other.origins,
            reclassified_by=self.reclassified_by & other.reclassified_by,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": sorted(self.categories),
            "consented": sorted(self.consented),
            "aggregated": self.aggregated,
            "origins": sorted(self.origins),
            "reclassified_by": sorted(self.reclassified_by),
        }


@dataclass(frozen=True, slots=True)
class InputRef:
    """One declared input: an Airflow asset URI or a table name, normalized on creation."""

    namespace: Namespace
    name: str

    @classmethod
    def asset(cls, uri: str) -> InputRef:
        return cls("asset", normalize_asset_uri(uri))

    @classmethod
    def table(cls, name: str) -> InputRef:
        return cls("table", normalize_table(name))

    def __str__(self) -> str:
        return self.name if self.namespace == "asset" else f"table {self.name}"


@dataclass(frozen=True, slots=True)
class LabeledInput:
    """An input with its effective labels; ``labels`` is ``None`` when nothing is known of it."""

    ref: InputRef
    labels: AssetLabels | None


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Who is asking: the identity the zone's membership rules are checked against."""

    dag_id: str
    task_id: str
    dag_file: str | None = None
    tags: frozenset[str] = frozenset()
    owners: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Finding:
    """One offending input (or the task itself, when ``input`` is ``None``)."""

    rules: tuple[Rule, ...]
    input: str | None
    reason: str
    remediation: str
    exemption: str | None = None
    """The ticket of the exemption that waived this finding, if one did."""

    @property
    def rule(self) -> Rule:
        return self.rules[0]

    @property
    def exempted(self) -> bool:
        return self.exemption is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "rules": [rule.value for rule in self.rules],
            "input": self.input,
            "reason": self.reason,
            "remediation": self.remediation,
            "exemption": self.exemption,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of checking one task-instance try."""

    outcome: Outcome
    zone: str | None
    mode: Mode | None
    policy_version: str
    findings: tuple[Finding, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        """Whether the task may run (dry-run and exempted decisions run)."""
        return self.outcome is not Outcome.DENY

    @property
    def violations(self) -> tuple[Finding, ...]:
        """Findings not waived by an exemption."""
        return tuple(finding for finding in self.findings if not finding.exempted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "allowed": self.allowed,
            "zone": self.zone,
            "mode": self.mode,
            "policy_version": self.policy_version,
            "findings": [finding.to_dict() for finding in self.findings],
        }


def _exemption_assets(pattern: str, *, normalize_uri: UriNormalizer | None) -> list[str]:
    """An exemption's ``asset`` glob as written and, for a URI, as the platform stores URIs (the
    findings it must match name inputs in their stored form)."""
    if "://" not in pattern or normalize_uri is None:
        return [pattern]
    stored = normalize_uri_pattern(pattern, normalize_uri=normalize_uri).patterns
    return list(dict.fromkeys([pattern, *stored]))


@dataclass(frozen=True, slots=True)
class _Exemption:
    dag: GlobSet
    task: GlobSet
    asset: GlobSet
    expires_at: datetime
    ticket: str

    def covers(self, task: TaskContext, input_name: str, now: datetime) -> bool:
        return (
            now < self.expires_at
            and self.dag.matches(task.dag_id)
            and self.task.matches(task.task_id)
            and self.asset.matches(input_name)
        )


class _Zone:
    """A zone compiled for the hot path: sets and flags, no pydantic objects."""

    __slots__ = (
        "aggregated_only",
        "allowed",
        "exemptions",
        "member_dag_ids",
        "member_files",
        "member_owners",
        "member_tags",
        "mode",
        "name",
        "purpose",
        "requires_consent",
        "sanctioned",
        "unlabeled_allowed",
        "via",
    )

    def __init__(self, name: str, policy: Policy, exemptions: list[_Exemption]) -> None:
        spec = policy.zones[name]
        self.name = name
        self.purpose = spec.purpose
        self.mode: Mode = spec.mode
        self.allowed = frozenset(spec.allowed_categories)
        self.unlabeled_allowed = spec.unlabeled == "allow"
        self.requires_consent = spec.requires_consent
        self.aggregated_only = spec.aggregated_only
        sanctioned = {name, *spec.inflows}
        via: dict[str, set[str]] = {}
        for flow in policy.flows:
            if flow.target != name:
                continue
            if flow.via:
                via.setdefault(flow.source, set()).update(flow.via)
            else:
                sanctioned.add(flow.source)
        self.sanctioned = frozenset(sanctioned)
        self.via = {source: frozenset(names) for source, names in via.items() if source not in sanctioned}
        self.member_dag_ids = GlobSet(spec.members.dag_ids)
        self.member_files = GlobSet(spec.members.files)
        self.member_tags = frozenset(spec.members.tags)
        self.member_owners = frozenset(spec.members.owners)
        self.exemptions = exemptions

    def admits(self, task: TaskContext) -> bool:
        return (
            self.member_dag_ids.matches(task.dag_id)
            or (task.dag_file is not None and self.member_files.matches(task.dag_file))
            or not self.member_tags.isdisjoint(task.tags)
            or not self.member_owners.isdisjoint(task.owners)
        )

    def check(self, item: LabeledInput) -> Finding | None:
        """The finding for one input, or ``None`` when the zone may read it (the hot path)."""
        labels = item.labels
        if labels is None:
            if self.unlabeled_allowed:
                return None
            return Finding(
                (Rule.UNLABELED_INPUT,),
                item.ref.name,
                f"{item.ref} has no labels (no catalog entry matches it) and zone {self.name!r} "
                "does not accept unlabeled data",
                f"add a catalog entry that matches {item.ref.name!r}, or set "
                f"zones.{self.name}.unlabeled: allow",
            )
        if (
            labels.categories <= self.allowed
            and (not self.requires_consent or self.purpose in labels.consented)
            and (labels.aggregated or not self.aggregated_only)
            and labels.origins <= self.sanctioned
        ):
            return None
        return self._explain(item.ref, labels)

    def unsanctioned(self, labels: AssetLabels) -> list[str]:
        """Origin zones whose data may not flow into this zone (sorted): the ``unsanctioned_flow`` rule."""
        unsanctioned: list[str] = []
        for origin in sorted(labels.origins - self.sanctioned):
            reclassifiers = self.via.get(origin)
            if reclassifiers is not None and not reclassifiers.isdisjoint(labels.reclassified_by):
                continue
            unsanctioned.append(origin)
        return unsanctioned

    def _explain(self, ref: InputRef, labels: AssetLabels) -> Finding | None:
        rules: list[Rule] = []
        reasons: list[str] = []
        fixes: list[str] = []
        extra = sorted(labels.categories - self.allowed)
        if extra:
            rules.append(Rule.CATEGORY_NOT_ALLOWED)
            reasons.append(f"{ref} carries {_categories(extra)} that zone {self.name!r} does not allow")
            fixes.append(
                f"add {_quoted(extra)} to zones.{self.name}.allowed_categories if this purpose may use it, "
                "or read a reclassified version of the data"
            )
        if self.requires_consent and self.purpose not in labels.consented:
            rules.append(Rule.CONSENT_MISSING)
            consented = _quoted(sorted(labels.consented)) if labels.consented else "no purpose"
            reasons.append(
                f"{ref} is consented for {consented}, "
                f"not for {self.purpose!r}, the purpose of zone {self.name!r}"
            )
            fixes.append(
                f"read the output of a consent-filter reclassifier (outputs.consented: [{self.purpose}])"
            )
        if self.aggregated_only and not labels.aggregated:
            rules.append(Rule.NOT_AGGREGATED)
            reasons.append(f"{ref} holds user-level rows and zone {self.name!r} accepts aggregated data only")
            fixes.append("read the output of an aggregating reclassifier (outputs.aggregated: true)")
        for origin in self.unsanctioned(labels):
            reclassifiers = self.via.get(origin)
            rules.append(Rule.UNSANCTIONED_FLOW)
            reasons.append(
                f"{ref} carries data from zone {origin!r}, and {origin} → {self.name} is not sanctioned"
            )
            if reclassifiers:
                fixes.append(
                    f"route the data through one of the reclassifiers {_quoted(sorted(reclassifiers))}"
                )
            else:
                fixes.append(
                    f"declare the flow (flows: [{{from: {origin}, to: {self.name}, via: [RECLASSIFIER]}}]) "
                    f"or add {origin!r} to zones.{self.name}.inflows"
                )
        if not rules:
            return None
        return Finding(tuple(rules), ref.name, "; ".join(reasons), "; ".join(fixes))


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _categories(names: Sequence[str]) -> str:
    return f"category {_quoted(names)}" if len(names) == 1 else f"categories {_quoted(names)}"


def _catalog_labels(catalog: Sequence[CatalogEntry]) -> list[AssetLabels]:
    """Labels of each catalog entry; entries that say the same thing share one object."""
    interned: dict[tuple[object, ...], AssetLabels] = {}
    labels: list[AssetLabels] = []
    for entry in catalog:
        key = (tuple(entry.categories), tuple(entry.consented), entry.aggregated, tuple(entry.origin_zones))
        shared = interned.get(key)
        if shared is None:
            shared = interned[key] = AssetLabels(
                categories=frozenset(entry.categories),
                consented=frozenset(entry.consented),
                aggregated=entry.aggregated,
                origins=frozenset(entry.origin_zones),
            )
        labels.append(shared)
    return labels


_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class _CompiledCredential:
    labels: AssetLabels | None
    zones: frozenset[str] | None


_TEAM_SCOPED = re.compile(r"_.+?___(.+)", re.DOTALL)
"""A credential key spelled as Airflow's team-scoped environment variables name their ids."""


class _Credentials:
    """One ``connections:`` or ``variables:`` section compiled: exact ids in a dict, globs after."""

    __slots__ = ("entries", "exact", "globs", "unlisted_allowed")

    def __init__(
        self,
        section: Mapping[str, Credential],
        *,
        catalog: Mapping[str, AssetLabels],
        unlisted_allowed: bool,
    ) -> None:
        self.unlisted_allowed = unlisted_allowed
        self.entries: list[tuple[str, _CompiledCredential]] = []
        self.exact: dict[str, tuple[str, _CompiledCredential]] = {}
        self.globs: list[tuple[re.Pattern[str], str, _CompiledCredential]] = []
        for pattern, spec in section.items():
            compiled = _CompiledCredential(
                labels=None if spec.zones else _credential_labels(spec, catalog),
                zones=frozenset(spec.zones) if spec.zones else None,
            )
            self.entries.append((pattern, compiled))
            key = credential_key(pattern)
            if _GLOB_CHARS.search(key) is None:
                self.exact[key] = (pattern, compiled)
            else:
                self.globs.append((re.compile(fnmatch.translate(key)), pattern, compiled))

    def find(self, name: str) -> tuple[str, _CompiledCredential] | None:
        """The pattern that matches ``name`` (compared as :func:`credential_key` forms) and what it
        says (patterns never overlap). An id spelled as a team-scoped one, ``_<team>___<id>``, that
        no pattern matches is matched as ``<id>``: outside multi-team mode Airflow's
        environment-variables backend serves ``AIRFLOW_CONN__<TEAM>___<ID>`` under that name."""
        key = credential_key(name)
        found = self._match(key)
        if found is None and (team := _TEAM_SCOPED.match(key)) is not None:
            found = self._match(team.group(1))
        return found

    def _match(self, key: str) -> tuple[str, _CompiledCredential] | None:
        found = self.exact.get(key)
        if found is not None:
            return found
        for regex, pattern, compiled in self.globs:
            if regex.match(key) is not None:
                return pattern, compiled
        return None


def _credential_labels(spec: Credential, catalog: Mapping[str, AssetLabels]) -> AssetLabels:
    """The labels of what a credential reaches: its catalog patterns' labels (most restrictive
    merge) plus its own categories."""
    labels: AssetLabels | None = None
    for written in spec.catalog:
        found = catalog.get(written)
        if found is not None:
            labels = found if labels is None else labels.merge(found)
    if labels is None:
        return AssetLabels(categories=frozenset(spec.categories))
    return dataclasses.replace(labels, categories=labels.categories | frozenset(spec.categories))


class PolicyEngine:
    """A policy compiled for fast decisions. Build one per policy version and share it."""

    def __init__(self, loaded: LoadedPolicy) -> None:
        with gc_paused():
            self._compile(loaded)

    def _compile(self, loaded: LoadedPolicy) -> None:
        self.loaded = loaded
        policy = loaded.policy
        self.version = loaded.version
        self.policy = policy
        self._labels = _catalog_labels(policy.catalog)
        self._tries = {ns: SegmentTrie(separator=sep) for ns, sep in SEPARATORS.items()}
        self._regexes: dict[Namespace, RegexList] = {"asset": RegexList(), "table": RegexList()}
        uri_patterns = loaded.uri_patterns
        for index, entry in enumerate(policy.catalog):
            namespace = entry.namespace
            if entry.is_regex:
                # Table names fold case (normalize_table), so a table_regex must as well.
                flags = re.IGNORECASE if namespace == "table" else 0
                self._regexes[namespace].add(entry.pattern, index, flags=flags)
            elif namespace == "table":
                self._tries[namespace].add(normalize_pattern(namespace, entry.pattern), index)
            else:
                # uri patterns as the platform stores URIs (computed once, when the policy loaded)
                patterns = (
                    uri_patterns[index]
                    if uri_patterns is not None
                    else normalize_uri_pattern(entry.pattern, normalize_uri=None).patterns
                )
                for pattern in patterns:
                    self._tries[namespace].add(pattern, index)
        exemptions: dict[str, list[_Exemption]] = {}
        for exemption in policy.exemptions:
            exemptions.setdefault(exemption.zone, []).append(
                _Exemption(
                    dag=GlobSet([exemption.dag]),
                    task=GlobSet([exemption.task]),
                    asset=GlobSet(_exemption_assets(exemption.asset, normalize_uri=loaded.normalize_uri)),
                    expires_at=exemption.expires_at,
                    ticket=exemption.ticket,
                )
            )
        self._zones = {name: _Zone(name, policy, exemptions.get(name, [])) for name in policy.zones}
        self._default_zone = policy.settings.default_zone
        self._require_zone = policy.settings.require_zone
        self._reclassifier_zones = {name: spec.zone for name, spec in policy.reclassifiers.items()}
        self._reclassifier_tasks: dict[tuple[str, str], str] = {}
        for name, spec in policy.reclassifiers.items():
            self._reclassifier_tasks.setdefault((spec.dag_id, spec.task_id), name)
        catalog = self._catalog_labels_by_pattern()
        self._credentials: dict[CredentialKind, _Credentials] = {
            "connection": _Credentials(
                policy.connections,
                catalog=catalog,
                unlisted_allowed=policy.settings.unlisted_connections == "allow",
            ),
            "variable": _Credentials(
                policy.variables,
                catalog=catalog,
                unlisted_allowed=policy.settings.unlisted_variables == "allow",
            ),
        }

    def _catalog_labels_by_pattern(self) -> dict[str, AssetLabels]:
        """Labels per catalog pattern as written (merged when several entries share a pattern)."""
        by_pattern: dict[str, AssetLabels] = {}
        for entry, labels in zip(self.policy.catalog, self._labels, strict=True):
            known = by_pattern.get(entry.pattern)
            by_pattern[entry.pattern] = labels if known is None else known.merge(labels)
        return by_pattern

    @classmethod
    def from_file(cls, path: str | Path, *, normalize_uri: UriNormalizer | None = None) -> PolicyEngine:
        """Load, validate and compile; raises :class:`PolicyError` on an invalid policy.

        ``normalize_uri``: the platform's asset URI rules, which catalog ``uri`` patterns are put
        through (see :func:`airflow_policyzones.policy.loader.load_policy`).
        """
        return cls(load_policy(path, normalize_uri=normalize_uri))

    @property
    def zones(self) -> Sequence[str]:
        return tuple(self._zones)

    @property
    def reclassifier_zones(self) -> Mapping[str, str]:
        """The zone each reclassifier runs in, by name: what label propagation needs to know."""
        return self._reclassifier_zones

    def reclassifier_for(self, *, dag_id: str, task_id: str) -> str | None:
        """The name of the reclassifier the policy declares for this task, if any (the first one)."""
        return self._reclassifier_tasks.get((dag_id, task_id))

    def unsanctioned_origins(self, *, zone: str, labels: AssetLabels) -> tuple[str, ...]:
        """Origin zones of ``labels`` whose data may not flow into ``zone`` (sorted).

        The same evaluation as the ``unsanctioned_flow`` rule of :meth:`decide`: an origin is
        sanctioned when it is the zone itself, one of its inflows, the source of a flow without
        ``via``, or the source of a flow whose ``via`` names a reclassifier in ``reclassified_by``.
        Raises ``KeyError`` for a zone the policy does not define.
        """
        compiled = self._zones.get(zone)
        if compiled is None:
            raise KeyError(
                f"zone {zone!r} is not defined in the policy; zones: {_quoted(sorted(self._zones))}"
            )
        return tuple(compiled.unsanctioned(labels))

    # --- labels ---------------------------------------------------------------------------------

    def labels_for(self, ref: InputRef) -> AssetLabels | None:
        """Catalog labels of one input (most restrictive merge when several entries match)."""
        indices = self._tries[ref.namespace].match(ref.name)
        if self._regexes[ref.namespace]:
            indices = sorted({*indices, *self._regexes[ref.namespace].match(ref.name)})
        if not indices:
            return None
        labels = self._labels[indices[0]]
        for index in indices[1:]:
            labels = labels.merge(self._labels[index])
        return labels

    def label(self, refs: Iterable[InputRef]) -> list[LabeledInput]:
        return [LabeledInput(ref, self.labels_for(ref)) for ref in refs]

    # --- decisions ------------------------------------------------------------------------------

    def effective_zone(self, zone: str | None) -> str | None:
        """The zone a task runs in: its own, else the policy's default zone."""
        return zone if zone is not None else self._default_zone

    def decide(
        self,
        *,
        task: TaskContext,
        zone: str | None,
        inputs: Sequence[LabeledInput],
        uncheckable: Sequence[str] = (),
        undeclared: Sequence[InputRef] = (),
        now: datetime | None = None,
    ) -> Decision:
        """Decide one task-instance try whose inputs already carry their effective labels.

        ``uncheckable`` describes inlets that name no checkable data, ``undeclared`` tables the
        task's SQL reads that nothing labels; each is a violation, since an input nobody can
        label must not be read silently.
        """
        zone = self.effective_zone(zone)
        if zone is None:
            if inputs or uncheckable or undeclared or self._require_zone:
                return self._deny_task(
                    None,
                    Rule.UNZONED_TASK,
                    f"task {task.dag_id}.{task.task_id} has no zone"
                    + (
                        " and reads inputs"
                        if inputs or uncheckable or undeclared
                        else " and the policy requires one"
                    ),
                    "give the task a zone (DAG tag 'policyzone:<zone>', ZoneGroup or set_zone) "
                    "or set settings.default_zone in the policy",
                )
            return Decision(Outcome.ALLOW, None, None, self.version)
        compiled = self._zones.get(zone)
        if compiled is None:
            return self._deny_task(
                zone,
                Rule.UNKNOWN_ZONE,
                f"zone {zone!r} is not defined in the policy",
                f"use one of {_quoted(sorted(self._zones))} or ask the policy owners to declare {zone!r}",
            )
        if not compiled.admits(task):
            # Denied whatever the zone's mode: a task names its zone itself, so a dry_run zone's
            # leniency must not be available to DAGs that merely claim it.
            membership = Finding(
                (Rule.ZONE_MEMBERSHIP,),
                None,
                f"DAG {task.dag_id!r} is not a member of zone {zone!r}",
                f"add the DAG to zones.{zone}.members (files, dag_ids, tags or owners), "
                "or run the task in a zone it belongs to",
            )
            return Decision(Outcome.DENY, zone, compiled.mode, self.version, (membership,))
        findings: list[Finding] | None = [
            Finding(
                (Rule.UNCHECKABLE_INPUT,),
                None,
                problem,
                "declare every input as airflow.sdk.Asset(uri) so that its labels can be checked",
            )
            for problem in uncheckable
        ] or None
        if undeclared:
            findings = (findings or []) + [
                Finding(
                    (Rule.UNDECLARED_INPUT,),
                    ref.name,
                    f"the task reads {ref} (seen in its SQL or through a hook), which is neither declared "
                    "as an inlet nor known to the policy's catalog",
                    f"declare it as an inlet and ask the policy owners to catalog {ref.name!r}",
                )
                for ref in undeclared
            ]
        check = compiled.check
        for item in inputs:
            finding = check(item)
            if finding is not None:
                if findings is None:
                    findings = []
                findings.append(finding)
        if findings is None:
            return Decision(Outcome.ALLOW, zone, compiled.mode, self.version)
        return self._judge(compiled, task, findings, now)

    def check(
        self,
        *,
        task: TaskContext,
        zone: str | None,
        inputs: Iterable[InputRef],
        uncheckable: Sequence[str] = (),
        now: datetime | None = None,
    ) -> Decision:
        """Label the inputs from the catalog, then decide."""
        return self.decide(task=task, zone=zone, inputs=self.label(inputs), uncheckable=uncheckable, now=now)

    def credential_rule(self, kind: CredentialKind) -> Rule:
        """The rule a refused connection or variable breaks."""
        return Rule.CONNECTION_NOT_ALLOWED if kind == "connection" else Rule.VARIABLE_NOT_ALLOWED

    def restricts(self, *, kind: CredentialKind, name: str) -> bool:
        """Whether some zone may be refused ``name``: ``False`` only for an unlisted id the policy
        serves to everyone (``settings.unlisted_*: allow``), which then needs no decision at all."""
        credentials = self._credentials[kind]
        return credentials.unlisted_allowed is False or credentials.find(name) is not None

    def decide_credential(
        self,
        *,
        kind: CredentialKind,
        name: str,
        task: TaskContext,
        zone: str | None,
        now: datetime | None = None,
    ) -> Decision:
        """May a try in ``zone`` obtain connection (or variable) ``name``?

        The finding names the input ``connection:<id>`` (``variable:<key>``), which is also what
        an exemption's ``asset`` glob matches. The zone's mode and exemptions apply as for data;
        a zone that does not admit the task, an unknown zone and an unzoned task obtain nothing
        the policy restricts.
        """
        rule = self.credential_rule(kind)
        credentials = self._credentials[kind]
        found = credentials.find(name)
        ref = f"{kind}:{name}"
        zone = self.effective_zone(zone)
        if found is None and credentials.unlisted_allowed:
            compiled_zone = self._zones.get(zone) if zone is not None else None
            mode = compiled_zone.mode if compiled_zone is not None else None
            return Decision(Outcome.ALLOW, zone, mode, self.version)
        section = f"{kind}s"
        listed = (
            f"{kind} {name!r} (policy {section}.{found[0]!r})"
            if found is not None
            else f"{kind} {name!r} (not listed under '{section}:', and settings.unlisted_{section} is deny)"
        )
        if zone is None:
            return self._deny_credential(
                None,
                (rule, Rule.UNZONED_TASK),
                ref,
                f"task {task.dag_id}.{task.task_id} has no zone, so it may not obtain {listed}",
                "give the task a zone whose purpose may use it (DAG tag 'policyzone:<zone>'), "
                "or set settings.default_zone in the policy",
            )
        compiled = self._zones.get(zone)
        if compiled is None:
            return self._deny_credential(
                zone,
                (rule, Rule.UNKNOWN_ZONE),
                ref,
                f"zone {zone!r} is not defined in the policy, so it may not obtain {listed}",
                f"use one of {_quoted(sorted(self._zones))}",
            )
        if not compiled.admits(task):  # whatever the zone's mode, as in decide()
            finding = Finding(
                (rule, Rule.ZONE_MEMBERSHIP),
                ref,
                f"DAG {task.dag_id!r} is not a member of zone {zone!r}, so it may not obtain {listed}",
                f"add the DAG to zones.{zone}.members, or run the task in a zone it belongs to",
            )
            return Decision(Outcome.DENY, zone, compiled.mode, self.version, (finding,))
        if found is None:
            finding = Finding(
                (rule,),
                ref,
                f"zone {zone!r} may not obtain {listed}",
                f"list {name!r} under '{section}:' with the categories it reaches (or the zones that "
                f"may use it), or set settings.unlisted_{section}: allow",
            )
            return self._judge(compiled, task, [finding], now)
        pattern, credential = found
        if credential.zones is not None:
            if zone in credential.zones:
                return Decision(Outcome.ALLOW, zone, compiled.mode, self.version)
            finding = Finding(
                (rule,),
                ref,
                f"{listed} may be used only in zones {_quoted(sorted(credential.zones))}, "
                f"not in zone {zone!r}",
                f"use a {kind} meant for the purpose {compiled.purpose!r}, or ask the policy owners to "
                f"add {zone!r} to {section}.{pattern!r}.zones",
            )
            return self._judge(compiled, task, [finding], now)
        labels = credential.labels
        assert labels is not None  # a credential has zones or labels (validated)
        data = compiled.check(LabeledInput(InputRef("asset", ref), labels))
        if data is None:
            return Decision(Outcome.ALLOW, zone, compiled.mode, self.version)
        finding = Finding(
            (rule, *data.rules),
            ref,
            f"{listed} reaches data zone {zone!r} may not use: {data.reason}",
            f"use a {kind} that reaches only data zone {zone!r} may use; or {data.remediation}",
        )
        return self._judge(compiled, task, [finding], now)

    def credential_map(self, *, kind: CredentialKind) -> dict[str, dict[str, bool]]:
        """Per zone, per listed pattern, whether a member task of the zone may obtain it."""
        credentials = self._credentials[kind]
        result: dict[str, dict[str, bool]] = {}
        for name, compiled in self._zones.items():
            row: dict[str, bool] = {}
            for pattern, credential in credentials.entries:
                if credential.zones is not None:
                    row[pattern] = name in credential.zones
                else:
                    assert credential.labels is not None
                    row[pattern] = (
                        compiled.check(LabeledInput(InputRef("asset", pattern), credential.labels)) is None
                    )
            result[name] = row
        return result

    def unlisted_allowed(self, *, kind: CredentialKind) -> bool:
        """Whether ids no pattern matches are served to every task."""
        return self._credentials[kind].unlisted_allowed

    def decide_undecided_run(
        self, *, task: TaskContext, zone: str | None, recorded: str | None, now: datetime | None = None
    ) -> Decision:
        """A try of ``task`` reported success, but its recorded decision is ``recorded`` (an outcome
        that did not let it run, or ``None``: it has none). Denied in an enforce zone (the try is
        failed), recorded in a dry_run zone; no exemption covers it (it names no input)."""
        what = "without a decision" if recorded is None else f"although its decision was {recorded!r}"
        finding = Finding(
            (Rule.UNDECIDED_RUN,),
            None,
            f"task {task.dag_id}.{task.task_id} reported success {what}: the zone check in its task "
            "process did not run or was gone around, so nothing it read was checked",
            "remove the DAG code that drops or replaces the task's pre-execute check (an operator "
            "overriding pre_execute, render_template_fields or prepare_for_execution, a macro, "
            "monkeypatching), then clear the task to run it again",
        )
        compiled = self._zones.get(zone) if zone is not None else None
        if compiled is None or not compiled.admits(task):  # membership: as in decide()
            return Decision(Outcome.DENY, zone, compiled.mode if compiled else None, self.version, (finding,))
        return self._judge(compiled, task, [finding], now)

    def _deny_credential(
        self, zone: str | None, rules: tuple[Rule, ...], ref: str, reason: str, remediation: str
    ) -> Decision:
        return Decision(Outcome.DENY, zone, None, self.version, (Finding(rules, ref, reason, remediation),))

    def _judge(
        self, zone: _Zone, task: TaskContext, findings: list[Finding], now: datetime | None
    ) -> Decision:
        if zone.exemptions:
            moment = now or datetime.now(timezone.utc)
            if moment.tzinfo is None:  # a naive moment is UTC, as naive expiry dates are
                moment = moment.replace(tzinfo=timezone.utc)
            findings = [self._waive(zone, task, finding, moment) for finding in findings]
        if all(finding.exempted for finding in findings):
            outcome = Outcome.EXEMPTED
        elif zone.mode == "dry_run":
            outcome = Outcome.DRY_RUN
        else:
            outcome = Outcome.DENY
        return Decision(outcome, zone.name, zone.mode, self.version, tuple(findings))

    @staticmethod
    def _waive(zone: _Zone, task: TaskContext, finding: Finding, now: datetime) -> Finding:
        for exemption in zone.exemptions:
            if finding.input is not None and exemption.covers(task, finding.input, now):
                return Finding(
                    finding.rules, finding.input, finding.reason, finding.remediation, exemption.ticket
                )
        return finding

    def _deny_task(self, zone: str | None, rule: Rule, reason: str, remediation: str) -> Decision:
        return Decision(
            Outcome.DENY, zone, None, self.version, (Finding((rule,), None, reason, remediation),)
        )
