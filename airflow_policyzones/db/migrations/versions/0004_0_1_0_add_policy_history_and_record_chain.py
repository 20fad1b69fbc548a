"""Keep every policy version's text (policy history) and hash-chain decision and violation rows.

Rows recorded before this revision keep NULL digests: the chain starts here, and
``policyzones verify-records`` reports them as recorded before the chain started.

Revision ID: f2a9c4e7b130
Revises: d3e8a1c6b5f4
Create Date: 2026-11-30 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from airflow.utils.sqlalchemy import UtcDateTime
from alembic import op

# revision identifiers, used by Alembic.
revision = "f2a9c4e7b130"
down_revision = "d3e8a1c6b5f4"
branch_labels = None
depends_on = None
policyzones_version = "0.1.0"

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _columns() -> list[tuple[str, sa.Column[object]]]:
    return [
        ("policyzones_decision", sa.Column("chain_prev", _PK, nullable=True)),
        ("policyzones_decision", sa.Column("chain_length", sa.Integer(), nullable=True)),
        ("policyzones_decision", sa.Column("digest", sa.String(length=64), nullable=True)),
        ("policyzones_violation", sa.Column("chain_seq", sa.Integer(), nullable=True)),
        ("policyzones_violation", sa.Column("digest", sa.String(length=64), nullable=True)),
    ]


def upgrade() -> None:
    op.create_table(
        "policyzones_policy_version",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=80), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=3000), nullable=True),
        sa.Column("first_used_at", UtcDateTime(), nullable=False),
        sa.Column("last_used_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="policyzones_policy_version_pkey"),
        sa.UniqueConstraint("version", name="policyzones_policy_version_version_uq"),
    )
    for table, column in _columns():
        op.add_column(table, column)
    op.create_index(
        "idx_policyzones_decision_policy_version",
        "policyzones_decision",
        ["policy_version", "decided_at"],
    )


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): no batch copy, so --show-sql-only works.
    op.drop_index("idx_policyzones_decision_policy_version", table_name="policyzones_decision")
    for table, column in reversed(_columns()):
        op.drop_column(table, column.name)
    op.drop_table("policyzones_policy_version")
