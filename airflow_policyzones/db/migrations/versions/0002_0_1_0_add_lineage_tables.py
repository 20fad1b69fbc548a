"""Add the lineage tables: asset label history, current asset labels, reclassifications.

Revision ID: 8b1d4e2f7a90
Revises: 5c3f0a9d2b71
Create Date: 2026-11-28 00:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from airflow.utils.sqlalchemy import UtcDateTime
from alembic import op

# revision identifiers, used by Alembic.
revision = "8b1d4e2f7a90"
down_revision = "5c3f0a9d2b71"
branch_labels = None
depends_on = None
policyzones_version = "0.1.0"

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _labels() -> list[sa.Column[object]]:
    return [
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("consented", sa.JSON(), nullable=False),
        sa.Column("aggregated", sa.Boolean(), nullable=False),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("reclassified_by", sa.JSON(), nullable=False),
    ]


def _try() -> list[sa.Column[object]]:
    return [
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "policyzones_asset_label_event",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=3000), nullable=False),
        *_labels(),
        *_try(),
        sa.Column("zone", sa.String(length=100), nullable=True),
        sa.Column("decision_id", _PK, nullable=False),
        sa.Column("reclassifier", sa.String(length=100), nullable=True),
        sa.Column("policy_version", sa.String(length=80), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="policyzones_asset_label_event_pkey"),
        sa.UniqueConstraint(
            "decision_id", "namespace", "name", name="policyzones_asset_label_event_decision_output_uq"
        ),
    )
    op.create_index(
        "idx_policyzones_asset_label_event_asset",
        "policyzones_asset_label_event",
        ["namespace", "name", "recorded_at"],
    )
    op.create_table(
        "policyzones_asset_labels",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=3000), nullable=False),
        *_labels(),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="policyzones_asset_labels_pkey"),
        sa.UniqueConstraint("namespace", "name", name="policyzones_asset_labels_asset_uq"),
    )
    op.create_table(
        "policyzones_reclassification",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("reclassifier", sa.String(length=100), nullable=False),
        sa.Column("zone", sa.String(length=100), nullable=False),
        *_try(),
        sa.Column("decision_id", _PK, nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("labels_before", sa.JSON(), nullable=False),
        sa.Column("labels_after", sa.JSON(), nullable=False),
        sa.Column("policy_version", sa.String(length=80), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="policyzones_reclassification_pkey"),
        sa.UniqueConstraint("decision_id", name="policyzones_reclassification_decision_uq"),
    )
    op.create_index(
        "idx_policyzones_reclassification_recorded_at", "policyzones_reclassification", ["recorded_at"]
    )


def downgrade() -> None:
    op.drop_index("idx_policyzones_reclassification_recorded_at", table_name="policyzones_reclassification")
    op.drop_table("policyzones_reclassification")
    op.drop_table("policyzones_asset_labels")
    op.drop_index("idx_policyzones_asset_label_event_asset", table_name="policyzones_asset_label_event")
    op.drop_table("policyzones_asset_label_event")
