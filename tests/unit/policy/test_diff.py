"""The semantic policy diff: exact on hand-written changes, complete on generated pairs.

Properties (hypothesis, over generated pairs of valid policies and generated requests):

* the diff of a policy with itself, or with the same policy reordered, is empty;
* applying the reported changes to the old policy gives one that decides every request exactly
  like the new one (nothing that matters is left out of the diff);
* every request whose decision changes between the two policies is explained by a reported change
  that concerns it: its zone, a catalog entry matching one of its inputs, a flow or exemption into
  its zone, a reclassifier such a flow names, or a policy-wide setting;
* the same two properties for requests for a connection or variable: applying the diff serves them
  exactly as the new policy does, and every changed answer is explained by a change to the
  pattern that matches the id, to the asking zone, to an exemption in it, to a catalog entry the
  connection names, or to a setting.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_policyzones.policy import InputRef, PolicyEngine, PolicyError, TaskContext, load_policy_bytes
from airflow_policyzones.policy.diff import Change, apply_changes, diff_policies
from airflow_policyzones.policy.loader import LoadedPolicy
from airflow_policyzones.policy.models import Policy

BASE = """\
version: 1
name: shop
categories:
  purchases: {description: What a user bought}
  clicks: {}
catalog:
  - uri: "s3://lake/purchases/**"
    categories: [purchases]
    consented: [ads]
  - table: "warehouse.clicks"
    categories: [clicks]
zones:
  ads:
    purpose: ads
    allowed_categories: [purchases, clicks]
    members: {dag_ids: ["ads_*"]}
  ai:
    purpose: ai
    allowed_categories: [purchases]
    requires_consent: true
    members: {dag_ids: ["ai_*"]}
reclassifiers:
  consented:
    zone: ads
    dag_id: ads_agg
    task_id: agg
    outputs: {consented: [ai], aggregated: true}
flows:
  - {from: ads, to: ai, via: [consented]}
exemptions:
  - {zone: ai, dag: ai_backfill, reason: approved, ticket: PRIV-1, expires: 2099-12-31}
"""


def policy(text: str) -> Policy:
    return load_policy_bytes(text.encode(), source="policy.yaml").policy


def describe(text_old: str, text_new: str) -> list[str]:
    return [change.describe() for change in diff_policies(old=policy(text_old), new=policy(text_new)).changes]


# --- hand-written -------------------------------------------------------------------------------


def test_formatting_order_and_comments_are_not_changes() -> None:
    reordered = (
        BASE.replace("allowed_categories: [purchases, clicks]", "allowed_categories: [clicks, purchases]")
        .replace("name: shop\n", "name: shop  # the shop\n")
        .replace(
            '  - uri: "s3://lake/purchases/**"\n    categories: [purchases]\n    consented: [ads]\n'
            '  - table: "warehouse.clicks"\n    categories: [clicks]\n',
            '  - table: "warehouse.clicks"\n    categories: [clicks]\n'
            '  - {uri: "s3://lake/purchases/**", consented: [ads], categories: [purchases]}\n',
        )
    )
    assert reordered != BASE
    assert describe(BASE, reordered) == []
    assert diff_policies(old=policy(BASE), new=policy(BASE)).render() == "no semantic changes\n"


def test_every_section_reports_added_removed_and_changed() -> None:
    new = (
        BASE.replace("  clicks: {}\n", "  clicks: {}\n  watch: {}\n")
        .replace("    consented: [ads]\n", "    consented: [ads, ai]\n")
        .replace(
            '  - table: "warehouse.clicks"\n    categories: [clicks]\n',
            '  - table: "warehouse.*"\n    categories: [clicks]\n',
        )
        .replace("    requires_consent: true\n", "    requires_consent: true\n    mode: dry_run\n")
        .replace('    members: {dag_ids: ["ads_*"]}\n', '    members: {dag_ids: ["ads_*"], tags: [ads]}\n')
        .replace("  - {from: ads, to: ai, via: [consented]}\n", "  - {from: ads, to: ai}\n")
        .replace("expires: 2099-12-31", "expires: 2030-01-31")
        .replace(
            "outputs: {consented: [ai], aggregated: true}", "outputs: {consented: [ai], aggregated: false}"
        )
        .replace("name: shop\n", "name: shop\nsettings: {require_zone: true}\n")
    )
    assert describe(BASE, new) == [
        "~ settings require_zone: require_zone: false -> true",
        "+ categories watch",
        "~ catalog uri s3://lake/purchases/**: consented: +ai",
        "- catalog table warehouse.clicks",
        "+ catalog table warehouse.*",
        "~ zones ads: members.tags: +ads",
        "~ zones ai: mode: 'enforce' -> 'dry_run'",
        "~ flows ads -> ai: via: -consented",
        "~ reclassifiers consented: outputs.aggregated: true -> false",
        "~ exemptions zone ai dag ai_backfill task * asset *: expires: 2099-12-31 -> 2030-01-31",
    ]
    diff = diff_policies(old=policy(BASE), new=policy(new))
    assert diff.counts()["catalog"] == {"added": 1, "removed": 1, "changed": 1}
    rendered = diff.render()
    assert rendered.startswith("settings (1 changed):\n  ~ settings require_zone")
    assert "catalog (1 added, 1 removed, 1 changed):" in rendered
    payload = json.loads(json.dumps(diff.to_dict()))
    assert payload["changes"][1] == {
        "section": "categories",
        "kind": "added",
        "key": "watch",
        "fields": [],
        "before": None,
        "after": {},
    }


def test_a_zone_removed_and_a_zone_added() -> None:
    new = (
        BASE.replace("  ai:\n    purpose: ai\n", "  ml:\n    purpose: ai\n")
        .replace("to: ai", "to: ml")
        .replace("{zone: ai,", "{zone: ml,")
    )
    assert [line.split(":")[0] for line in describe(BASE, new)] == [
        "- zones ai",
        "+ zones ml",
        "- flows ads -> ai",
        "+ flows ads -> ml",
        "- exemptions zone ai dag ai_backfill task * asset *",
        "+ exemptions zone ml dag ai_backfill task * asset *",
    ]


def test_repeated_identities_pair_in_file_order() -> None:
    twice = BASE.replace(
        '  - table: "warehouse.clicks"\n    categories: [clicks]\n',
        '  - table: "warehouse.clicks"\n    categories: [clicks]\n'
        '  - table: "warehouse.clicks"\n    categories: [purchases]\n',
    )
    assert describe(BASE, twice) == ["+ catalog table warehouse.clicks (#2)"]
    swapped = BASE.replace(
        '  - table: "warehouse.clicks"\n    categories: [clicks]\n',
        '  - table: "warehouse.clicks"\n    categories: [purchases]\n'
        '  - table: "warehouse.clicks"\n    categories: [clicks]\n',
    )
    assert describe(twice, swapped) == []  # repeats match as a multiset: moving one is no change


def test_apply_refuses_a_diff_that_does_not_fit() -> None:
    new = BASE.replace("  clicks: {}\n", "  clicks: {}\n  watch: {}\n")
    diff = diff_policies(old=policy(BASE), new=policy(new))
    with pytest.raises(ValueError, match="does not fit"):
        apply_changes(policy=policy(new), changes=diff.changes)


CREDENTIALS = """\
connections:
  warehouse_raw:
    catalog: ["s3://lake/purchases/**"]
    categories: [clicks]
  "slack_*":
    zones: [ads, ai]
variables:
  "ads_*":
    zones: [ads]
"""


def test_connections_variables_and_their_settings_are_part_of_the_diff() -> None:
    old = BASE + CREDENTIALS
    reordered = old.replace("zones: [ads, ai]", "zones: [ai, ads]").replace(
        '    catalog: ["s3://lake/purchases/**"]\n    categories: [clicks]\n',
        '    categories: [clicks]\n    catalog: ["s3://lake/purchases/**"]\n',
    )
    assert describe(old, reordered) == []
    new = (
        old.replace("name: shop\n", "name: shop\nsettings: {unlisted_connections: deny}\n")
        .replace("zones: [ads, ai]", "zones: [ads]")
        .replace(
            '    catalog: ["s3://lake/purchases/**"]\n    categories: [clicks]\n',
            '    catalog: ["s3://lake/purchases/**"]\n    categories: [clicks, purchases]\n'
            "    description: raw\n",
        )
        .replace('  "ads_*":\n    zones: [ads]\n', '  "ml_*":\n    zones: [ai]\n')
    )
    assert describe(old, new) == [
        "~ settings unlisted_connections: unlisted_connections: 'allow' -> 'deny'",
        "~ connections warehouse_raw: categories: +purchases; description: '' -> 'raw'",
        "~ connections slack_*: zones: -ai",
        "- variables ads_*",
        "+ variables ml_*",
    ]
    diff = diff_policies(old=policy(old), new=policy(new))
    assert diff.counts()["variables"] == {"added": 1, "removed": 1, "changed": 0}
    rendered = diff.render()
    assert "connections (2 changed):" in rendered and "variables (1 added, 1 removed):" in rendered
    payload = json.loads(json.dumps(diff.to_dict()))
    assert payload["changes"][-1] == {
        "section": "variables",
        "kind": "added",
        "key": "ml_*",
        "fields": [],
        "before": None,
        "after": {"zones": ["ai"]},
    }
    patched = apply_changes(policy=policy(old), changes=diff.changes)
    assert patched == policy(new)
    unlisted = old.replace("name: shop\n", "name: shop\nsettings: {unlisted_variables: deny}\n")
    assert describe(old, unlisted) == ["~ settings unlisted_variables: unlisted_variables: 'allow' -> 'deny'"]
    assert describe(old, BASE) == [
        "- connections warehouse_raw",
        "- connections slack_*",
        "- variables ads_*",
    ]


# --- generated ----------------------------------------------------------------------------------

CATEGORIES = ["purchases", "clicks", "watch"]
ZONES = ["za", "zb", "zc"]
PURPOSES = ["p1", "p2"]
URI_PATTERNS = ["s3://lake/a/**", "s3://lake/a/x", "s3://lake/*/x", "s3://lake/b/**"]
TABLE_PATTERNS = ["db.t1", "db.*"]
RECLASSIFIERS = ["r1", "r2"]
INPUTS = [
    InputRef.asset("s3://lake/a/x"),
    InputRef.asset("s3://lake/b/y"),
    InputRef.asset("s3://lake/c/x"),
    InputRef.asset("s3://other/z"),
    InputRef.table("db.t1"),
    InputRef.table("db.t2"),
]
DAGS = ["d1", "d2"]
CONNECTION_PATTERNS = ["wh", "lake_*", "api_[ab]"]  # never overlapping
CONNECTION_IDS = ["wh", "lake_x", "api_a", "api_c", "other"]
VARIABLE_PATTERNS = ["budget", "ads_*"]
VARIABLE_IDS = ["budget", "ads_x", "other"]


def subset(pool: list[str], *, min_size: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(pool), unique=True, min_size=min_size, max_size=len(pool))


catalog_entries = st.lists(
    st.fixed_dictionaries(
        {
            "pattern": st.one_of(
                st.tuples(st.just("uri"), st.sampled_from(URI_PATTERNS)),
                st.tuples(st.just("table"), st.sampled_from(TABLE_PATTERNS)),
            ),
            "categories": subset(CATEGORIES),
            "consented": subset(PURPOSES),
            "aggregated": st.booleans(),
            "origin_zones": subset(ZONES, min_size=0),
        }
    ),
    max_size=4,
)
zones = st.dictionaries(
    st.sampled_from(ZONES),
    st.fixed_dictionaries(
        {
            "purpose": st.sampled_from(PURPOSES),
            "allowed_categories": subset(CATEGORIES),
            "unlabeled": st.sampled_from(["deny", "allow"]),
            "requires_consent": st.booleans(),
            "aggregated_only": st.booleans(),
            "inflows": subset(ZONES),
            "mode": st.sampled_from(["enforce", "dry_run"]),
            "members": st.fixed_dictionaries({"dag_ids": subset(["d1", "d*"], min_size=1)}),
        }
    ),
    min_size=1,
    max_size=3,
)
reclassifiers = st.dictionaries(
    st.sampled_from(RECLASSIFIERS),
    st.fixed_dictionaries(
        {
            "zone": st.sampled_from(ZONES),
            "dag_id": st.sampled_from(DAGS),
            "task_id": st.just("agg"),
            "outputs": st.fixed_dictionaries({"consented": subset(PURPOSES), "aggregated": st.booleans()}),
        }
    ),
    max_size=2,
)
flows = st.lists(
    st.fixed_dictionaries(
        {"from": st.sampled_from(ZONES), "to": st.sampled_from(ZONES), "via": subset(RECLASSIFIERS)}
    ),
    max_size=3,
)
exemptions = st.lists(
    st.fixed_dictionaries(
        {
            "zone": st.sampled_from(ZONES),
            "dag": st.sampled_from(["*", "d1"]),
            "task": st.sampled_from(["*", "t1"]),
            "asset": st.sampled_from(["*", "s3://lake/a/**"]),
            "reason": st.just("approved"),
            "ticket": st.sampled_from(["T-1", "T-2"]),
            "expires": st.sampled_from(["2099-12-31", "2001-01-01"]),
        }
    ),
    max_size=2,
)
credential = st.one_of(
    st.fixed_dictionaries({"zones": subset(ZONES, min_size=1)}),
    st.fixed_dictionaries(
        {
            "categories": subset(CATEGORIES),
            "catalog": subset([*URI_PATTERNS, *TABLE_PATTERNS]),
            "description": st.sampled_from(["", "x"]),
        }
    ),
)
sections = st.fixed_dictionaries(
    {
        "settings": st.fixed_dictionaries(
            {
                "require_zone": st.booleans(),
                "default_zone": st.one_of(st.none(), st.sampled_from(ZONES)),
                "unlisted_connections": st.sampled_from(["allow", "deny"]),
                "unlisted_variables": st.sampled_from(["allow", "deny"]),
            }
        ),
        "categories": st.dictionaries(
            st.sampled_from(CATEGORIES), st.fixed_dictionaries({"description": st.sampled_from(["", "x"])})
        ),
        "catalog": catalog_entries,
        "zones": zones,
        "reclassifiers": reclassifiers,
        "flows": flows,
        "exemptions": exemptions,
        "connections": st.dictionaries(st.sampled_from(CONNECTION_PATTERNS), credential, max_size=2),
        "variables": st.dictionaries(st.sampled_from(VARIABLE_PATTERNS), credential, max_size=2),
    }
)


def build_credentials(
    drawn: dict[str, dict[str, Any]], *, zones: set[str], catalog: set[str]
) -> dict[str, Any]:
    """Drawn connections or variables, with references to undeclared zones and catalog patterns
    dropped (and an entry left with nothing to say dropped)."""
    built: dict[str, Any] = {}
    for pattern, spec in drawn.items():
        if "zones" in spec:
            kept = [zone for zone in spec["zones"] if zone in zones]
            if kept:
                built[pattern] = {"zones": kept}
            continue
        entry = {**spec, "catalog": [item for item in spec["catalog"] if item in catalog]}
        if entry["categories"] or entry["catalog"]:
            built[pattern] = entry
    return built


def build(raw: dict[str, Any]) -> Policy:
    """A valid policy from drawn sections: references to what is not declared are dropped."""
    names = set(raw["zones"])
    categories = {name: raw["categories"].get(name, {}) for name in CATEGORIES}
    reclassifiers = {name: spec for name, spec in raw["reclassifiers"].items() if spec["zone"] in names}
    written = {entry["pattern"][1] for entry in raw["catalog"]}
    data = {
        "version": 1,
        "settings": {
            "require_zone": raw["settings"]["require_zone"],
            "default_zone": raw["settings"]["default_zone"]
            if raw["settings"]["default_zone"] in names
            else None,
            "unlisted_connections": raw["settings"]["unlisted_connections"],
            "unlisted_variables": raw["settings"]["unlisted_variables"],
        },
        "categories": categories,
        "catalog": [
            {
                entry["pattern"][0]: entry["pattern"][1],
                "categories": entry["categories"],
                "consented": entry["consented"],
                "aggregated": entry["aggregated"],
                "origin_zones": [zone for zone in entry["origin_zones"] if zone in names],
            }
            for entry in raw["catalog"]
        ],
        "zones": {
            name: {**spec, "inflows": [zone for zone in spec["inflows"] if zone in names and zone != name]}
            for name, spec in raw["zones"].items()
        },
        "reclassifiers": reclassifiers,
        "flows": [
            {
                **flow,
                "via": [
                    name for name in flow["via"] if reclassifiers.get(name, {}).get("zone") == flow["from"]
                ],
            }
            for flow in raw["flows"]
            if flow["from"] in names and flow["to"] in names and flow["from"] != flow["to"]
        ],
        "exemptions": [item for item in raw["exemptions"] if item["zone"] in names],
        "connections": build_credentials(raw["connections"], zones=names, catalog=written),
        "variables": build_credentials(raw["variables"], zones=names, catalog=written),
    }
    try:
        return load_policy_bytes(json.dumps(data).encode(), source="generated.yaml").policy
    except PolicyError as error:  # pragma: no cover - the generator must only make valid policies
        raise AssertionError(f"generated an invalid policy: {error.format()}\n{json.dumps(data)}") from None


@st.composite
def policy_pairs(draw: st.DrawFn) -> tuple[Policy, Policy]:
    """An old policy and a new one sharing some sections with it (so that diffs stay small)."""
    old = draw(sections)
    fresh = draw(sections)
    keep = draw(st.lists(st.booleans(), min_size=len(old), max_size=len(old)))
    new = {key: old[key] if kept else fresh[key] for (key, kept) in zip(old, keep, strict=True)}
    return build(old), build(new)


requests = st.tuples(
    st.one_of(st.none(), st.sampled_from([*ZONES, "nowhere"])),
    st.sampled_from(DAGS),
    st.sampled_from(["t1", "t2"]),
    st.lists(st.sampled_from(INPUTS), unique=True, max_size=3),
)
Request = tuple[str | None, str, str, list[InputRef]]
asks = st.one_of(
    st.tuples(st.just("connection"), st.sampled_from(CONNECTION_IDS)),
    st.tuples(st.just("variable"), st.sampled_from(VARIABLE_IDS)),
)
"""A connection or variable a request's try asks for."""
Ask = tuple[Literal["connection", "variable"], str]


def engine(policy: Policy) -> PolicyEngine:
    return PolicyEngine(LoadedPolicy(policy=policy, source="generated.yaml", version="sha256:test"))


def verdict(policy_engine: PolicyEngine, request: Request) -> tuple[Any, ...]:
    zone, dag_id, task_id, inputs = request
    decision = policy_engine.check(task=TaskContext(dag_id=dag_id, task_id=task_id), zone=zone, inputs=inputs)
    return (
        decision.outcome,
        decision.zone,
        sorted((f.input or "", tuple(r.value for r in f.rules), f.exempted) for f in decision.findings),
    )


def credential_verdict(policy_engine: PolicyEngine, request: Request, ask: Ask) -> tuple[Any, ...]:
    zone, dag_id, task_id, _ = request
    kind, name = ask
    decision = policy_engine.decide_credential(
        kind=kind, name=name, task=TaskContext(dag_id=dag_id, task_id=task_id), zone=zone
    )
    return (
        decision.outcome,
        decision.zone,
        sorted((f.input or "", tuple(r.value for r in f.rules), f.exempted) for f in decision.findings),
    )


def explains_credential(
    change: Change, request: Request, ask: Ask, old: PolicyEngine, new: PolicyEngine
) -> bool:
    """Whether ``change`` concerns the answer to ``ask`` in ``request``'s try."""
    zone = request[0]
    kind, name = ask
    zones = {old.effective_zone(zone), new.effective_zone(zone)} - {None}
    if change.section == "settings":
        return True
    if change.section == f"{kind}s":
        return fnmatch.fnmatchcase(name, change.key)
    if change.section == "zones":
        return change.key in zones
    if change.section == "exemptions":
        return any(item is not None and item.zone in zones for item in (change.before, change.after))
    if change.section == "catalog":
        named = {
            written
            for policy_engine in (old, new)
            for pattern, spec in getattr(policy_engine.policy, f"{kind}s").items()
            if fnmatch.fnmatchcase(name, pattern)
            for written in spec.catalog
        }
        return any(item is not None and item.pattern in named for item in (change.before, change.after))
    return False  # categories, flows, reclassifiers: a connection is decided without them


def explains(change: Change, request: Request, old: PolicyEngine, new: PolicyEngine) -> bool:
    """Whether ``change`` concerns ``request``: the reference for "a reported change explains it"."""
    zone, _, _, inputs = request
    zones = {old.effective_zone(zone), new.effective_zone(zone)} - {None}
    if change.section == "settings":
        return True
    if change.section == "catalog":
        for item in (change.before, change.after):
            if item is not None:
                single = engine(Policy.model_validate({"catalog": [item]}))
                if any(single.labels_for(ref) is not None for ref in inputs):
                    return True
        return False
    if change.section == "zones":
        return change.key in zones
    if change.section == "flows":
        return any(item is not None and item.target in zones for item in (change.before, change.after))
    if change.section == "exemptions":
        return any(item is not None and item.zone in zones for item in (change.before, change.after))
    if change.section == "reclassifiers":
        return any(
            change.key in flow.via and flow.target in zones
            for policy_engine in (old, new)
            for flow in policy_engine.policy.flows
        )
    return False  # categories: their descriptions never decide anything


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=policy_pairs())
def test_the_diff_of_a_policy_with_itself_or_reordered_is_empty(pair: tuple[Policy, Policy]) -> None:
    old, _ = pair
    assert not diff_policies(old=old, new=old)
    reordered = Policy.model_validate(
        {
            **old.model_dump(by_alias=True),
            "catalog": [
                {**entry.model_dump(by_alias=True), "categories": entry.categories[::-1]}
                for entry in old.catalog[::-1]
            ],
            "zones": dict(reversed(old.zones.items())),
            "connections": {
                pattern: {**spec.model_dump(), "zones": spec.zones[::-1], "catalog": spec.catalog[::-1]}
                for pattern, spec in reversed(old.connections.items())
            },
        }
    )
    assert not diff_policies(old=old, new=reordered)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=policy_pairs(), batch=st.lists(st.tuples(requests, asks), min_size=1, max_size=8))
def test_applying_the_diff_decides_like_the_new_policy(
    pair: tuple[Policy, Policy], batch: list[tuple[Request, Ask]]
) -> None:
    old, new = pair
    diff = diff_policies(old=old, new=new)
    patched = apply_changes(policy=old, changes=diff.changes)
    assert not diff_policies(old=patched, new=new)
    patched_engine, new_engine = engine(patched), engine(new)
    for request, ask in batch:
        assert verdict(patched_engine, request) == verdict(new_engine, request)
        assert credential_verdict(patched_engine, request, ask) == credential_verdict(
            new_engine, request, ask
        )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=policy_pairs(), batch=st.lists(st.tuples(requests, asks), min_size=1, max_size=8))
def test_every_changed_decision_is_explained_by_a_reported_change(
    pair: tuple[Policy, Policy], batch: list[tuple[Request, Ask]]
) -> None:
    old, new = pair
    diff = diff_policies(old=old, new=new)
    old_engine, new_engine = engine(old), engine(new)
    for request, ask in batch:
        if verdict(old_engine, request) != verdict(new_engine, request):
            assert any(explains(change, request, old_engine, new_engine) for change in diff.changes), (
                request,
                verdict(old_engine, request),
                verdict(new_engine, request),
                diff.render(),
            )
        if credential_verdict(old_engine, request, ask) != credential_verdict(new_engine, request, ask):
            assert any(
                explains_credential(change, request, ask, old_engine, new_engine) for change in diff.changes
            ), (
                request,
                ask,
                credential_verdict(old_engine, request, ask),
                credential_verdict(new_engine, request, ask),
                diff.render(),
            )
