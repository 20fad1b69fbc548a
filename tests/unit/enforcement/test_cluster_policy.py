"""The cluster policy through Airflow's real policy plugin manager and ``DagBag``.

``DagBag`` calls ``airflow.settings.dag_policy`` / ``task_policy``, which dispatch to every
``airflow.policy`` entry point, ours included: the same path as the dag-processor and the
worker's re-parse.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.exceptions import AirflowClusterPolicyViolation

from airflow_policyzones.db.policy_status import EDGE_KEY, PolicyState, recorded_on_dag
from airflow_policyzones.enforcement import cluster_policy
from airflow_policyzones.enforcement.hook import enforcement_hook_info, is_enforcement_hook, make_hook
from tests.unit.enforcement.conftest import FIXTURES, POLICY, POLICY_REQUIRE_ZONE, ConfigureSettings

pytestmark = [
    pytest.mark.integration,
    # dags_ok uses TimeDeltaSensorAsync on purpose (a deferrable sensor many DAGs still use).
    pytest.mark.filterwarnings("ignore:.*TimeDeltaSensorAsync.*:UserWarning"),
]


def parse(folder: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=folder, bundle_path=folder)


def hook_of(task: Any) -> Any:
    return task.partial_kwargs.get("pre_execute") if task.is_mapped else task._pre_execute_hook


def errors_by_file(bag: Any) -> dict[str, str]:
    return {Path(path).name: message for path, message in bag.import_errors.items()}


# --- parse-time validation ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_bag() -> Any:
    saved = dict(os.environ)
    os.environ["AIRFLOW__POLICYZONES__POLICY_FILE"] = str(POLICY)
    os.environ["AIRFLOW__POLICYZONES__ENABLED"] = "True"
    from airflow_policyzones.enforcement.settings import reload_settings

    reload_settings()
    try:
        yield parse(FIXTURES / "dags_bad")
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reload_settings()


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("unknown_zone.py", ["zone tag names zone 'nowhere', which the policy does not define"]),
        ("task_unknown_zone.py", ["zone 'atlantis' is not defined in the policy", "[unknown_zone]", "lost"]),
        ("non_member.py", ["DAG 'pz_outsider' is not a member of zone 'recs'", "[zone_membership]"]),
        ("two_zone_tags.py", ["several zone tags"]),
        ("swallowing_property.py", ["SwallowsHook._pre_execute_hook", "could skip the zone check"]),
        ("converter.py", ["ConvertsHook._convert__pre_execute_hook"]),
        ("setattr_drops_hook.py", ["DropsHook.__setattr__", "could skip the zone check"]),
        ("expand_pre_execute.py", ["expands pre_execute"]),
        ("expand_kwargs_lax.py", ["expand_kwargs(..., strict=False)"]),
        ("start_from_trigger_inputs.py", ["start_from_trigger=True", "before the zone check"]),
    ],
)
def test_bad_dags_are_import_errors(bad_bag: Any, file: str, expected: list[str]) -> None:
    errors = errors_by_file(bad_bag)
    assert file in errors, f"{file} imported fine; import errors: {sorted(errors)}"
    assert "AirflowClusterPolicyViolation" in errors[file] or "policyzones:" in errors[file]
    for text in expected:
        assert text in errors[file]


def test_every_bad_file_is_rejected_and_nothing_else(bad_bag: Any) -> None:
    files = {path.name for path in (FIXTURES / "dags_bad").glob("*.py")}
    assert set(errors_by_file(bad_bag)) == files
    assert bad_bag.dags == {}


def test_membership_problem_names_the_fix(bad_bag: Any) -> None:
    message = errors_by_file(bad_bag)["non_member.py"]
    assert "fix: add the DAG to zones.recs.members" in message
    assert "sha256:" in message  # the policy version that decided


def test_require_zone_rejects_unzoned_tasks(configure: ConfigureSettings) -> None:
    configure(policy_file=POLICY)
    assert parse(FIXTURES / "dags_required").import_errors == {}

    configure(policy_file=POLICY_REQUIRE_ZONE)
    errors = errors_by_file(parse(FIXTURES / "dags_required"))
    assert "unzoned.py" in errors
    assert "has no zone and the policy requires one" in errors["unzoned.py"]
    assert "[unzoned_task]" in errors["unzoned.py"]


@pytest.mark.parametrize("policy_file", ["", "/nonexistent/policy.yaml", "broken", "bad_yaml"])
def test_a_policy_that_does_not_load_removes_no_dag_and_keeps_every_hook(
    configure: ConfigureSettings, tmp_path: Path, policy_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken policy is the policy's problem, not every DAG's: no import error, hooks attached,
    and the problem recorded in each DAG (for the UI) and logged once per process and problem."""
    broken = tmp_path / "policy.yaml"
    if policy_file == "broken":
        broken.write_text("version: 1\nzones: {ads: {purpose: ads, members: {dag_ids: [x]}, bogus: 1}}\n")
        policy_file = str(broken)
    elif policy_file == "bad_yaml":
        broken.write_text("version: 1\nzones:\n  ads: [\n")
        policy_file = str(broken)
    configure(policy_file=policy_file)
    cluster_policy._unloaded_warned.clear()
    with caplog.at_level("WARNING", logger="airflow_policyzones.enforcement.cluster_policy"):
        bag = parse(FIXTURES / "dags_ok")
        parse(FIXTURES / "dags_ok")
    assert bag.import_errors == {}
    dag = bag.dags["pz_kinds"]
    for task in dag.tasks:
        assert is_enforcement_hook(hook_of(task)), task.task_id
    recorded = recorded_on_dag(dag)
    assert recorded is not None and recorded.loaded is False
    assert recorded.error is not None and "policy is invalid" in recorded.error
    if policy_file == str(broken):
        assert recorded.version == "sha256:" + hashlib.sha256(broken.read_bytes()).hexdigest()
        assert f"{broken}:" in recorded.error and "fix:" in recorded.error
    else:
        assert recorded.version is None
    warned = [r.getMessage() for r in caplog.records if "does not load" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "fails closed (retryable)" in warned[0]


def test_malformed_annotations_are_import_errors_even_without_a_policy(configure: ConfigureSettings) -> None:
    """Two zone tags are wrong under any policy: that stays the DAG's import error; membership and
    unknown zones need the policy and wait for it."""
    configure(policy_file="/nonexistent/policy.yaml")
    errors = errors_by_file(parse(FIXTURES / "dags_bad"))
    assert "several zone tags" in errors["two_zone_tags.py"]
    assert "violates its zone annotations" in errors["two_zone_tags.py"]
    assert {"non_member.py", "unknown_zone.py", "task_unknown_zone.py"}.isdisjoint(errors)


def test_zone_problems_are_still_import_errors_when_the_policy_loads(bad_bag: Any) -> None:
    """Only a policy that does not load is spared: annotation problems stay DAG import errors."""
    assert {"non_member.py", "unknown_zone.py", "task_unknown_zone.py"} <= set(errors_by_file(bad_bag))


def test_the_validated_version_is_recorded_in_the_serialized_dag(kinds: Any) -> None:
    """Pinned on Airflow's own serialization: the record survives to_dict/from_dict and the DB JSON."""
    from airflow.serialization.serialized_objects import DagSerialization

    recorded = recorded_on_dag(kinds)
    assert recorded == PolicyState(
        version="sha256:" + hashlib.sha256(POLICY.read_bytes()).hexdigest(), loaded=True
    )
    data = DagSerialization.to_dict(kinds)
    assert json.loads(data["dag"]["edge_info"][EDGE_KEY][EDGE_KEY]["label"])["version"] == recorded.version
    DagSerialization.validate_schema(data)
    assert recorded_on_dag(DagSerialization.from_dict(data)) == recorded
    # No task id can take the key: edge labels between real tasks are unaffected.
    assert ":" in EDGE_KEY and all(":" not in task.task_id for task in kinds.tasks)


def test_disabled_does_nothing(configure: ConfigureSettings) -> None:
    configure(policy_file="", enabled="False")
    bag = parse(FIXTURES / "dags_bad")
    # Only the operator classes that break on their own remain; no zone validation, no hooks.
    assert "non_member.py" not in errors_by_file(bag)
    assert "unknown_zone.py" not in errors_by_file(bag)
    for dag in bag.dags.values():
        for task in dag.tasks:
            assert not is_enforcement_hook(hook_of(task))


def test_dry_run_zone_membership_is_a_parse_error_too(configure: ConfigureSettings, tmp_path: Path) -> None:
    """A DAG chooses its zone, so a zone rolled out in dry-run mode still admits only its members:
    an outsider claiming it is rejected like anywhere else."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "outsider.py").write_text(
        "import pendulum\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        "from airflow.sdk import DAG\n"
        "from airflow_policyzones import zone_tag\n"
        "with DAG('outsider', schedule=None, start_date=pendulum.datetime(2026, 1, 1), "
        "tags=[zone_tag('marketing')]):\n"
        "    EmptyOperator(task_id='t')\n"
    )
    configure(policy_file=POLICY)
    bag = parse(folder)
    [error] = bag.import_errors.values()
    assert "not a member of zone 'marketing'" in error and "[zone_membership]" in error


def test_parse_time_validation_can_be_suspended_but_hooks_still_attach(configure: ConfigureSettings) -> None:
    configure(policy_file=POLICY)
    with cluster_policy.parse_time_validation_suspended():
        bag = parse(FIXTURES / "dags_bad")
    errors = errors_by_file(bag)
    assert {"non_member.py", "unknown_zone.py", "two_zone_tags.py"}.isdisjoint(errors)
    # Attaching the check is never suspended: unsafe operator classes are still refused.
    assert {"swallowing_property.py", "expand_pre_execute.py"} <= set(errors)
    assert is_enforcement_hook(bag.dags["pz_outsider"].get_task("t")._pre_execute_hook)


def test_worker_reparse_needs_no_policy(
    configure: ConfigureSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the worker (parsing context has a task id) the hook attaches without loading a policy."""
    configure(policy_file="/nonexistent/policy.yaml")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "pz_kinds")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "classic")
    bag = parse(FIXTURES / "dags_ok")
    assert bag.import_errors == {}
    assert is_enforcement_hook(bag.dags["pz_kinds"].get_task("classic")._pre_execute_hook)


# --- the hook on every kind of task ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kinds() -> Any:
    saved = dict(os.environ)
    os.environ["AIRFLOW__POLICYZONES__POLICY_FILE"] = str(POLICY)
    os.environ["AIRFLOW__POLICYZONES__ENABLED"] = "True"
    from airflow_policyzones.enforcement.settings import reload_settings

    reload_settings()
    try:
        bag = parse(FIXTURES / "dags_ok")
        assert bag.import_errors == {}
        yield bag.dags["pz_kinds"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reload_settings()


EXPECTED_KINDS = {
    "classic": "PythonOperator",
    "empty": "EmptyOperator",
    "decorated": "_PythonDecoratedOperator",
    "mapped_decorated": "mapped",
    "mapped_in_own_zone": "mapped",
    "mapped_classic": "mapped",
    "mapped_classic_with_author_hook": "mapped",
    "overrides_pre_execute": "OverridesPreExecute",
    "drops_hook_assignments": "DropsHookAssignments",
    "author_hook": "PythonOperator",
    "decorated_with_author_hook": "_PythonDecoratedOperator",
    "deferrable_sensor": "TimeDeltaSensorAsync",
    "deferrable_flag": "TimeDeltaSensor",
    "starts_in_triggerer_without_inputs": "DateTimeSensorAsync",
    "in_virtualenv": "_PythonVirtualenvDecoratedOperator",
    "in_external_python": "_PythonExternalDecoratedOperator",
    "ads_group.in_group": "PythonOperator",
}


def test_every_kind_of_task_gets_the_hook(kinds: Any) -> None:
    assert {task.task_id for task in kinds.tasks} == set(EXPECTED_KINDS)
    for task in kinds.tasks:
        kind = "mapped" if task.is_mapped else type(task).__name__
        assert kind == EXPECTED_KINDS[task.task_id], task.task_id
        assert is_enforcement_hook(hook_of(task)), f"{task.task_id} ({kind}) has no zone check"


@pytest.mark.parametrize(
    "task_id", ["author_hook", "decorated_with_author_hook", "mapped_classic_with_author_hook"]
)
def test_the_authors_hook_is_chained_not_dropped(kinds: Any, task_id: str) -> None:
    chained, _ = enforcement_hook_info(hook_of(kinds.get_task(task_id)))
    assert chained is not None and chained.__name__ == "author_hook"


def test_hooks_without_an_author_hook_chain_nothing(kinds: Any) -> None:
    assert enforcement_hook_info(hook_of(kinds.get_task("classic"))) == (None, None)


def test_a_mapped_task_carries_its_own_zone(kinds: Any) -> None:
    """The operator built per map index loses set_zone(); the hook keeps it."""
    assert enforcement_hook_info(hook_of(kinds.get_task("mapped_in_own_zone")))[1] == "ads"
    assert enforcement_hook_info(hook_of(kinds.get_task("mapped_decorated")))[1] is None


def test_task_policy_is_idempotent(kinds: Any) -> None:
    from airflow import settings

    for task in kinds.tasks:
        before = hook_of(task)
        settings.task_policy(task)
        settings.task_policy(task)
        assert hook_of(task) is before
    chained, _ = enforcement_hook_info(hook_of(kinds.get_task("author_hook")))
    assert chained is not None and not is_enforcement_hook(chained)


def test_the_hooked_dag_serializes_as_the_dag_processor_stores_it(kinds: Any) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    first = json.dumps(DagSerialization.to_dict(kinds), sort_keys=True, default=str)
    second = json.dumps(DagSerialization.to_dict(kinds), sort_keys=True, default=str)
    assert first == second  # deterministic: no memory addresses, no new DAG version per parse
    assert " at 0x" not in first


# --- attach_enforcement directly ----------------------------------------------------------------


def test_attach_refuses_objects_that_are_not_tasks() -> None:
    with pytest.raises(AirflowClusterPolicyViolation, match="neither a BaseOperator nor a mapped operator"):
        cluster_policy.attach_enforcement(object())


def test_attach_rewraps_a_mapped_hook_when_the_zone_changed() -> None:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    from airflow_policyzones import set_zone

    with DAG("pz_recs_rewrap", schedule=None):
        mapped = PythonOperator.partial(task_id="t", python_callable=print).expand(op_args=[[1]])
    cluster_policy.attach_enforcement(mapped)
    first = mapped.partial_kwargs["pre_execute"]
    set_zone(mapped, zone="ads")
    cluster_policy.attach_enforcement(mapped)
    second = mapped.partial_kwargs["pre_execute"]
    assert second is not first and enforcement_hook_info(second) == (None, "ads")


def test_a_hook_of_ours_passed_as_pre_execute_is_not_wrapped_twice() -> None:
    from airflow.providers.standard.operators.python import PythonOperator

    def author(context: Any) -> None:
        pass

    ours = make_hook(chained=author)
    task = PythonOperator(task_id="t", python_callable=print, pre_execute=ours)
    cluster_policy.attach_enforcement(task)
    assert task._pre_execute_hook is ours
    assert enforcement_hook_info(make_hook(chained=ours))[0] is author


def test_a_look_alike_hook_is_wrapped() -> None:
    """Copying attributes of our hook onto a no-op does not make it ours."""
    from airflow.providers.standard.operators.python import PythonOperator

    ours = make_hook()

    def fake(context: Any) -> None:
        pass

    fake.chained = None  # type: ignore[attr-defined]
    fake.task_zone = None  # type: ignore[attr-defined]
    fake.__qualname__ = type(ours).__qualname__
    assert not is_enforcement_hook(fake)
    task = PythonOperator(task_id="t", python_callable=print, pre_execute=fake)
    cluster_policy.attach_enforcement(task)
    assert task._pre_execute_hook is not fake
    assert enforcement_hook_info(task._pre_execute_hook)[0] is fake


# --- a DAG file cannot switch enforcement off -----------------------------------------------------


def test_a_dag_file_cannot_switch_enforcement_off(tmp_path: Path) -> None:
    """Settings are read when Airflow starts, before DAG files run (a fresh process, as in production)."""
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from airflow_policyzones.enforcement.hook import is_enforcement_hook\n"
        "from airflow_policyzones.enforcement.settings import current_settings\n"
        "folder = sys.argv[1]\n"
        "bag = DagBag(dag_folder=folder, bundle_path=folder)\n"
        "task = bag.dags['pz_recs_tamper'].get_task('t')\n"
        "s = current_settings()\n"
        "hooked = is_enforcement_hook(task._pre_execute_hook)\n"
        "print(json.dumps({'errors': list(bag.import_errors), 'hooked': hooked,"
        " 'enabled': s.enabled, 'policy_file': s.policy_file}))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW__POLICYZONES__POLICY_FILE": str(POLICY),
        "AIRFLOW__POLICYZONES__ENABLED": "True",
    }
    result = subprocess.run(
        [sys.executable, "-c", code, str(FIXTURES / "dags_tamper")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"errors": [], "hooked": True, "enabled": True, "policy_file": str(POLICY)}


def test_the_dag_processor_checks_every_task_but_stores_no_hook() -> None:
    """Tasks never run in the dag-processor: problems are import errors, serialized DAGs stay clean."""
    code = (
        "import json, sys\n"
        "ok_folder, bad_folder = sys.argv[1], sys.argv[2]\n"
        "sys.argv = ['airflow', 'dag-processor']\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from airflow.serialization.serialized_objects import DagSerialization\n"
        "ok = DagBag(dag_folder=ok_folder, bundle_path=ok_folder)\n"
        "bad = DagBag(dag_folder=bad_folder, bundle_path=bad_folder)\n"
        "dag = ok.dags['pz_kinds']\n"
        "serialized = json.dumps(DagSerialization.to_dict(dag), default=str)\n"
        "print(json.dumps({\n"
        "    'ok_errors': sorted(ok.import_errors),\n"
        "    'bad_errors': sorted(p.rsplit('/', 1)[-1] for p in bad.import_errors),\n"
        "    'hooks': sorted(t.task_id for t in dag.tasks if not t.is_mapped and t._pre_execute_hook),\n"
        "    'mapped_hooks': sorted(t.task_id for t in dag.tasks if t.is_mapped"
        " and 'pre_execute' in t.partial_kwargs),\n"
        "    'mentions_the_hook': 'EnforcementHook' in serialized or 'enforce(context' in serialized,\n"
        "}))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW__POLICYZONES__POLICY_FILE": str(POLICY),
        "AIRFLOW__POLICYZONES__ENABLED": "True",
    }
    result = subprocess.run(
        [sys.executable, "-c", code, str(FIXTURES / "dags_ok"), str(FIXTURES / "dags_bad")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok_errors"] == []
    assert report["bad_errors"] == sorted(path.name for path in (FIXTURES / "dags_bad").glob("*.py"))
    # Only the authors' own hooks are left, exactly as they wrote them.
    assert report["hooks"] == ["author_hook", "decorated_with_author_hook"]
    assert report["mapped_hooks"] == ["mapped_classic_with_author_hook"]
    assert report["mentions_the_hook"] is False
