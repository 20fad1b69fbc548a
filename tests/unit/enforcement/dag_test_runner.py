"""Run fixture DAGs with ``dag.test()`` in a fresh process and print what happened as JSON.

Used by ``test_dag_test.py`` in a subprocess with its own ``AIRFLOW_HOME`` (a migrated SQLite
database), so that Airflow's settings, the policy plugin and our settings are read exactly as in
``airflow dags test``. Usage::

    python dag_test_runner.py [--break-policy FILE] DAG_ID...

The DAGs are parsed from ``[core] dags_folder`` by Airflow's ``DagBag`` (which applies the
cluster policy, as ``airflow dags test`` does). With ``--break-policy`` the policy file is
overwritten with garbage after parsing, before the runs, to exercise the fail-closed path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MARKER = "POLICYZONES-DAG-TEST-RESULT "


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--break-policy")
    parser.add_argument("dag_ids", nargs="+")
    args = parser.parse_args()

    import sqlalchemy as sa
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.utils.session import create_session

    from airflow_policyzones.enforcement.hook import is_enforcement_hook

    folder = Path(conf.get("core", "dags_folder"))
    bag = BundleDagBag(dag_folder=folder, bundle_path=folder)
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    hooked = {
        f"{dag_id}.{task.task_id}": is_enforcement_hook(
            task.partial_kwargs.get("pre_execute") if task.is_mapped else task._pre_execute_hook
        )
        for dag_id in args.dag_ids
        for task in bag.get_dag(dag_id).tasks
    }
    if args.break_policy:
        Path(args.break_policy).write_text("zones: [this is not a policy\n")

    result: dict[str, object] = {"hooked": hooked, "task_instances": [], "decisions": []}
    for dag_id in args.dag_ids:
        run = bag.get_dag(dag_id).test()
        with create_session() as session:
            for ti in run.get_task_instances(session=session):
                result["task_instances"].append(  # type: ignore[attr-defined]
                    {
                        "dag_id": ti.dag_id,
                        "task_id": ti.task_id,
                        "map_index": ti.map_index,
                        "state": str(ti.state),
                        "try_number": ti.try_number,
                    }
                )
    with create_session() as session:
        rows = session.execute(
            sa.text(
                "SELECT dag_id, task_id, map_index, try_number, outcome, allowed, source, zone "
                "FROM policyzones_decision ORDER BY id"
            )
        )
        result["decisions"] = [dict(row._mapping) for row in rows]
    print(MARKER + json.dumps(result, default=str), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
