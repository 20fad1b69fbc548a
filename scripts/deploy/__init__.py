"""The deployment driver shared by ``make demo`` (scripts/demo.py) and the end-to-end tests.

It talks to a running Airflow api-server through its public REST API: log in, wait until the
components are healthy, wait for the DAGs to be parsed, trigger runs and wait for them. Every wait
has an overall deadline; until it passes, a request that times out or cannot connect is retried
(a busy machine answers late, not wrongly), and what is awaited is said as it changes. Not part of
the ``airflow_policyzones`` package.
"""
