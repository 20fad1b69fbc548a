"""The HTTP edge on the api-server: the relay and the checks around Airflow's execution API, and one
router per resource of the provider's own API (assembled by :mod:`airflow_policyzones.webapp`)."""
