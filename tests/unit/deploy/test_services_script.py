"""scripts/services.sh: what `.ci/run` and `make demo` start PostgreSQL and Redis with."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.localdemo.services import SERVICES_SCRIPT

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_the_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(SERVICES_SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_ci_starts_the_services_with_it_before_the_tests() -> None:
    commands = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands.index("bash scripts/services.sh") < commands.index("make test")
    assert SERVICES_SCRIPT == REPO_ROOT / "scripts" / "services.sh"


def test_an_unknown_service_is_refused_by_name() -> None:
    proc = subprocess.run(["bash", str(SERVICES_SCRIPT), "mysql"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "unknown service 'mysql' (postgres, redis)" in proc.stderr


def test_a_missing_command_says_what_to_install(tmp_path: Path) -> None:
    """No PostgreSQL client on PATH: the error names the command and the package."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "seq", "sleep", "ls", "sort", "tail", "mkdir"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    proc = subprocess.run(
        [str(bin_dir / "bash"), str(SERVICES_SCRIPT), "postgres"],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "no `pg_isready` command: install postgresql-client" in proc.stderr
