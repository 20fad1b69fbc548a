"""Policy Zones pages in the Airflow UI (server-rendered, shown through ``external_views``)."""
