"""The audit queries' domain errors map to HTTP in one place: a status per type, the detail a
client is shown, and the responses the routes document."""

from __future__ import annotations

import pytest

from airflow_policyzones.api.errors import STATUS_CODES, error_responses, http_exception, status_of
from airflow_policyzones.db.query_errors import AuditQueryError, InvalidQuery, NotFound, PolicyUnavailable


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (InvalidQuery("since is after until"), 422, {"msg": "since is after until"}),
        (
            InvalidQuery("unknown zone 'x'", allowed={"recs", "ads"}),
            422,
            {"msg": "unknown zone 'x'", "allowed": ["ads", "recs"]},
        ),
        (NotFound("no decision with id 7"), 404, "no decision with id 7"),
        (PolicyUnavailable("the policy does not load: boom"), 503, "the policy does not load: boom"),
        (AuditQueryError("unmapped"), 500, "unmapped"),
    ],
)
def test_each_domain_error_has_one_status_and_detail(
    error: AuditQueryError, status: int, detail: object
) -> None:
    assert status_of(error) == status
    raised = http_exception(error)
    assert (raised.status_code, raised.detail) == (status, detail)


def test_a_subclass_answers_as_its_base() -> None:
    class UnknownCursor(InvalidQuery):
        pass

    assert status_of(UnknownCursor("malformed cursor")) == 422


def test_documented_responses_come_from_the_same_table() -> None:
    assert error_responses({NotFound: "gone", PolicyUnavailable: "no policy"}) == {
        404: {"description": "gone"},
        503: {"description": "no policy"},
    }
    assert set(STATUS_CODES) == {InvalidQuery, NotFound, PolicyUnavailable}
