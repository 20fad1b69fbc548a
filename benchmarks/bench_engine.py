"""Benchmarks of the decision engine; run ``python -m benchmarks.bench_engine`` from the repo root.

(a) decision latency with resolved labels: ``PolicyEngine.decide`` for a task of 20 inputs whose
    labels are already known, against ``cedarpy.is_authorized_batch`` on the same policy
    (translated by ``tests/support/cedar.py``) and the same 20-request batches; every batch must
    get the same decision from both.
(b) full decision including label resolution: ``PolicyEngine.check`` with 20 distinct input URIs
    per decision that no earlier decision has seen.
(c) policy load + validate + compile (``load_policy_bytes`` + ``PolicyEngine``) of a policy with
    10,000 catalog patterns.

Requests are varied; about 30% of the decisions have at least one violation, so the medians cover
the allow path and the deny path. Like ``timeit``, the garbage collector is off while timing.
Performance targets are checked here, never in timed unit tests.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from airflow_policyzones.policy import (
    AssetLabels,
    Decision,
    InputRef,
    LabeledInput,
    Outcome,
    PolicyEngine,
    TaskContext,
    load_policy_bytes,
)
from benchmarks.generate import CatalogPattern, GeneratedPolicy, generate_policy, witness
from tests.support.cedar import CedarModel

SEED = 7
INPUTS_PER_TASK = 20
DENY_SHARE = 0.3
WARMUP = 200
DECISIONS = 2_000
COMPILE_PATTERNS = 10_000
COMPILE_RUNS = 5

TARGET_ENGINE_US = 20.0
TARGET_SPEEDUP = 50.0
TARGET_RESOLVE_US = 60.0
TARGET_COMPILE_MS = 300.0

TASK = TaskContext(dag_id="bench_dag", task_id="bench_task")

T = TypeVar("T")


def _ref(entry: CatalogPattern, token: str) -> InputRef:
    name = witness(entry, token)
    return InputRef.asset(name) if entry.namespace == "asset" else InputRef.table(name)


@dataclass(frozen=True)
class Plan:
    """One decision to make: a zone and which catalog entries its 20 inputs come from."""

    zone: str
    entries: tuple[int, ...]
    expect_allow: bool


class Workload:
    def __init__(self, generated: GeneratedPolicy, engine: PolicyEngine) -> None:
        self.generated = generated
        self.engine = engine
        self.labels: list[AssetLabels] = []
        for index, entry in enumerate(generated.catalog):
            labels = engine.labels_for(_ref(entry, f"w{index}"))
            if labels is None:
                raise SystemExit(f"generator bug: {entry.pattern!r} does not match its own witness")
            self.labels.append(labels)
        self.passing: dict[str, list[int]] = {}
        self.failing: dict[str, list[int]] = {}
        for zone in generated.zones:
            ok: list[int] = []
            bad: list[int] = []
            for index, labels in enumerate(self.labels):
                single = [LabeledInput(InputRef("asset", "x"), labels)]
                (
                    ok if engine.decide(task=TASK, zone=zone, inputs=single).outcome is Outcome.ALLOW else bad
                ).append(index)
            self.passing[zone], self.failing[zone] = ok, bad
        self.eligible = [
            zone for zone in generated.zones if len(self.passing[zone]) >= 5 and self.failing[zone]
        ]
        if len(self.eligible) < len(generated.zones) // 2:
            raise SystemExit(f"generator bug: only {len(self.eligible)} zones can read enough of the catalog")

    def plans(self, count: int, rng: random.Random) -> list[Plan]:
        plans = []
        for _ in range(count):
            zone = rng.choice(self.eligible)
            entries = [rng.choice(self.passing[zone]) for _ in range(INPUTS_PER_TASK)]
            deny = rng.random() < DENY_SHARE
            if deny:
                for position in rng.sample(range(INPUTS_PER_TASK), rng.randint(1, 3)):
                    entries[position] = rng.choice(self.failing[zone])
            plans.append(Plan(zone, tuple(entries), not deny))
        return plans


def _median_us(samples_ns: Sequence[int]) -> float:
    return statistics.median(samples_ns) / 1_000


def _timed(calls: Sequence[Callable[[], T]]) -> tuple[list[int], list[T]]:
    """Run each call once, timing it alone; the results are returned for checking."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    results: list[T] = []
    gc.collect()
    gc.disable()
    try:
        for call in calls:
            start = clock()
            result = call()
            samples.append(clock() - start)
            results.append(result)
    finally:
        gc.enable()
    return samples, results


@dataclass
class Row:
    name: str
    median: float
    unit: str
    target: str
    met: bool | None
    note: str = ""


def bench_resolved(work: Workload, cedar: CedarModel, rng: random.Random) -> tuple[list[Row], float, float]:
    """(a): decide() with resolved labels vs Cedar on the same batches."""
    engine = work.engine
    plans = work.plans(WARMUP + DECISIONS, rng)
    tasks = [
        (
            plan.zone,
            [LabeledInput(_ref(work.generated.catalog[i], f"a{i}"), work.labels[i]) for i in plan.entries],
        )
        for plan in plans
    ]
    batches = [[(zone, item.labels) for item in inputs] for zone, inputs in tasks]

    def engine_call(zone: str, inputs: list[LabeledInput]) -> Callable[[], Decision]:
        return lambda: engine.decide(task=TASK, zone=zone, inputs=inputs)

    def cedar_call(batch: list[tuple[str, AssetLabels | None]]) -> Callable[[], list[bool]]:
        return lambda: cedar.authorize(batch)

    _timed([engine_call(z, i) for z, i in tasks[:WARMUP]])
    _timed([cedar_call(b) for b in batches[:WARMUP]])
    engine_ns, decisions = _timed([engine_call(z, i) for z, i in tasks[WARMUP:]])
    cedar_ns, verdicts = _timed([cedar_call(b) for b in batches[WARMUP:]])

    deny_ns: list[int] = []
    allow_ns: list[int] = []
    for n, (plan, decision, verdict) in enumerate(zip(plans[WARMUP:], decisions, verdicts, strict=True)):
        engine_allows = decision.outcome is Outcome.ALLOW
        if engine_allows != all(verdict):
            raise SystemExit(
                f"engine and Cedar disagree on measured batch {n} (zone {plan.zone}): "
                f"engine {'allow' if engine_allows else 'deny'}, Cedar {verdict}"
            )
        if engine_allows != plan.expect_allow:
            raise SystemExit(f"benchmark bug: batch {n} was planned as {plan.expect_allow}")
        (allow_ns if engine_allows else deny_ns).append(engine_ns[n])

    engine_us, cedar_us = _median_us(engine_ns), _median_us(cedar_ns)
    speedup = cedar_us / engine_us
    share = len(deny_ns) / len(engine_ns)
    rows = [
        Row(
            "(a) decide, 20 resolved inputs",
            engine_us,
            "us",
            f"<= {TARGET_ENGINE_US:g} us",
            engine_us <= TARGET_ENGINE_US,
            f"{len(engine_ns)} decisions, {share:.0%} with a violation",
        ),
        Row("    allow path only", _median_us(allow_ns), "us", "", None, f"{len(allow_ns)} decisions"),
        Row("    deny path only", _median_us(deny_ns), "us", "", None, f"{len(deny_ns)} decisions"),
        Row(
            "(a) cedarpy is_authorized_batch, 20 requests",
            cedar_us,
            "us",
            "",
            None,
            "same batches, identical decisions; includes input entity serialization",
        ),
        Row(
            "(a) speedup (cedar / engine)", speedup, "x", f">= {TARGET_SPEEDUP:g}x", speedup >= TARGET_SPEEDUP
        ),
    ]
    return rows, engine_us, cedar_us


def bench_resolve(work: Workload, rng: random.Random) -> tuple[list[Row], float]:
    """(b): check() with 20 never-seen-before URIs per decision."""
    engine = work.engine
    catalog = work.generated.catalog
    plans = work.plans(WARMUP + DECISIONS, rng)
    names = [[(catalog[i], f"n{d}x{k}") for k, i in enumerate(plan.entries)] for d, plan in enumerate(plans)]
    refs = [[_ref(entry, token) for entry, token in row] for row in names]
    unique = {ref for row in refs for ref in row}
    if len(unique) != len(plans) * INPUTS_PER_TASK:
        raise SystemExit("benchmark bug: an input URI repeats across decisions")

    def check_call(zone: str, inputs: list[InputRef]) -> Callable[[], Decision]:
        return lambda: engine.check(task=TASK, zone=zone, inputs=inputs)

    def raw_call(zone: str, inputs: list[tuple[CatalogPattern, str]]) -> Callable[[], Decision]:
        # From raw URI strings: InputRef.asset()/table() normalize each one, as a request parser would.
        strings = [(entry.namespace, witness(entry, "r" + token)) for entry, token in inputs]
        return lambda: engine.check(
            task=TASK,
            zone=zone,
            inputs=[InputRef.asset(s) if ns == "asset" else InputRef.table(s) for ns, s in strings],
        )

    _timed([check_call(p.zone, r) for p, r in zip(plans[:WARMUP], refs[:WARMUP], strict=True)])
    check_ns, decisions = _timed(
        [check_call(p.zone, r) for p, r in zip(plans[WARMUP:], refs[WARMUP:], strict=True)]
    )
    raw_ns, raw_decisions = _timed(
        [raw_call(p.zone, n) for p, n in zip(plans[WARMUP:], names[WARMUP:], strict=True)]
    )
    for plan, decision, raw in zip(plans[WARMUP:], decisions, raw_decisions, strict=True):
        allowed = decision.outcome is Outcome.ALLOW
        if allowed != plan.expect_allow or raw.outcome is not decision.outcome:
            raise SystemExit("benchmark bug: a fresh URI resolved to other labels than its pattern's")
    resolve_us = _median_us(check_ns)
    rows = [
        Row(
            "(b) check, 20 never-seen URIs (InputRef given)",
            resolve_us,
            "us",
            f"<= {TARGET_RESOLVE_US:g} us",
            resolve_us <= TARGET_RESOLVE_US,
            f"{len(check_ns)} decisions, {len(check_ns) * INPUTS_PER_TASK} URIs",
        ),
        Row(
            "    same, from raw strings (incl. normalization)",
            _median_us(raw_ns),
            "us",
            "",
            None,
            "InputRef.asset()/table() inside the timed call",
        ),
    ]
    return rows, resolve_us


def bench_compile() -> tuple[list[Row], float]:
    """(c): load + validate + compile a policy with 10,000 catalog patterns."""
    content = generate_policy(patterns=COMPILE_PATTERNS).yaml_text.encode()
    samples: list[int] = []
    for _ in range(COMPILE_RUNS):
        gc.collect()
        start = time.perf_counter_ns()
        PolicyEngine(load_policy_bytes(content))
        samples.append(time.perf_counter_ns() - start)
    compile_ms = statistics.median(samples) / 1e6
    rows = [
        Row(
            f"(c) load + validate + compile, {COMPILE_PATTERNS:,} patterns",
            compile_ms,
            "ms",
            f"<= {TARGET_COMPILE_MS:g} ms",
            compile_ms <= TARGET_COMPILE_MS,
            f"median of {COMPILE_RUNS}, {len(content) / 1e6:.1f} MB of YAML",
        ),
        *_compile_stages(content),
    ]
    return rows, compile_ms


def _compile_stages(content: bytes) -> list[Row]:
    """Where (c)'s time goes; uses loader internals, so it is skipped if they change."""
    from datetime import datetime, timezone

    from airflow_policyzones.policy import loader
    from airflow_policyzones.policy.models import Policy
    from airflow_policyzones.policy.references import check_references

    try:
        text = content.decode()
        stages: dict[str, list[int]] = {}
        for _ in range(3):
            gc.collect()
            t0 = time.perf_counter_ns()
            data = loader._parse(text, source="<bench>")
            t1 = time.perf_counter_ns()
            policy = Policy.model_validate(data)
            t2 = time.perf_counter_ns()
            check_references(policy, now=datetime.now(timezone.utc))
            t3 = time.perf_counter_ns()
            PolicyEngine(loader.LoadedPolicy(policy=policy, source="<bench>", version="bench"))
            t4 = time.perf_counter_ns()
            for name, ns in (
                ("YAML parse (loader._parse, yaml-rs)", t1 - t0),
                ("pydantic validation (Policy.model_validate)", t2 - t1),
                ("reference checks (check_references)", t3 - t2),
                ("compile (PolicyEngine)", t4 - t3),
            ):
                stages.setdefault(name, []).append(ns)
    except Exception as error:  # pragma: no cover - diagnostics only
        return [Row(f"    stage breakdown unavailable: {error}", 0.0, "ms", "", None)]
    return [
        Row(f"    {name}", statistics.median(ns) / 1e6, "ms", "", None, "median of 3")
        for name, ns in stages.items()
    ]


def _print_table(rows: list[Row]) -> None:
    width = max(len(row.name) for row in rows)
    print(f"{'benchmark':<{width}}  {'median':>12}  {'target':<12}  {'met':<4}  notes")
    print("-" * (width + 50))
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        print(
            f"{row.name:<{width}}  {row.median:>9.1f} {row.unit:<2}  {row.target:<12}  {met:<4}  {row.note}"
        )


def main() -> None:
    rng = random.Random(SEED)
    generated = generate_policy()
    loaded = load_policy_bytes(generated.yaml_text.encode())
    engine = PolicyEngine(loaded)
    cedar = CedarModel(engine, flows="compact")
    print(
        f"policy: {len(generated.zones)} zones, {len(loaded.policy.catalog):,} catalog patterns, "
        f"{len(generated.categories)} categories, {len(loaded.policy.flows)} flows "
        f"({sum(1 for f in loaded.policy.flows if f.via)} with via); "
        f"Cedar: {len(cedar.policy_set)} policies; Python {sys.version.split()[0]}",
        flush=True,
    )
    work = Workload(generated, engine)
    rows_a, engine_us, cedar_us = bench_resolved(work, cedar, rng)
    rows_b, resolve_us = bench_resolve(work, rng)
    rows_c, compile_ms = bench_compile()
    print()
    _print_table(rows_a + rows_b + rows_c)
    print()
    print(
        f"engine_median_us={engine_us:.1f} resolve_median_us={resolve_us:.1f} "
        f"cedar_median_us={cedar_us:.1f} speedup={cedar_us / engine_us:.1f} compile_ms={compile_ms:.1f}"
    )


if __name__ == "__main__":
    main()
