"""The semantic policy diff: exact on hand-written changes, complete on generated pairs.

Properties (hypothesis, over generated pairs of valid policies and generated requests):

* the diff of a policy with itself, or with the same policy reordered, is empty;
* applying the reported changes to the old policy gives one that decides every request exactly
  like the new one (nothing that matters is left out of the diff);
* every request whose decision changes between the two policies is explained by a reported change
  that concerns it: its zone, a catalog entry matching one of its inputs, a flow or exemption into
  its zone, a reclassifier such a flow names, or a policy-wide setting.
"""

from __future__ import annotations

import json
from typing import Any

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
sections = st.fixed_dictionaries(
    {
        "settings": st.fixed_dictionaries(
            {"require_zone": st.booleans(), "default_zone": st.one_of(st.none(), st.sampled_from(ZONES))}
        ),
        "categories": st.dictionaries(
            st.sampled_from(CATEGORIES), st.fixed_dictionaries({"description": st.sampled_from(["", "x"])})
        ),
        "catalog": catalog_entries,
        "zones": zones,
        "reclassifiers": reclassifiers,
        "flows": flows,
        "exemptions": exemptions,
    }
)


def build(raw: dict[str, Any]) -> Policy:
    """A valid policy from drawn sections: references to what is not declared are dropped."""
    names = set(raw["zones"])
    categories = {name: raw["categories"].get(name, {}) for name in CATEGORIES}
    reclassifiers = {name: spec for name, spec in raw["reclassifiers"].items() if spec["zone"] in names}
    data = {
        "version": 1,
        "settings": {
            "require_zone": raw["settings"]["require_zone"],
            "default_zone": raw["settings"]["default_zone"]
            if raw["settings"]["default_zone"] in names
            else None,
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
        }
    )
    assert not diff_policies(old=old, new=reordered)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=policy_pairs(), batch=st.lists(requests, min_size=1, max_size=8))
def test_applying_the_diff_decides_like_the_new_policy(
    pair: tuple[Policy, Policy], batch: list[Request]
) -> None:
    old, new = pair
    diff = diff_policies(old=old, new=new)
    patched = apply_changes(policy=old, changes=diff.changes)
    assert not diff_policies(old=patched, new=new)
    patched_engine, new_engine = engine(patched), engine(new)
    for request in batch:
        assert verdict(patched_engine, request) == verdict(new_engine, request)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=policy_pairs(), batch=st.lists(requests, min_size=1, max_size=8))
def test_every_changed_decision_is_explained_by_a_reported_change(
    pair: tuple[Policy, Policy], batch: list[Request]
) -> None:
    old, new = pair
    diff = diff_policies(old=old, new=new)
    old_engine, new_engine = engine(old), engine(new)
    for request in batch:
        if verdict(old_engine, request) == verdict(new_engine, request):
            continue
        assert any(explains(change, request, old_engine, new_engine) for change in diff.changes), (
            request,
            verdict(old_engine, request),
            verdict(new_engine, request),
            diff.render(),
        )
