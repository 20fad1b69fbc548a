"""GET /api/v1/assets/labels: an asset's propagated labels at any moment, with the writes behind them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import Prepared
from tests.unit.api.test_read_api import bearer
from tests.unit.db.test_propagation import PURCHASES, decide, fresh, write

pytestmark = pytest.mark.integration


def labels(client: TestClient, token: str, **params: Any) -> Any:
    return client.get("/api/v1/assets/labels", params=params, headers=bearer(token))


def test_labels_at_any_moment_are_explained_by_the_writes(
    backend: Prepared, client: TestClient, auth: dict[str, str], engine: PolicyEngine
) -> None:
    shared = fresh("shared")
    clicks_run, _ = decide(
        engine, "ads_dag", zone="ads", inputs=["s3://lake/raw/ad_clicks/2026"], outlets=[shared]
    )
    write(engine, "ads_dag", clicks_run, [shared])
    between = datetime.now(timezone.utc)
    purchases_run, _ = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[shared])
    write(engine, "ads_dag", purchases_run, [shared])

    now = labels(client, auth["viewer"], name=shared)
    assert now.status_code == 200, now.text
    body = now.json()
    assert body["labels"]["categories"] == ["ad_clicks", "purchase_events"]
    assert body["write_count"] == 2
    assert [item["task_instance"]["run_id"] for item in body["history"]] == [purchases_run, clicks_run]
    assert body["history"][0]["labels"]["categories"] == ["purchase_events"]

    earlier = labels(client, auth["viewer"], name=shared, at=between.isoformat()).json()
    assert earlier["labels"]["categories"] == ["ad_clicks"]
    assert earlier["write_count"] == 1

    nothing = labels(client, auth["viewer"], name=fresh("never")).json()
    assert (nothing["labels"], nothing["write_count"], nothing["history"]) == (None, 0, [])


@pytest.mark.parametrize(
    ("params", "status"),
    [({}, 422), ({"name": "x", "namespace": "file"}, 422), ({"name": "x", "at": "yesterday"}, 422)],
)
def test_bad_input_is_a_422(
    backend: Prepared, client: TestClient, auth: dict[str, str], params: dict[str, str], status: int
) -> None:
    assert labels(client, auth["viewer"], **params).status_code == status


def test_anonymous_is_401(backend: Prepared, client: TestClient) -> None:
    assert client.get("/api/v1/assets/labels", params={"name": "x"}).status_code == 401
