"""What every part of ``make demo`` shares: where things are, its error type, how it prints."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags_examples"
POLICY_FILE = DAGS_DIR / "policy.yaml"
DEMO_DIR = REPO_ROOT / ".demo"
SUMMARY_SCRIPT = REPO_ROOT / "scripts" / "demo_summary.py"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEMO_USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
PLUGIN_HEALTH_PATH = "/policyzones/api/v1/health"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class DemoError(Exception):
    """An expected failure: printed as a message (no traceback), then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------------------- output


def say(message: str = "") -> None:
    print(message, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title}")


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (shorter output)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
