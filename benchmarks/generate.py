"""A deterministic generator of big policies for the benchmarks.

``generate_policy()`` builds (with a fixed seed) a policy of 200 zones, 100 categories and 2,000
catalog patterns, every zone open to every DAG (``members: {dag_ids: ['*']}``), flows with and
without ``via``, and returns it as YAML text together with what the benchmarks need to make
inputs: the catalog patterns, and :func:`witness` to make fresh names that match one of them.

Catalog patterns are mostly segment globs (``s3://lake-L/domain-D/table-T/**``); some have ``*``
inside a segment (``.../table-T-*/**``), some span every domain of a lake
(``s3://lake-L/domain-*/table-T/**``, so that names match several entries and labels merge), and a
few are table patterns (``wh_L.schema_D.fact_T_*``).

Run ``python -m benchmarks.generate [patterns]`` to print a policy.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from typing import Any, Literal

SEED = 20_250_701

Namespace = Literal["asset", "table"]


@dataclass(frozen=True)
class CatalogPattern:
    namespace: Namespace
    pattern: str
    owner: str
    """The zone the entry's data was produced for (its labels are chosen to suit that zone)."""


@dataclass(frozen=True)
class GeneratedPolicy:
    yaml_text: str
    zones: tuple[str, ...]
    categories: tuple[str, ...]
    catalog: tuple[CatalogPattern, ...]


def witness(entry: CatalogPattern, token: str) -> str:
    """A name that matches ``entry``'s glob, made unique by ``token``.

    ``**`` becomes one segment ``part-<token>``; a ``*`` inside a segment becomes ``<token>``.
    Generated patterns never use other wildcards, and no pattern's literal segment can equal a
    segment containing the token, so the set of entries a witness matches does not depend on it.
    """
    separator = "/" if entry.namespace == "asset" else "."
    segments = []
    for segment in entry.pattern.split(separator):
        if segment == "**":
            segments.append(f"part-{token}")
        else:
            segments.append(segment.replace("*", token))
    return separator.join(segments)


def generate_policy(
    *, zones: int = 200, patterns: int = 2_000, categories: int = 100, seed: int = SEED
) -> GeneratedPolicy:
    rng = random.Random(seed)
    category_names = [f"cat_{i:03d}" for i in range(categories)]
    zone_names = [f"zone_{i:03d}" for i in range(zones)]
    purposes = [f"purpose_{i:02d}" for i in range(max(1, zones // 5))]

    zone_specs: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(zone_names):
        others = [z for z in zone_names if z != name]
        zone_specs[name] = {
            "purpose": purposes[index % len(purposes)],
            "description": f"generated zone {index}",
            "allowed_categories": sorted(rng.sample(category_names, rng.randint(20, 50))),
            "requires_consent": rng.random() < 0.2,
            "aggregated_only": rng.random() < 0.1,
            "inflows": sorted(rng.sample(others, rng.randint(0, 2))),
            "members": {"dag_ids": ["*"]},
        }

    reclassifiers = {
        f"reclassify_{name}": {
            "zone": name,
            "dag_id": f"dag_{name}",
            "task_id": "aggregate_and_filter",
            "outputs": {"aggregated": True, "consented": [zone_specs[name]["purpose"]]},
        }
        for name in zone_names
    }
    flows: list[dict[str, Any]] = []
    for _ in range(zones * 3 // 2):
        source, target = rng.sample(zone_names, 2)
        flow: dict[str, Any] = {"from": source, "to": target}
        if rng.random() < 0.5:
            flow["via"] = [f"reclassify_{source}"]
        flows.append(flow)
    sources_into: dict[str, list[str]] = {name: [] for name in zone_names}
    for flow in flows:
        sources_into[flow["to"]].append(flow["from"])

    catalog: list[CatalogPattern] = []
    entries: list[dict[str, Any]] = []
    for i in range(patterns):
        lake, domain, table = i % 16, (i // 16) % 25, i // 400
        roll = rng.random()
        namespace: Namespace = "asset"
        if roll < 0.80:
            pattern = f"s3://lake-{lake}/domain-{domain}/table-{table}/**"
        elif roll < 0.92:
            pattern = f"s3://lake-{lake}/domain-{domain}/table-{table}-*/**"
        elif roll < 0.96:
            pattern = f"s3://lake-{lake}/domain-*/table-{table}/**"
        else:
            namespace = "table"
            pattern = f"wh_{lake}.schema_{domain}.fact_{table}_*"
        owner = rng.choice(zone_names)
        spec = zone_specs[owner]
        labels: dict[str, Any] = {
            "categories": sorted(rng.sample(spec["allowed_categories"], rng.randint(1, 3))),
            "consented": sorted({spec["purpose"], *rng.sample(purposes, rng.randint(0, 2))})
            if spec["requires_consent"] or rng.random() < 0.5
            else [],
            "aggregated": spec["aggregated_only"] or rng.random() < 0.3,
        }
        roll = rng.random()
        if roll < 0.5:
            labels["origin_zones"] = [owner]
        elif roll < 0.6 and sources_into[owner]:
            labels["origin_zones"] = [rng.choice(sources_into[owner])]
        key = "uri" if namespace == "asset" else "table"
        entries.append({key: pattern, **labels})
        catalog.append(CatalogPattern(namespace, pattern, owner))

    lines = [
        "# Generated by benchmarks/generate.py: do not edit.",
        "version: 1",
        f"name: generated-{zones}-zones-{patterns}-patterns",
        "categories:",
        *(f"  {name}: {{description: generated category}}" for name in category_names),
        "zones:",
    ]
    for name, spec in zone_specs.items():
        lines.append(f"  {name}:")
        lines.extend(f"    {key}: {json.dumps(value)}" for key, value in spec.items())
    lines.append("reclassifiers:")
    lines.extend(f"  {name}: {json.dumps(spec)}" for name, spec in reclassifiers.items())
    lines.append("flows:")
    lines.extend(f"  - {json.dumps(flow)}" for flow in flows)
    lines.append("catalog:")
    lines.extend(f"  - {json.dumps(entry)}" for entry in entries)
    return GeneratedPolicy(
        yaml_text="\n".join(lines) + "\n",
        zones=tuple(zone_names),
        categories=tuple(category_names),
        catalog=tuple(catalog),
    )


if __name__ == "__main__":
    sys.stdout.write(generate_policy(patterns=int(sys.argv[1]) if len(sys.argv) > 1 else 2_000).yaml_text)
