"""The provider's tables: models, migrations and the DB manager ``airflow db migrate`` runs."""
