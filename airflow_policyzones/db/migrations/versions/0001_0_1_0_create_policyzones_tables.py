"""Create the policyzones decision, decision-input and violation tables.

Revision ID: 5c3f0a9d2b71
Revises:
Create Date: 2026-11-27 00:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from airflow.utils.sqlalchemy import UtcDateTime
from alembic import op

# revision identifiers, used by Alembic.
revision = "5c3f0a9d2b71"
down_revision = None
branch_labels = None
depends_on = None
policyzones_version = "0.1.0"

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "policyzones_decision",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("zone", sa.String(length=100), nullable=True),
        sa.Column("zone_source", sa.String(length=20), nullable=False),
        sa.Column("mode", sa.String(length=100), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("policy_version", sa.String(length=80), nullable=False),
        sa.Column("claims_digest", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=False),
        sa.Column("input_count", sa.Integer(), nullable=False),
        sa.Column("finding_count", sa.Integer(), nullable=False),
        sa.Column("violation_count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('allow', 'deny', 'dry_run', 'exempted')",
            name=op.f("ck_policyzones_decision_outcome"),
        ),
        sa.CheckConstraint("source IN ('api', 'in_process')", name=op.f("ck_policyzones_decision_source")),
        sa.PrimaryKeyConstraint("id", name="policyzones_decision_pkey"),
        sa.UniqueConstraint(
            "dag_id", "task_id", "run_id", "map_index", "try_number", name="policyzones_decision_ti_try_uq"
        ),
    )
    with op.batch_alter_table("policyzones_decision") as batch_op:
        batch_op.create_index("idx_policyzones_decision_decided_at", ["decided_at"])
        batch_op.create_index("idx_policyzones_decision_dag_decided_at", ["dag_id", "decided_at"])
        batch_op.create_index("idx_policyzones_decision_zone_decided_at", ["zone", "decided_at"])
        batch_op.create_index("idx_policyzones_decision_outcome_decided_at", ["outcome", "decided_at"])

    op.create_table(
        "policyzones_decision_input",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("decision_id", _PK, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=3000), nullable=False),
        sa.Column("labeled", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("consented", sa.JSON(), nullable=True),
        sa.Column("aggregated", sa.Boolean(), nullable=True),
        sa.Column("origins", sa.JSON(), nullable=True),
        sa.Column("reclassified_by", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["policyzones_decision.id"],
            name="policyzones_decision_input_decision_fkey",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="policyzones_decision_input_pkey"),
    )
    with op.batch_alter_table("policyzones_decision_input") as batch_op:
        batch_op.create_index("idx_policyzones_decision_input_decision", ["decision_id"])
        batch_op.create_index("idx_policyzones_decision_input_category", ["category", "decision_id"])

    op.create_table(
        "policyzones_violation",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("decision_id", _PK, nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("zone", sa.String(length=100), nullable=True),
        sa.Column("mode", sa.String(length=100), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("input", sa.String(length=3000), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("remediation", sa.Text(), nullable=False),
        sa.Column("exemption", sa.String(length=250), nullable=True),
        sa.Column("policy_version", sa.String(length=80), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('deny', 'dry_run', 'exempted')", name=op.f("ck_policyzones_violation_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["policyzones_decision.id"],
            name="policyzones_violation_decision_fkey",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="policyzones_violation_pkey"),
    )
    with op.batch_alter_table("policyzones_violation") as batch_op:
        batch_op.create_index("idx_policyzones_violation_decision", ["decision_id"])
        batch_op.create_index("idx_policyzones_violation_decided_at", ["decided_at"])
        batch_op.create_index("idx_policyzones_violation_dag_decided_at", ["dag_id", "decided_at"])
        batch_op.create_index("idx_policyzones_violation_zone_decided_at", ["zone", "decided_at"])
        batch_op.create_index("idx_policyzones_violation_rule_decided_at", ["rule", "decided_at"])


def downgrade() -> None:
    op.drop_table("policyzones_violation")
    op.drop_table("policyzones_decision_input")
    op.drop_table("policyzones_decision")
