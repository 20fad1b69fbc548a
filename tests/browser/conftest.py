"""Browser tests: Playwright for Python driving Debian's chromium against a real deployment.

The deployment runs the example DAGs first (real scheduler, real workers, real enforcement), so
the rows the pages show are rows the decision service recorded. Logging in is real too: the
SimpleAuthManager with a viewer account, not the all-admins shortcut of the other tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, REPO_ROOT
from tests.e2e.deployment import Deployment, copy_dags, postgres_database

CHROMIUM = Path(os.environ.get("POLICYZONES_CHROMIUM", "/usr/bin/chromium"))
# No sandbox as root, and no background traffic on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
USER, PASSWORD = "reviewer", "reviewer-password"
DRIVER_USER, DRIVER_PASSWORD = "e2e-driver", "e2e-driver-password"
"""The admin the deployment driver triggers the example runs as (the reviewer only views)."""
EXAMPLE_DAGS = (
    "ads_optimization_daily",
    "purchases_reclassify",
    "recs_content_ranking",
    "ai_training_recsys",
    "marketing_attribution",
)
ASSET_DAGS = ("ads_spend_segments", "recs_spend_ranking", "ai_training_features")
"""Scheduled on Assets the examples write: they run once their upstream succeeded."""


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    """The example DAGs, run once in a real deployment on a fresh PostgreSQL database."""
    with (
        tempfile.TemporaryDirectory(prefix="policyzones-browser-") as tmp,
        postgres_database("pz_browser") as url,
    ):
        root = Path(tmp)
        dags = copy_dags(EXAMPLES, root / "dags")
        (dags / ".airflowignore").write_text((EXAMPLES / ".airflowignore").read_text())
        passwords = root / "passwords.json"
        passwords.write_text(json.dumps({USER: PASSWORD, DRIVER_USER: DRIVER_PASSWORD}))
        instance = Deployment(
            home=root / "home",
            dags_folder=dags,
            db_url=url,
            policy_file=dags / "policy.yaml",
            extra_env={
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer,{DRIVER_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            },
            api_login=(DRIVER_USER, DRIVER_PASSWORD),
        )
        try:
            instance.start()
            instance.wait_for_dags({*EXAMPLE_DAGS, *ASSET_DAGS})
            runs = {dag_id: instance.trigger(dag_id) for dag_id in EXAMPLE_DAGS}
            instance.wait_for_runs(runs)
            runs |= {
                dag_id: run_id
                for dag_id, (run_id, _) in instance.wait_for_asset_runs(set(ASSET_DAGS)).items()
            }
            instance.runs = runs  # type: ignore[attr-defined]
            yield instance
        finally:
            instance.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (installs Debian's chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class ConsoleErrors(list[str]):
    """Console errors and uncaught exceptions of every frame of a page."""

    def watch(self, page: Any) -> None:
        page.on("console", lambda message: message.type == "error" and self.append(message.text))
        page.on("pageerror", lambda error: self.append(f"uncaught: {error}"))


def log_in(page: Any) -> None:
    """Through Airflow's own login page (the SimpleAuthManager's form)."""
    page.goto("/")
    page.wait_for_url(re.compile(r".*/auth/login.*"))
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))
    page.get_by_role("link", name="Policy Zones").wait_for()


@pytest.fixture
def page(browser: Any, deployment: Deployment, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A logged-in browser tab; the test fails on any console error of the page or its frames.

    Watching starts after the login: before it, Airflow's own UI asks its API once without a
    session (a 401 it answers by showing the login page).
    """
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=deployment.base_url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    log_in(page)
    errors = ConsoleErrors()
    errors.watch(page)
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"))
        context.close()
    assert errors == [], f"browser console errors: {errors}"


def save_screenshot(target: Any, name: str) -> Path:
    """Save under test-artifacts/; with POLICYZONES_UPDATE_SCREENSHOTS=1 also the README's copy."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    target.screenshot(path=str(path))
    if os.environ.get("POLICYZONES_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)
    return path
