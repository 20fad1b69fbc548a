"""Record how each input and output became known: declared, sql, observed (hooks) or alias.

Revision ID: d3e8a1c6b5f4
Revises: 8b1d4e2f7a90
Create Date: 2026-11-30 00:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "d3e8a1c6b5f4"
down_revision = "8b1d4e2f7a90"
branch_labels = None
depends_on = None
policyzones_version = "0.1.0"

_COLUMNS = (
    ("policyzones_decision_input", "source"),
    ("policyzones_violation", "input_source"),
    ("policyzones_asset_label_event", "source"),
)


def upgrade() -> None:
    for table, column in _COLUMNS:
        op.add_column(table, sa.Column(column, sa.String(length=20), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): no batch copy, so --show-sql-only works.
    for table, column in reversed(_COLUMNS):
        op.drop_column(table, column)
