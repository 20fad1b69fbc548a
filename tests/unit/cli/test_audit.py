"""`policyzones audit` arguments (the reconciliation itself runs against real deployments in e2e)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_policyzones.audit import parse_since as _parse_since
from airflow_policyzones.cli.main import EXIT_USAGE, main


@pytest.mark.parametrize("text", ["yesterday", "7 days", "d7", "", "2026-13-01", "99999999999d", "\u00b2d"])
def test_an_unreadable_since_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--since", text]) == EXIT_USAGE
    assert "--since" in capsys.readouterr().err


def test_since_accepts_durations_and_iso_dates() -> None:
    now = datetime.now(timezone.utc)
    week = _parse_since("7d")
    assert week is not None and abs((now - week) - timedelta(days=7)) < timedelta(seconds=5)
    hours = _parse_since("12h")
    assert hours is not None and abs((now - hours) - timedelta(hours=12)) < timedelta(seconds=5)
    assert _parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert _parse_since("2026-11-01T10:00:00+01:00") == datetime(2026, 11, 1, 9, tzinfo=timezone.utc)
