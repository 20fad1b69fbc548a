"""The DB manager ``airflow db migrate`` runs for the provider's tables (as providers/edge3 does).

Airflow 3.2+ discovers it from the ``db-managers`` list in our provider info; older releases, or
deployments that disabled provider discovery, list it under ``[database] external_db_managers``
(which ``airflow db-manager migrate|downgrade|reset --import-path`` requires anyway).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.utils.db_manager import BaseDBManager

from airflow_policyzones.db.models import policyzones_metadata

PACKAGE_DIR = Path(__file__).parent
DB_MANAGER = "airflow_policyzones.db.manager.PolicyZonesDBManager"
"""The import path to list under ``db-managers`` / ``[database] external_db_managers``."""
VERSION_TABLE = "alembic_version_policyzones"
HEAD_REVISION = "631b7c3fb2bd"

_REVISION_HEADS_MAP: dict[str, str] = {
    "0.1.0": HEAD_REVISION,
}


class PolicyZonesDBManager(BaseDBManager):
    """Creates and upgrades the ``policyzones_*`` tables with their own Alembic version table."""

    metadata = policyzones_metadata
    version_table_name = VERSION_TABLE
    migration_dir = (PACKAGE_DIR / "migrations").as_posix()
    alembic_file = (PACKAGE_DIR / "alembic.ini").as_posix()
    # `airflow db reset` wipes the metadata database; audit rows about runs that no longer
    # exist would only mislead, so they go with it.
    supports_table_dropping = True
    revision_heads_map = _REVISION_HEADS_MAP

    def downgrade(
        self, to_revision: str, from_revision: str | None = None, show_sql_only: bool = False
    ) -> None:
        """Downgrade (``base`` drops the tables); ``airflow db-manager downgrade`` calls this."""
        from alembic import command

        self._release_metadata_locks_if_needed()
        config: Any = self.get_alembic_config()  # type: ignore[no-untyped-call]
        if show_sql_only:
            start = from_revision or self.get_current_revision() or HEAD_REVISION  # type: ignore[no-untyped-call]
            command.downgrade(config, revision=f"{start}:{to_revision}", sql=True)
        else:
            command.downgrade(config, revision=to_revision)
        self.log.info("Downgraded the %s database to %s", type(self).__name__, to_revision)
