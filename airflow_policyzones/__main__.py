"""``python -m airflow_policyzones``: the same CLI as the ``policyzones`` console script."""

from __future__ import annotations

from airflow_policyzones.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
