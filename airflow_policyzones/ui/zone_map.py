"""The zone map: zones as boxes, sanctioned flows (with their reclassifiers) as arrows, as SVG.

Rendered on the server so the picture needs no JavaScript, matches the policy the decision
service enforces, and can be saved as a file for a review. Every label is escaped: zone and
reclassifier names come from a policy file, descriptions are free text.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from markupsafe import escape

from airflow_policyzones.db.audit_models import PolicyOut

NODE_WIDTH = 230
NODE_HEIGHT = 66
COLUMN_GAP = 170
ROW_GAP = 34
MARGIN = 24

STYLESHEET = Path(__file__).parent / "static" / "zone-map.css"


@dataclass(frozen=True, slots=True)
class _Edge:
    source: str
    target: str
    label: str
    kind: str  # "flow" (sanctioned flow, maybe via reclassifiers) or "inflow" (zone.inflows)


@dataclass(frozen=True, slots=True)
class ObservedFlow:
    """A flow seen in the records, drawn over the policy's arrows: ``forbidden`` ones in red."""

    source: str
    target: str
    label: str
    forbidden: bool


def _edges(policy: PolicyOut) -> list[_Edge]:
    edges = [
        _Edge(flow.source, flow.target, "via " + ", ".join(flow.via) if flow.via else "direct", "flow")
        for flow in policy.flows
    ]
    edges += [
        _Edge(source, zone.name, "inflow", "inflow")
        for zone in policy.zones
        for source in zone.inflows
        if source != zone.name
    ]
    known = {zone.name for zone in policy.zones}
    return [edge for edge in edges if edge.source in known and edge.target in known]


def _layers(names: Sequence[str], edges: Sequence[_Edge]) -> dict[str, int]:
    """Longest-path layering; edges closing a cycle are ignored for placement only."""
    successors: dict[str, list[str]] = {name: [] for name in names}
    for edge in edges:
        successors[edge.source].append(edge.target)
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str) -> None:
        stack = [(node, iter(sorted(successors[node])))]
        state[node] = 1
        while stack:
            current, children = stack[-1]
            for child in children:
                if state.get(child) is None:
                    state[child] = 1
                    stack.append((child, iter(sorted(successors[child]))))
                    break
            else:
                state[current] = 2
                order.append(current)
                stack.pop()

    for name in sorted(names):
        if name not in state:
            visit(name)
    position = {name: index for index, name in enumerate(reversed(order))}  # topological order
    layer = dict.fromkeys(names, 0)
    for name in reversed(order):
        for child in successors[name]:
            if position[child] > position[name]:  # forward edge (cycle-closing edges skipped)
                layer[child] = max(layer[child], layer[name] + 1)
    return layer


def render_zone_map(
    policy: PolicyOut,
    *,
    standalone: bool = False,
    observed: Sequence[ObservedFlow] = (),
    notes: Mapping[str, tuple[str, bool]] | None = None,
) -> str:
    """The zone map of ``policy`` as an ``<svg>`` element.

    In a page its look comes from the page's stylesheet (light and dark); ``standalone`` embeds
    the same rules so the file renders on its own. ``observed``: flows between the policy's zones
    seen in the records, drawn over the map (class ``observed``, or ``forbidden`` in red);
    ``notes``: per zone a line drawn under its box and whether it is a warning (red).
    """
    zones = {zone.name: zone for zone in policy.zones}
    sanctioned = _edges(policy)
    extra = [
        _Edge(flow.source, flow.target, flow.label, "forbidden" if flow.forbidden else "observed")
        for flow in observed
        if flow.source in zones and flow.target in zones
    ]
    edges = [*sanctioned, *extra]
    layer = _layers(list(zones), sanctioned)  # observed flows never move the boxes
    columns: dict[int, list[str]] = {}
    for name in sorted(zones, key=lambda item: (layer[item], item)):
        columns.setdefault(layer[name], []).append(name)
    place: dict[str, tuple[float, float]] = {}
    for column, members in columns.items():
        for row, name in enumerate(members):
            place[name] = (
                MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
                MARGIN + row * (NODE_HEIGHT + ROW_GAP),
            )
    width = MARGIN * 2 + max(len(columns), 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = (
        MARGIN * 2 + max((len(m) for m in columns.values()), default=1) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    )
    height += 40 if any(layer[e.target] <= layer[e.source] for e in edges) else 0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="pz-map" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-labelledby="pz-map-title">',
        f'<title id="pz-map-title">Zone map of policy {escape(policy.name or "")} '
        f"({escape(policy.version[:12])})</title>",
        f"<style>{_stylesheet()}</style>" if standalone else "",
        "<defs>",
        *(
            f'<marker id="pz-arrow-{kind}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
            'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
            for kind in ("flow", "inflow", "observed", "forbidden")
        ),
        "</defs>",
    ]
    for edge in edges:
        parts.append(_edge_svg(edge, place, forward=layer[edge.target] > layer[edge.source], height=height))
    for name, zone in zones.items():
        x, y = place[name]
        categories = ", ".join(zone.allowed_categories) or "no categories"
        flags = [zone.purpose if zone.purpose != name else "", "dry run" if zone.mode == "dry_run" else ""]
        flags += [
            "consent" if zone.requires_consent else "",
            "aggregates only" if zone.aggregated_only else "",
        ]
        meta = " · ".join(flag for flag in flags if flag)
        parts.append(
            f'<g class="node {escape(zone.mode)}" data-zone="{escape(name)}">'
            f"<title>{escape(zone.description or name)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="8"/>'
            f'<text class="name" x="{x + 12}" y="{y + 22}">{escape(_clip(name, 28))}</text>'
            f'<text class="meta" x="{x + 12}" y="{y + 40}">{escape(_clip(categories, 34))}</text>'
            f'<text class="meta" x="{x + 12}" y="{y + 56}">{escape(_clip(meta, 34))}</text>'
            "</g>"
        )
        if notes and name in notes:
            note, warning = notes[name]
            parts.append(
                f'<text class="note{" warning" if warning else ""}" x="{x + 4}" '
                f'y="{y + NODE_HEIGHT + 15}">{escape(_clip(note, 40))}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _edge_svg(edge: _Edge, place: dict[str, tuple[float, float]], *, forward: bool, height: int) -> str:
    sx, sy = place[edge.source]
    tx, ty = place[edge.target]
    if forward:
        x1, y1 = sx + NODE_WIDTH, sy + NODE_HEIGHT / 2
        x2, y2 = tx, ty + NODE_HEIGHT / 2
        bend = (x2 - x1) / 2
        path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
        label_x, label_y = (x1 + x2) / 2, (y1 + y2) / 2 - 6
    else:  # same column or backwards: loop below the boxes
        x1, y1 = sx + NODE_WIDTH / 2, sy + NODE_HEIGHT
        x2, y2 = tx + NODE_WIDTH / 2, ty + NODE_HEIGHT
        low = height - 14
        path = f"M{x1},{y1} C{x1},{low} {x2},{low} {x2},{y2}"
        label_x, label_y = (x1 + x2) / 2, low - 4
    return (
        f'<g class="edge {edge.kind}" data-from="{escape(edge.source)}" data-to="{escape(edge.target)}">'
        f'<path d="{path}" marker-end="url(#pz-arrow-{edge.kind})"/>'
        f'<text x="{label_x}" y="{label_y}" text-anchor="middle">{escape(_clip(edge.label, 40))}</text>'
        "</g>"
    )


@functools.cache
def _stylesheet() -> str:
    return STYLESHEET.read_text(encoding="utf-8")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
