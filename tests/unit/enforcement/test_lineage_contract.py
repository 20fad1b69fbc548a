"""Pins the Airflow behaviour the observed-read check relies on (hook lineage, task runner).

Each test runs in a fresh interpreter: wrapping the collector and ``ObjectStoragePath`` is
process-wide, as it is in a task process. If a future Airflow stops reporting a statement before
its rows are fetched, swallows ``BaseException`` in the lineage call, or makes the collector a new
object per call, these fail instead of reads silently going unchecked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.airflow_db import postgres_database

pytestmark = pytest.mark.integration


def run(code: str, **env: str) -> dict[str, object]:
    import os

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_collector_is_one_object_per_process_whose_methods_can_be_wrapped() -> None:
    found = run(
        "import json\n"
        "from airflow.sdk.lineage import get_hook_lineage_collector, NoOpCollector\n"
        "from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector as compat\n"
        "a = get_hook_lineage_collector()\n"
        "seen = []\n"
        "original = a.add_extra\n"
        "a.add_extra = lambda context, key, value: (seen.append(key), original(context, key, value))\n"
        "compat().add_extra(context=object(), key='sql_job', value={'sql': 'SELECT 1'})\n"
        "print(json.dumps({'same': a is get_hook_lineage_collector() is compat(),\n"
        "  'noop_without_readers': isinstance(a, NoOpCollector), 'seen': seen,\n"
        "  'methods': all(hasattr(a, m) for m in ('add_input_asset', 'add_output_asset', 'add_extra',\n"
        "                                            'create_asset'))}))\n"
    )
    assert found == {"same": True, "noop_without_readers": True, "seen": ["sql_job"], "methods": True}


def test_a_base_exception_from_the_collector_escapes_the_sql_lineage_call_and_fails_without_retry() -> None:
    found = run(
        "import json, inspect\n"
        "from airflow.providers.common.sql.hooks.lineage import send_sql_hook_lineage\n"
        "from airflow.sdk.lineage import get_hook_lineage_collector\n"
        "from airflow.sdk.exceptions import AirflowTaskTerminated\n"
        "from airflow.sdk.execution_time import task_runner\n"
        "from airflow_policyzones.enforcement.errors import ObservedReadDenied, ObservationUnavailable\n"
        "c = get_hook_lineage_collector()\n"
        "def refuse(context, key, value, error=[ValueError]):\n"
        "    raise error[0]('refused')\n"
        "c.add_extra = refuse\n"
        "send_sql_hook_lineage(context=object(), sql='SELECT 1')  # an Exception is swallowed\n"
        "refuse.__defaults__ = ([ObservedReadDenied],)\n"
        "try:\n"
        "    send_sql_hook_lineage(context=object(), sql='SELECT 1')\n"
        "    escaped = False\n"
        "except ObservedReadDenied:\n"
        "    escaped = True\n"
        "source = inspect.getsource(task_runner._run_task_and_map_outcome if hasattr(task_runner,\n"
        "    '_run_task_and_map_outcome') else task_runner)\n"
        "print(json.dumps({'escaped': escaped,\n"
        "  'terminated_fails': 'except AirflowTaskTerminated' in source,\n"
        "  'denied': issubclass(ObservedReadDenied, AirflowTaskTerminated)\n"
        "            and not issubclass(ObservedReadDenied, Exception),\n"
        "  'unavailable': not issubclass(ObservationUnavailable, Exception)}))\n"
    )
    assert found == {"escaped": True, "terminated_fails": True, "denied": True, "unavailable": True}


def test_a_sql_hook_reports_each_statement_before_its_rows_are_fetched() -> None:
    with postgres_database("pz_lineage_pin") as url:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)"))
        engine.dispose()
        conn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        found = run(
            "import json\n"
            "from airflow.providers.postgres.hooks.postgres import PostgresHook\n"
            "from airflow.sdk.lineage import get_hook_lineage_collector\n"
            "events = []\n"
            "c = get_hook_lineage_collector()\n"
            "original = c.add_extra\n"
            "def add_extra(context, key, value):\n"
            "    events.append(('lineage', key, value.get('sql'), type(context).__name__))\n"
            "    return original(context, key, value)\n"
            "c.add_extra = add_extra\n"
            "def handler(cursor):\n"
            "    events.append(('rows',))\n"
            "    return cursor.fetchall()\n"
            "hook = PostgresHook('pz_pin')\n"
            "rows = hook.run('SELECT x FROM t WHERE x > %s', parameters=(0,), handler=handler)\n"
            "hook.get_records('SELECT count(*) FROM t')\n"
            "print(json.dumps({'events': events, 'rows': len(rows), 'conn_type': PostgresHook.conn_type}))\n",
            AIRFLOW_CONN_PZ_PIN=conn,
        )
    assert found["events"] == [
        ["lineage", "sql_job", "SELECT x FROM t WHERE x > %s", "PostgresHook"],
        ["rows"],
        ["lineage", "sql_job", "SELECT count(*) FROM t", "PostgresHook"],
    ]
    assert (found["rows"], found["conn_type"]) == (2, "postgres")


def test_object_storage_reports_open_but_not_read_text_until_the_observer_teaches_it(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a\n")
    found = run(
        "import json, sys\n"
        "from airflow.sdk import ObjectStoragePath\n"
        "from airflow.sdk.lineage import get_hook_lineage_collector\n"
        "reported = []\n"
        "c = get_hook_lineage_collector()\n"
        "original = c.add_input_asset\n"
        "def add_input_asset(context, *args, **kwargs):\n"
        "    reported.append(kwargs.get('uri'))\n"
        "    return original(context, *args, **kwargs)\n"
        "c.add_input_asset = add_input_asset\n"
        f"p = ObjectStoragePath('file://{path}')\n"
        "with p.open() as f:\n"
        "    f.read()\n"
        "opened = list(reported)\n"
        "p.read_text()\n"
        "plain = list(reported)\n"
        "from airflow_policyzones.enforcement.observation import _report_whole_file_io\n"
        "_report_whole_file_io()\n"
        "p.read_text()\n"
        "print(json.dumps({'opened': opened, 'plain': plain, 'taught': reported}))\n"
    )
    uri = f"file://{path}"
    assert found == {"opened": [uri], "plain": [uri], "taught": [uri, uri]}
