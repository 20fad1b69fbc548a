"""Index the violations that deny a read observed while a task's body ran.

A data-use report asks, for every denied decision it reads, whether the deny came from a read
observed while the body ran (then the body ran, and read what it had). A partial index on
``decision_id`` over those few rows answers it with an index lookup instead of a scan of every
violation; rows of other findings are not indexed, so recording a decision does no extra work.

Revision ID: 631b7c3fb2bd
Revises: f2a9c4e7b130
Create Date: 2026-11-30 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "631b7c3fb2bd"
down_revision = "f2a9c4e7b130"
branch_labels = None
depends_on = None
policyzones_version = "0.1.0"

_INDEX = "idx_policyzones_violation_observed_deny"
_WHERE = "outcome = 'deny' AND input_source = 'observed'"
"""As ``airflow_policyzones.db.models.OBSERVED_DENY`` was when this revision was written."""


def upgrade() -> None:
    op.create_index(
        _INDEX,
        "policyzones_violation",
        ["decision_id"],
        postgresql_where=sa.text(_WHERE),
        sqlite_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="policyzones_violation")
