"""What the static flow analysis adds to ``policyzones check``, against DAG parsing in the same run.

A generated folder of 500 DAG files / 20,000 tasks (``PythonOperator`` tasks chained in each
DAG, 1-3 Asset inlets and one Asset outlet each) is checked against the generated policy of
:mod:`benchmarks.generate` (200 zones, 2,000 catalog patterns; every zone has a reclassifier task,
``dag_<zone>.aggregate_and_filter``, and 200 of the DAGs hold them). Inlets are raw assets from
the catalog or outputs of earlier tasks, of the same DAG or of any other, so flows cross DAGs and
zones and many of them are unsanctioned: the analysis propagates labels over the whole folder,
decides every task and explains every finding with its path.

Each repetition runs the check exactly as ``policyzones check`` does (``check_dag_folder``):
Airflow's ``DagBag`` parses every file once, and the check times its own phases, so the parse
baseline and the flow analysis come from the same run (after a warm-up check of one file, which
pays for importing Airflow). Reported, as medians over the repetitions:

* ``parse_s``: DagBag parsing alone (``DagBag.process_file`` of every file);
* ``flow_s``: the flow analysis: propagating labels over the folder and deciding all 20,000
  tasks (``analyze_flows``; the decisions the check made before flows existed are included);
* ``paths_s``: computing the path of every finding (done lazily, when a report prints them);
* ``render_s``: the JSON report (every finding with every path; encoding dominates);
* ``flow_check_overhead_pct`` = (flow_s + paths_s) / parse_s: what the flow check adds to parsing;
* ``check_overhead_pct``: everything the check does besides parsing, JSON report included.

Run with ``python -m benchmarks.bench_flows`` (``make bench``). The last line is
``flow_check_overhead_pct=<n> parse_median_s=<n> flow_median_s=<n> paths_median_s=<n>
render_median_s=<n> check_overhead_pct=<n>`` (one line).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.generate import GeneratedPolicy, generate_policy, witness

DAGS = 500
TASKS_PER_DAG = 40
REPEATS = 5
SEED = 20_251_128
TARGET_PCT = 10.0
VIOLATIONS = 0.02
"""Share of tasks that read another zone's data on purpose."""

if TYPE_CHECKING:
    from airflow_policyzones.policy import PolicyEngine


@dataclass
class _Task:
    task_id: str
    inlets: list[str]
    output: str
    violates: bool = False
    """Reads another zone's data on purpose: the check must deny it (and show the path)."""


@dataclass
class _Dag:
    dag_id: str
    zone: str
    tasks: list[_Task] = field(default_factory=list)


def generate_folder(
    folder: Path, policy: GeneratedPolicy, engine: PolicyEngine, *, violations: float, seed: int = SEED
) -> tuple[int, int, int]:
    """Write ``DAGS`` DAG files into ``folder``; returns the number of tasks, of tasks that read
    another DAG's output, and of tasks allowed to read another zone's output (through a reclassifier).

    What a team under CI writes: tasks read raw assets their zone may read, upstream outputs of
    their DAG, outputs of other DAGs of their zone, and outputs of reclassifiers of other zones
    (flows that cross DAGs and zones). A fraction ``violations`` of the tasks reads another zone's
    output on purpose (an unsanctioned flow, often through several hops); every other denial the
    random choices made is repaired (its derived inlets replaced by raw ones), with the flow
    analysis itself, until only the intended violations are left.
    """
    from airflow_policyzones.policy import InputRef, TaskContext
    from airflow_policyzones.policy.flow_models import TaskNode
    from airflow_policyzones.policy.flows import analyze_flows

    rng = random.Random(seed)
    zones = policy.zones
    probe = TaskContext(dag_id="probe", task_id="probe")  # every zone admits every DAG
    raw_by_zone: dict[str, list[str]] = {}
    for number, entry in enumerate(policy.catalog):
        # A name made for a zone's entry can match other zones' entries too (their labels merge
        # in): keep the names the zone may read.
        name = witness(entry, f"w{number}")
        if entry.namespace == "asset":
            decision = engine.check(task=probe, zone=entry.owner, inputs=[InputRef.asset(name)])
            if decision.allowed and not decision.findings:
                raw_by_zone.setdefault(entry.owner, []).append(name)
    via_into: dict[str, list[str]] = {}
    for flow in engine.policy.flows:
        for name in flow.via:
            via_into.setdefault(flow.target, []).append(engine.policy.reclassifiers[name].dag_id)

    def raw(zone: str) -> str:
        return rng.choice(raw_by_zone.get(zone) or raw_by_zone[rng.choice(sorted(raw_by_zone))])

    dags: list[_Dag] = []
    written: list[tuple[str, str]] = []  # (zone, output) of every task so far
    written_in: dict[str, list[str]] = {}
    reclassified: dict[str, str] = {}  # reclassifier DAG id -> its output
    for number in range(DAGS):
        zone = zones[number] if number < len(zones) else rng.choice(zones)
        dag = _Dag(f"dag_{zone}" if number < len(zones) else f"bench_{number:03d}", zone)
        for index in range(TASKS_PER_DAG):
            last = index == TASKS_PER_DAG - 1
            task_id = "aggregate_and_filter" if last and number < len(zones) else f"t{index:02d}"
            own = [task.output for task in dag.tasks]
            inlets: list[str] = []
            for _ in range(rng.randint(1, 3)):
                roll = rng.random()
                sources = [reclassified[d] for d in via_into.get(zone, ()) if d in reclassified]
                if roll < 0.30 and own:
                    inlets.append(rng.choice(own))
                elif roll < 0.40 and written_in.get(zone):
                    inlets.append(rng.choice(written_in[zone]))
                elif roll < 0.45 and sources:
                    inlets.append(rng.choice(sources))
                else:
                    inlets.append(raw(zone))
            task = _Task(task_id, inlets, f"s3://derived/{dag.dag_id}/{task_id}")
            foreign = [output for other, output in written if other != zone]
            if foreign and not last and rng.random() < violations:
                task.violates = True
                task.inlets.append(rng.choice(foreign))
            dag.tasks.append(task)
        dags.append(dag)
        written.extend((zone, task.output) for task in dag.tasks)
        written_in.setdefault(zone, []).extend(task.output for task in dag.tasks)
        reclassified[dag.dag_id] = dag.tasks[-1].output

    tasks = [(dag, task) for dag in dags for task in dag.tasks]
    for _ in range(8):
        nodes = [
            TaskNode(
                task=TaskContext(dag_id=dag.dag_id, task_id=task.task_id),
                zone=dag.zone,
                inputs=tuple(InputRef.asset(uri) for uri in task.inlets),
                outputs=(InputRef.asset(task.output),),
                reclassifier=engine.reclassifier_for(dag_id=dag.dag_id, task_id=task.task_id),
            )
            for dag, task in tasks
        ]
        report = analyze_flows(engine=engine, tasks=nodes)
        repaired = 0
        for (dag, task), decision in zip(tasks, report.decisions, strict=True):
            if decision.findings and not task.violates:
                task.inlets = [
                    uri if not uri.startswith("s3://derived/") else raw(dag.zone) for uri in task.inlets
                ]
                repaired += 1
        if not repaired:
            break

    zone_of = {task.output: dag.zone for dag, task in tasks}
    dag_of = {task.output: dag.dag_id for dag, task in tasks}
    cross_dag = sum(
        1 for dag, task in tasks if any(dag_of.get(uri, dag.dag_id) != dag.dag_id for uri in task.inlets)
    )
    cross_zone = sum(
        1
        for (dag, task), decision in zip(tasks, report.decisions, strict=True)
        if not decision.findings and any(zone_of.get(uri, dag.zone) != dag.zone for uri in task.inlets)
    )
    for dag in dags:
        lines = [
            f'"""Generated by benchmarks/bench_flows.py: {TASKS_PER_DAG} tasks in zone {dag.zone}."""',
            "import pendulum",
            "from airflow.providers.standard.operators.python import PythonOperator",
            "from airflow.sdk import DAG, Asset, chain",
            "",
            "from airflow_policyzones import zone_tag",
            "",
            "",
            "def _noop():",
            "    pass",
            "",
            "",
            f"with DAG({dag.dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz='UTC'), "
            f"tags=[zone_tag({dag.zone!r})]):",
        ]
        for index, task in enumerate(dag.tasks):
            assets = ", ".join(f"Asset({uri!r})" for uri in dict.fromkeys(task.inlets))
            lines.append(
                f"    t{index} = PythonOperator(task_id={task.task_id!r}, python_callable=_noop, "
                f"inlets=[{assets}], outlets=[Asset({task.output!r})])"
            )
        lines.append("    chain(" + ", ".join(f"t{index}" for index in range(len(dag.tasks))) + ")")
        (folder / f"{dag.dag_id}.py").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(tasks), cross_dag, cross_zone


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="policyzones-bench-flows-") as tmp:
        root = Path(tmp)
        os.environ["AIRFLOW_HOME"] = str(root / "airflow-home")
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        from airflow_policyzones.cli.check import check_dag_folder
        from airflow_policyzones.cli.report import check_json, dumps
        from airflow_policyzones.policy import PolicyEngine
        from airflow_policyzones.policy.loader import gc_paused

        generated = generate_policy()
        policy_file = root / "policy.yaml"
        policy_file.write_text(generated.yaml_text, encoding="utf-8")
        engine = PolicyEngine.from_file(policy_file)
        folder = root / "dags"
        folder.mkdir()
        started = time.perf_counter()
        tasks, cross_dag, cross_zone = generate_folder(folder, generated, engine, violations=VIOLATIONS)
        elapsed = time.perf_counter() - started
        print(
            f"generated {DAGS} DAG files, {tasks:,} tasks ({cross_dag:,} read another DAG's output, "
            f"{cross_zone:,} another zone's through a reclassifier) in {elapsed:.1f} s; policy: "
            f"{len(generated.zones)} zones, {len(generated.catalog):,} catalog patterns; "
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
            flush=True,
        )

        # Warm up once on one file: the first check in a process imports and configures Airflow.
        warm = root / "warm"
        warm.mkdir()
        first = sorted(folder.glob("*.py"))[0]
        (warm / first.name).write_text(first.read_text(encoding="utf-8"), encoding="utf-8")
        check_dag_folder(engine=engine, dag_folder=warm)

        parse: list[float] = []
        flow: list[float] = []
        paths: list[float] = []
        render: list[float] = []
        check: list[float] = []
        for repeat in range(REPEATS):
            result = check_dag_folder(engine=engine, dag_folder=folder)
            # As the CLI renders: with the cyclic GC paused (the report's objects are long-lived).
            with gc_paused():
                paths_started = time.perf_counter()
                count = sum(len(finding.paths) for task in result.tasks for finding in task.flows)
                paths_seconds = time.perf_counter() - paths_started
                render_started = time.perf_counter()
                report = dumps(check_json(result))
                render_seconds = time.perf_counter() - render_started
            counts = result.counts
            if counts.tasks != tasks or result.import_errors:
                raise SystemExit(f"expected {tasks} tasks and no import errors, got {counts}")
            parse.append(result.parse_seconds)
            flow.append(result.flow_seconds)
            paths.append(paths_seconds)
            render.append(render_seconds)
            check.append(result.seconds + paths_seconds + render_seconds)
            print(
                f"  run {repeat + 1}/{REPEATS}: parse {result.parse_seconds:.2f} s, "
                f"flows {result.flow_seconds:.2f} s, paths {paths_seconds:.2f} s, JSON report "
                f"{render_seconds:.2f} s ({len(report) / 1e6:.0f} MB), whole check {check[-1]:.2f} s; "
                f"{counts.allowed:,} allowed, {counts.denied:,} denied, {count:,} paths, "
                f"{counts.flow_warnings} flow warnings",
                flush=True,
            )
            del result, report
    parse_s, flow_s, paths_s, render_s, check_s = (
        statistics.median(values) for values in (parse, flow, paths, render, check)
    )
    flow_pct = (flow_s + paths_s) / parse_s * 100
    check_pct = (check_s - parse_s) / parse_s * 100
    print()
    rows = [
        ("DagBag parsing (median)", f"{parse_s:.2f} s", "", None),
        ("flow analysis + decisions (median)", f"{flow_s:.2f} s", "", None),
        ("paths of every finding (median)", f"{paths_s:.2f} s", "", None),
        ("JSON report (median)", f"{render_s:.2f} s", "", None),
        (
            "flow check added to parsing",
            f"{flow_pct:.1f} %",
            f"<= {TARGET_PCT:.0f} %",
            flow_pct <= TARGET_PCT,
        ),
        ("whole check beyond parsing, JSON included", f"{check_pct:.1f} %", "", None),
    ]
    print(f"{'measure':<44}{'value':>12}  {'target':<10}met")
    for name, value, target, met in rows:
        verdict = "" if met is None else ("yes" if met else "NO")
        print(f"{name:<44}{value:>12}  {target:<10}{verdict}")
    print()
    print(
        f"flow_check_overhead_pct={flow_pct:.1f} parse_median_s={parse_s:.2f} flow_median_s={flow_s:.2f} "
        f"paths_median_s={paths_s:.2f} render_median_s={render_s:.2f} check_overhead_pct={check_pct:.1f}"
    )


if __name__ == "__main__":
    main()
