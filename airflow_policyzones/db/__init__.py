"""The provider's tables: models, migrations and the DB manager ``airflow db migrate`` runs.

Importing the package installs the hash-chaining of decision and violation rows
(:mod:`airflow_policyzones.db.chain`), so every process that writes them seals them.
"""

from airflow_policyzones.db import chain as chain
