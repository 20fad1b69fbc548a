"""``policyzones doctor`` run as an operator runs it, in exactly a deployment component's environment.

The doctor reads Airflow's configuration, which Airflow builds once per process from the
environment, so each environment gets its own process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

POLICYZONES = str(Path(sys.executable).parent / "policyzones")


def run_doctor(environ: Mapping[str, str], component: str) -> subprocess.CompletedProcess[str]:
    """``policyzones doctor --component component`` with ``environ`` as its whole environment
    (plus this process's PATH and HOME, when ``environ`` has none)."""
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    env.update(environ)
    return subprocess.run(
        [POLICYZONES, "doctor", "--component", component],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def findings(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The codes of the weaknesses the doctor printed (``code: message`` lines)."""
    return [m.group(1) for line in result.stdout.splitlines() if (m := re.match(r"([a-z_]+): ", line))]
