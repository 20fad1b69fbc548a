"""The violations and decisions exports name what they cover: the policy versions of their rows and
the chain head over their decisions, in response headers (CSV and JSON) and, for JSON, in the
object around the rows. The head is the one ``policyzones verify-records`` computes for the same
decisions (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_policyzones.api.exports import (
    CHAIN_DECISIONS_HEADER,
    CHAIN_HEAD_HEADER,
    CHAIN_LAST_ID_HEADER,
    POLICY_VERSIONS_HEADER,
    UNCHAINED_HEADER,
)
from airflow_policyzones.cli.main import EXIT_OK, main
from airflow_policyzones.db.chain import chain_head
from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import create_run
from tests.unit.db.test_service import CLICKS, PURCHASES, decide, request_for

pytestmark = pytest.mark.integration

API = "/api/v1"


@dataclass(frozen=True)
class Recorded:
    """Three tries a minute apart: an allow, a deny (one violation), a deny with an exempted
    finding too (two violations). Decision ids in order of recording."""

    start: datetime
    allowed: int
    denied: int
    mixed: int

    @property
    def until(self) -> datetime:
        return self.start + timedelta(minutes=10)


@pytest.fixture(scope="module")
def recorded(auth: dict[str, str], engine: PolicyEngine) -> Recorded:
    start = datetime(2033, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=10 * random.randrange(10**6))

    def record(minute: int, *, dag_id: str, zone: str, inputs: list[str]) -> int:
        request = request_for(dag_id, create_run(dag_id), zone=zone, inputs=inputs)
        return decide(engine, request, now=start + timedelta(minutes=minute)).decision_id

    return Recorded(
        start=start,
        allowed=record(0, dag_id="ads_dag", zone="ads", inputs=[PURCHASES]),
        denied=record(1, dag_id="recs_dag", zone="recs", inputs=[PURCHASES]),
        mixed=record(2, dag_id="recs_dag", zone="recs", inputs=[PURCHASES, CLICKS]),
    )


def export(client: TestClient, token: str, kind: str, since: datetime, until: datetime, **params: Any) -> Any:
    response = client.get(
        f"{API}/export/{kind}",
        params={"since": since.isoformat(), "until": until.isoformat(), **params},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response


def verified_head(capsys: pytest.CaptureFixture[str], since: datetime, until: datetime) -> dict[str, Any]:
    """``policyzones verify-records --since --until --format json``, as an operator runs it."""
    capsys.readouterr()
    code = main(
        ["verify-records", "--since", since.isoformat(), "--until", until.isoformat(), "--format", "json"]
    )
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK, report["problems"]
    return report


def test_decisions_export_names_the_head_verify_records_computes(
    client: TestClient,
    auth: dict[str, str],
    engine: PolicyEngine,
    recorded: Recorded,
    capsys: pytest.CaptureFixture[str],
) -> None:
    verified = verified_head(capsys, recorded.start, recorded.until)
    assert verified["decisions"] == 3

    body = export(client, auth["viewer"], "decisions", recorded.start, recorded.until, format="json").json()
    assert [row["id"] for row in body["rows"]] == [recorded.mixed, recorded.denied, recorded.allowed]
    assert body["policy_versions"] == [engine.version]
    assert body["chain"] == {
        "head": verified["head"],
        "decisions": 3,
        "unchained_decisions": 0,
        "last_id": recorded.mixed,
    }

    response = export(client, auth["viewer"], "decisions", recorded.start, recorded.until, format="csv")
    lines = list(csv.reader(io.StringIO(response.text)))
    assert [int(line[0]) for line in lines[1:]] == [recorded.mixed, recorded.denied, recorded.allowed]
    assert response.headers[CHAIN_HEAD_HEADER] == verified["head"]
    assert response.headers[CHAIN_DECISIONS_HEADER] == "3"
    assert response.headers[CHAIN_LAST_ID_HEADER] == str(recorded.mixed)
    assert response.headers[UNCHAINED_HEADER] == "0"
    assert response.headers[POLICY_VERSIONS_HEADER] == engine.version


def test_violations_export_names_the_head_of_the_decisions_its_rows_belong_to(
    client: TestClient,
    auth: dict[str, str],
    engine: PolicyEngine,
    recorded: Recorded,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The two denied tries are the decisions recorded from minute 1 on.
    verified = verified_head(capsys, recorded.start + timedelta(minutes=1), recorded.until)
    assert verified["decisions"] == 2

    body = export(client, auth["viewer"], "violations", recorded.start, recorded.until, format="json").json()
    assert [row["decision_id"] for row in body["rows"]] == [recorded.mixed, recorded.mixed, recorded.denied]
    assert sorted(row["outcome"] for row in body["rows"]) == ["deny", "deny", "exempted"]
    assert body["policy_versions"] == [engine.version]
    assert body["chain"] == {
        "head": verified["head"],
        "decisions": 2,
        "unchained_decisions": 0,
        "last_id": recorded.mixed,
    }

    response = export(client, auth["viewer"], "violations", recorded.start, recorded.until, format="csv")
    assert len(list(csv.DictReader(io.StringIO(response.text)))) == 3
    assert response.headers[CHAIN_HEAD_HEADER] == verified["head"]
    assert response.headers[CHAIN_DECISIONS_HEADER] == "2"
    assert response.headers[CHAIN_LAST_ID_HEADER] == str(recorded.mixed)
    assert response.headers[POLICY_VERSIONS_HEADER] == engine.version

    # Bounded by max_rows: the head covers the decisions of the rows exported, no more.
    capped = export(
        client, auth["viewer"], "violations", recorded.start, recorded.until, format="json", max_rows=1
    )
    only = verified_head(capsys, recorded.start + timedelta(minutes=2), recorded.until)
    assert len(capped.json()["rows"]) == 1
    assert capped.json()["chain"] == {
        "head": only["head"],
        "decisions": 1,
        "unchained_decisions": 0,
        "last_id": recorded.mixed,
    }
    assert capped.headers[CHAIN_HEAD_HEADER] == only["head"]


def test_an_empty_export_says_it_covers_nothing(
    client: TestClient, auth: dict[str, str], recorded: Recorded
) -> None:
    empty_from = recorded.until + timedelta(days=365 * 50)
    for kind in ("decisions", "violations"):
        body = export(client, auth["viewer"], kind, empty_from, empty_from + timedelta(days=1), format="json")
        assert body.json() == {
            "policy_versions": [],
            "chain": {"head": chain_head([]), "decisions": 0, "unchained_decisions": 0, "last_id": None},
            "rows": [],
        }
        response = export(
            client, auth["viewer"], kind, empty_from, empty_from + timedelta(days=1), format="csv"
        )
        assert len(response.text.splitlines()) == 1  # the header line
        assert response.headers[CHAIN_HEAD_HEADER] == chain_head([])
        assert response.headers[POLICY_VERSIONS_HEADER] == ""
        assert CHAIN_LAST_ID_HEADER not in response.headers
