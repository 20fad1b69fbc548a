"""Alembic environment of the policyzones tables: Airflow's engine, our MetaData, our version table."""

from __future__ import annotations

import contextlib
from logging import getLogger
from logging.config import fileConfig
from typing import Any

from airflow import settings
from alembic import context

from airflow_policyzones.db.manager import PolicyZonesDBManager

config = context.config
version_table = PolicyZonesDBManager.version_table_name
target_metadata = PolicyZonesDBManager.metadata

if not getLogger().handlers and config.config_file_name:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_object(_: Any, name: str | None, type_: str, *args: Any) -> bool:
    """Autogenerate compares our tables only, never Airflow's in the same database."""
    return not (type_ == "table" and name not in target_metadata.tables)


def run_migrations_offline() -> None:
    """Emit SQL (``--show-sql-only``) without connecting."""
    context.configure(
        url=settings.SQL_ALCHEMY_CONN,
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        compare_server_default=True,
        render_as_batch=True,
        version_table=version_table,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through Airflow's engine (or a connection handed in by the caller)."""
    with contextlib.ExitStack() as stack:
        connection = config.attributes.get("connection", None)
        if connection is None:
            if settings.engine is None:
                raise RuntimeError("Airflow's database engine is not configured (settings.engine is None)")
            connection = stack.enter_context(settings.engine.connect())
        context.configure(
            connection=connection,
            transaction_per_migration=True,
            target_metadata=target_metadata,
            compare_type=True,
            compare_server_default=True,
            include_object=include_object,
            render_as_batch=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
