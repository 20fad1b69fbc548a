"""Evidence that a task body ran, for the demo and the end-to-end tests.

When POLICYZONES_EVIDENCE_DIR is set, ``leave_evidence("dag.task")`` creates a file named after
the task there. A task blocked by its zone never gets that far, so the file's absence proves the
body did not run.
"""

from __future__ import annotations

import os
from pathlib import Path


def leave_evidence(name: str) -> None:
    folder = os.environ.get("POLICYZONES_EVIDENCE_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).touch()
