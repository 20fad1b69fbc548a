"""docker-compose.yml and docker/Dockerfile, checked without a Docker engine.

The compose deployment cannot run on the machines the suite runs on, so these tests hold it to
what can be checked: the shape of Airflow's official Airflow 3 compose file, the same components,
commands and ``AIRFLOW__*`` settings as the native deployment ``make demo`` runs
(``scripts/demo.py``, which *is* run end to end), an image built FROM apache/airflow at the
Airflow version the provider is tested with, and only configuration options Airflow 3.3.2 (and
this provider) actually know.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from scripts.localdemo.settings import (
    COMPONENTS,
    COMPOSE_ONLY_SERVICES,
    COMPOSE_ONLY_SETTINGS,
    DEMO_ONLY_SETTINGS,
    WITHHELD_FROM_TASKS,
    DemoPaths,
    airflow_settings,
)
from tests.support.doctor import findings, run_doctor

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / "docker" / "Dockerfile.dockerignore"

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
"""The long-running Airflow services of the official compose file, and their commands."""
ALL_SERVICES = {*AIRFLOW_SERVICES, "postgres", "redis", "airflow-init"}

PROVIDER_SECTIONS = {"celery": "airflow.providers.celery", "fab": "airflow.providers.fab"}
"""Config sections that belong to providers the image installs but the test venv may not have."""


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(raw: str) -> dict[str, Any]:
    data = yaml.safe_load(raw)  # resolves the anchors and `<<:` merge keys, as compose does
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


@pytest.fixture(scope="module")
def common(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["x-airflow-common"])


@pytest.fixture(scope="module")
def common_env(common: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in common["environment"].items()}


def demo_settings(tmp: Path) -> dict[str, str]:
    return airflow_settings(paths=DemoPaths(tmp / ".demo"), port=8080, jwt_secret="s")


def airflow_keys(env: dict[str, str]) -> set[str]:
    return {k for k in env if k.startswith("AIRFLOW__")}


def service_blocks(raw: str) -> dict[str, str]:
    """The raw text of each service (to see anchors, which parsing resolves away)."""
    body = raw.split("\nservices:\n", 1)[1].split("\nvolumes:\n", 1)[0]
    parts = re.split(r"^  ([a-z0-9-]+):\n", body, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def compose_unescape(text: str) -> str:
    """What the container's shell sees: compose turns ``$$`` into ``$`` (and interpolates ``${X}``)."""
    text = re.sub(r"(?<!\$)\$\{([A-Z_]+):-([^}]*)\}", r"\2", text)
    return text.replace("$$", "$")


def bool_value(value: str) -> bool:
    return value.strip().lower() in {"true", "1", "yes", "on", "t", "y"}


# ------------------------------------------------------------------------------ shape


def test_the_services_of_airflows_official_compose_file_are_there(services: dict[str, Any]) -> None:
    assert set(services) >= ALL_SERVICES, f"missing: {sorted(ALL_SERVICES - set(services))}"


def test_every_airflow_service_uses_the_common_anchor(raw: str, services: dict[str, Any]) -> None:
    blocks = service_blocks(raw)
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        assert "<<: *airflow-common\n" in blocks[name], f"{name} does not merge *airflow-common"
    assert "&airflow-common\n" in raw and "&airflow-common-env\n" in raw


def test_every_airflow_service_runs_the_built_image_with_the_policy(
    services: dict[str, Any], common: dict[str, Any], common_env: dict[str, str]
) -> None:
    assert common["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}
    assert (REPO_ROOT / common["build"]["dockerfile"]).is_file()
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        service = services[name]
        assert service["build"] == common["build"], name
        assert service["image"] == common["image"], name
        env = {k: str(v) for k, v in service["environment"].items()}
        for key in (
            "AIRFLOW__POLICYZONES__POLICY_FILE",
            "AIRFLOW__POLICYZONES__ENABLED",
            "AIRFLOW__API_AUTH__JWT_SECRET",
        ):
            expected = (
                "" if (name, key) == ("airflow-worker", "AIRFLOW__API_AUTH__JWT_SECRET") else common_env[key]
            )
            assert env.get(key) == expected, f"{name}: {key}"
        assert service["volumes"] == common["volumes"], name


def test_commands_match_the_native_deployment(services: dict[str, Any]) -> None:
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"] == command, name
    # The demo starts the same components with the same sub-commands (plus --host/--port).
    for component in COMPONENTS:
        assert services[component.compose_service]["command"] == " ".join(component.command)
    native = {c.compose_service for c in COMPONENTS}
    assert set(services) == native | set(COMPOSE_ONLY_SERVICES), (
        "every compose service has a native counterpart in scripts/localdemo/settings.py COMPONENTS, "
        "or a reason in COMPOSE_ONLY_SERVICES"
    )


def test_init_migrates_creates_the_user_and_validates_the_policy(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    env = {k: str(v) for k, v in init["environment"].items()}
    # The image's entrypoint runs `airflow db migrate` (as `make demo` does) and creates the user.
    assert env["_AIRFLOW_DB_MIGRATE"] == "true"
    assert env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert init["entrypoint"] == "/bin/bash"
    script = init["command"][-1]
    assert "/entrypoint airflow version" in script
    assert "airflow_policyzones validate" in script
    assert "airflow providers get airflow-provider-policyzones" in script
    # Only one entrypoint call may migrate: the others clear the variables.
    calls = [line for line in script.replace("\\\n", " ").splitlines() if "/entrypoint" in line]
    migrating = [c for c in calls if "_AIRFLOW_DB_MIGRATE= " not in c]
    assert migrating == ["/entrypoint airflow version"], calls


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_init_script_is_valid_bash(services: dict[str, Any]) -> None:
    script = compose_unescape(services["airflow-init"]["command"][-1])
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_healthchecks_and_start_order(services: dict[str, Any]) -> None:
    for name in ["postgres", "redis", *AIRFLOW_SERVICES]:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
    # Workers call the decision service before every task: they wait for a healthy api-server,
    # whose healthcheck includes the provider's plugin.
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    api_check = " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    assert "/policyzones/api/v1/health" in api_check
    scheduler_check = " ".join(services["airflow-scheduler"]["healthcheck"]["test"])
    assert ":8974/health" in scheduler_check


def test_worker_keeps_the_official_celery_settings(services: dict[str, Any]) -> None:
    worker_env = {k: str(v) for k, v in services["airflow-worker"]["environment"].items()}
    assert worker_env["DUMB_INIT_SETSID"] == "0"


IMAGE_AIRFLOW_HOME = "/opt/airflow"
"""The official image's AIRFLOW_HOME (its Dockerfile sets it; the mounts are below it)."""


def test_the_worker_withholds_what_the_demos_worker_withholds(
    services: dict[str, Any], common_env: dict[str, str]
) -> None:
    """Task code runs in airflow-worker: the same settings as the other containers, except the
    JWT secret and the metadata database, as in ``make demo``'s celery worker."""
    from airflow.configuration import conf

    worker = {k: str(v) for k, v in services["airflow-worker"]["environment"].items()}
    assert {k for k in common_env if worker.get(k) != common_env[k]} == set(WITHHELD_FROM_TASKS)
    assert worker["AIRFLOW__API_AUTH__JWT_SECRET"] == ""
    # Airflow's default: an empty SQLite file in the image's Airflow home, no credentials.
    default = conf.configuration_description["database"]["options"]["sql_alchemy_conn"]["default"]
    assert worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == default.format(AIRFLOW_HOME=IMAGE_AIRFLOW_HOME)
    assert not [k for k in worker if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]
    backend = urlsplit(common_env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert (backend.scheme, backend.hostname) == ("redis", "redis"), "no `db+` URL with credentials"
    assert common_env["AIRFLOW__CELERY__RESULT_BACKEND"] != common_env["AIRFLOW__CELERY__BROKER_URL"]


def container_environment(
    service: dict[str, Any], common: dict[str, Any], airflow_home: Path
) -> dict[str, str]:
    """A service's environment as its container sees it, with the mounted paths mapped back to the
    repository's files and the required secrets given test values (AIRFLOW_HOME: ``airflow_home``)."""
    mounts = {}
    for volume in common["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = REPO_ROOT / source
    env = {}
    for key, value in service["environment"].items():
        text = re.sub(r"\$\{([A-Z_]+):\?[^}]*\}", lambda m: f"test-{m.group(1).lower()}", str(value))
        text = compose_unescape(text)
        for target, source in mounts.items():
            if text == target or text.startswith(target + "/"):
                text = str(source) + text[len(target) :]
        env[key] = text
    env["AIRFLOW_HOME"] = str(airflow_home)
    return env


@pytest.mark.parametrize(
    ("service", "component", "expected"),
    [
        ("airflow-worker", "worker", []),
        ("airflow-apiserver", "api-server", []),
        # The control: the common environment, where tasks would run with it.
        ("airflow-scheduler", "worker", ["jwt_secret_visible", "metadata_db_visible"]),
    ],
)
def test_the_doctor_in_each_containers_environment(
    services: dict[str, Any],
    common: dict[str, Any],
    tmp_path: Path,
    service: str,
    component: str,
    expected: list[str],
) -> None:
    env = container_environment(services[service], common, tmp_path)
    result = run_doctor(env, component)
    assert findings(result) == expected, result.stdout + result.stderr
    assert result.returncode == (1 if expected else 0), result.stdout + result.stderr


# ---------------------------------------------------------------------------- settings


def test_config_keys_are_the_ones_the_demo_sets(tmp_path: Path, common_env: dict[str, str]) -> None:
    compose_keys = airflow_keys(common_env)
    demo_keys = airflow_keys(demo_settings(tmp_path))
    assert set(COMPOSE_ONLY_SETTINGS) <= compose_keys, "stale COMPOSE_ONLY_SETTINGS entry"
    assert set(DEMO_ONLY_SETTINGS) <= demo_keys, "stale DEMO_ONLY_SETTINGS entry"
    assert not set(COMPOSE_ONLY_SETTINGS) & demo_keys
    assert not set(DEMO_ONLY_SETTINGS) & compose_keys
    only_compose = compose_keys - demo_keys - set(COMPOSE_ONLY_SETTINGS)
    only_demo = demo_keys - compose_keys - set(DEMO_ONLY_SETTINGS)
    assert not only_compose and not only_demo, (
        f"set in docker-compose.yml only: {sorted(only_compose)}; in scripts/localdemo/settings.py only: "
        f"{sorted(only_demo)} (set them in both, or give the reason in COMPOSE_ONLY_SETTINGS / "
        "DEMO_ONLY_SETTINGS)"
    )


@pytest.mark.parametrize(
    "key",
    [
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
        "AIRFLOW__POLICYZONES__ENABLED",
    ],
)
def test_shared_switches_have_the_same_value(tmp_path: Path, common_env: dict[str, str], key: str) -> None:
    assert bool_value(common_env[key]) == bool_value(demo_settings(tmp_path)[key])


def test_paths_and_urls_point_at_what_compose_provides(
    services: dict[str, Any], common: dict[str, Any], common_env: dict[str, str]
) -> None:
    mounts = {}
    for volume in common["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
        if source.startswith("."):
            assert (REPO_ROOT / source).exists(), f"mounted {source} does not exist"
    assert mounts[common_env["AIRFLOW__CORE__DAGS_FOLDER"]] == "./dags_examples"
    assert mounts[common_env["AIRFLOW__POLICYZONES__POLICY_FILE"]] == "./dags_examples/policy.yaml"

    api = services["airflow-apiserver"]
    published = {p.split(":")[-1] for p in api["ports"]}
    url = urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (url.hostname, str(url.port)) in {("airflow-apiserver", p) for p in published}
    assert urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).path == "/execution/"

    db = urlsplit(common_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    pg = services["postgres"]["environment"]
    assert (db.hostname, db.username, db.password, db.path.lstrip("/")) == (
        "postgres",
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    assert urlsplit(common_env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_shared_secrets_must_be_provided(common_env: dict[str, str]) -> None:
    """No default secret: every container must get the same one, and a known one is forgeable."""
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", common_env[key]), key
    example = (REPO_ROOT / "docker" / "compose.env.example").read_text()
    for variable in re.findall(r"\$\{([A-Z_]+):\?", "".join(common_env.values())):
        assert f"\n{variable}=" in example, f"{variable} is not in docker/compose.env.example"


def _all_airflow_env_keys() -> list[str]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    keys = set()
    for service in data["services"].values():
        keys |= {k for k in (service.get("environment") or {}) if k.startswith("AIRFLOW__")}
    keys |= airflow_keys(airflow_settings(paths=DemoPaths(Path("/x/.demo")), port=8080, jwt_secret="s"))
    return sorted(keys)


@pytest.mark.parametrize("key", _all_airflow_env_keys())
def test_every_setting_is_an_option_airflow_knows(key: str) -> None:
    from airflow.configuration import conf

    _, section, option = key.split("__", 2)
    section, option = section.lower(), option.lower()
    module = PROVIDER_SECTIONS.get(section)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"[{section}] is defined by {module}, which the image installs but this venv lacks")
    for suffix in ("_cmd", "_secret"):  # AIRFLOW__X__Y_CMD / _SECRET read option Y indirectly
        if option.endswith(suffix) and option not in conf.configuration_description.get(section, {}).get(
            "options", {}
        ):
            option = option[: -len(suffix)]
    known = conf.configuration_description
    assert section in known, f"{key}: Airflow knows no [{section}] section"
    assert option in known[section]["options"], f"{key}: Airflow knows no option {option} in [{section}]"


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            result.append((instruction.upper(), rest.strip()))
    return result


def test_dockerfile_starts_from_the_official_image_at_the_tested_airflow_version() -> None:
    instructions = dockerfile_instructions()
    froms = [args for name, args in instructions if name == "FROM"]
    assert len(froms) == 1
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)(?:-python(\d+\.\d+))?", froms[0])
    assert match, froms[0]
    assert match.group(1) == "3.3.2"
    args = dict(a.split("=", 1) for name, a in instructions if name == "ARG" and "=" in a)
    assert args["AIRFLOW_VERSION"] == match.group(1), "ARG AIRFLOW_VERSION must match the FROM tag"
    assert args["PYTHON_VERSION"] == match.group(2), "ARG PYTHON_VERSION must match the FROM tag"
    constraints = REPO_ROOT / "constraints" / f"constraints-{args['PYTHON_VERSION']}.txt"
    assert f"apache-airflow=={args['AIRFLOW_VERSION']}" in constraints.read_text().splitlines()
    assert version("apache-airflow") == args["AIRFLOW_VERSION"], "the tests run another Airflow"


def test_dockerfile_installs_the_provider_and_celery_with_the_constraints() -> None:
    instructions = dockerfile_instructions()
    copies = {}
    for name, args in instructions:
        if name == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            for source in parts[:-1]:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
                copies[source] = parts[-1].rstrip("/")
    assert {"pyproject.toml", "README.md", "airflow_policyzones", "constraints"} <= set(copies)
    runs = [args for name, args in instructions if name == "RUN" and "pip install" in args]
    assert len(runs) == 1
    steps = [step.strip() for step in runs[0].split("&&")]
    # 1. The constraints: the repository's tested pins, merged with what the image already has.
    merge = steps[0]
    assert merge.startswith("pip freeze | python " + copies["docker/image_constraints.py"])
    merge_words = shlex.split(merge.split("|", 1)[1])
    assert merge_words[2] == f"{copies['constraints']}/constraints-${{PYTHON_VERSION}}.txt"
    generated = merge_words[merge_words.index(">") + 1]
    # 2. One pip install: Airflow pinned to the image's version, the copied package, Celery.
    install = shlex.split(steps[1])
    assert install[:2] == ["pip", "install"]
    assert "apache-airflow==${AIRFLOW_VERSION}" in install, "pin Airflow to the image's version"
    assert copies["pyproject.toml"] in install, "install the copied package"
    assert "apache-airflow-providers-celery" in install
    assert install[install.index("--constraint") + 1] == generated
    assert "-e" not in install and "--editable" not in install
    # 3. The result is consistent, and the provider imports.
    assert steps[2] == "pip check"
    assert any("import airflow_policyzones" in step for step in steps[3:])


def test_image_constraints_keep_the_images_versions() -> None:
    spec = importlib.util.spec_from_file_location(
        "image_constraints", REPO_ROOT / "docker" / "image_constraints.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tested = module.pins(["python-dateutil==4.0.0", "yaml-rs==0.1.6", "SQLAlchemy==2.1.9", "# comment"])
    installed = module.pins(
        [
            "python_dateutil==2.9.0.post0",
            "Flask-AppBuilder==5.2.2",
            "sqlalchemy==2.1.9",
            "airflow-provider-policyzones==0.0.9",
            "-e git+https://example.invalid/x#egg=x",
            "pkg @ file:///tmp/pkg",
        ]
    )
    assert installed["python-dateutil"] == "2.9.0.post0" and "pkg" not in installed
    merged = module.merge(installed, tested, exclude=["airflow_provider_policyzones"])
    assert "python-dateutil==2.9.0.post0" in merged, "the image's version wins"
    assert "yaml-rs==0.1.6" in merged, "tested pins fill in what the image lacks"
    assert "flask-appbuilder==5.2.2" in merged
    assert not any(line.startswith("airflow-provider-policyzones") for line in merged)
    assert merged == sorted(merged)


def test_build_context_keeps_only_the_package() -> None:
    rules = [r.strip() for r in DOCKERIGNORE.read_text().splitlines() if r.strip() and not r.startswith("#")]
    assert rules[0] == "*"
    for source in (
        "pyproject.toml",
        "README.md",
        "airflow_policyzones",
        "constraints",
        "docker/image_constraints.py",
    ):
        assert f"!{source}" in rules


@pytest.mark.skipif(
    not (shutil.which("docker-compose") or os.environ.get("POLICYZONES_DOCKER_COMPOSE")),
    reason="needs docker-compose (its `config` validates the file without an engine)",
)
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    empty_env_file = tmp_path / "empty.env"  # ignore a developer's own .env
    empty_env_file.write_text("")
    command = [
        *shlex.split(os.environ.get("POLICYZONES_DOCKER_COMPOSE", "docker-compose")),
        "--env-file",
        str(empty_env_file),
        "-f",
        str(COMPOSE_FILE),
        "config",
        "-q",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    secrets = {"AIRFLOW_JWT_SECRET": "x" * 32, "AIRFLOW_API_SECRET_KEY": "y" * 32}
    proc = subprocess.run(command, env={**env, **secrets}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # Without the shared secret, compose refuses to start, naming the variable.
    proc = subprocess.run(command, env={**env, "AIRFLOW_API_SECRET_KEY": "y"}, capture_output=True, text=True)
    assert proc.returncode != 0 and "AIRFLOW_JWT_SECRET" in proc.stderr
