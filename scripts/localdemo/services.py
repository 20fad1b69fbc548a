"""What the demo's Airflow runs on: the machine's PostgreSQL (its metadata database) and Redis
(Celery's broker and result backend), started by ``scripts/services.sh`` as ``.ci/run`` starts
them; and the demo's own database on that PostgreSQL."""

from __future__ import annotations

import subprocess

from scripts.localdemo.common import REPO_ROOT, DemoError, rel, say
from scripts.localdemo.settings import BROKER_URL, DEMO_DATABASE, RESULT_BACKEND, database_url

SERVICES_SCRIPT = REPO_ROOT / "scripts" / "services.sh"


def ensure_services(timeout: float = 120.0) -> None:
    """Start PostgreSQL and Redis when they are not running (the script says what it starts)."""
    argv = ["bash", str(SERVICES_SCRIPT)]
    command = f"bash {rel(SERVICES_SCRIPT)}"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DemoError(f"`{command}` (start PostgreSQL and Redis) took more than {timeout:.0f} s") from None
    for line in proc.stdout.splitlines():
        say(f"  {line}")
    if proc.returncode != 0:
        raise DemoError(
            f"PostgreSQL and Redis are needed (metadata database, Celery's broker), and "
            f"`{command}` failed (exit {proc.returncode}):\n  {proc.stderr.strip()}"
        )


def prepare_database(*, reset: bool, name: str = DEMO_DATABASE) -> bool:
    """Create the demo's database when it does not exist; with ``reset``, drop it first (ending
    the sessions still connected to it). Returns whether it was created."""
    import sqlalchemy as sa

    admin_url = database_url("postgres")
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if reset:
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            return not exists
    except sa.exc.SQLAlchemyError as error:
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise DemoError(
            f"cannot {'recreate' if reset else 'create'} the demo's database {name!r} on {admin_url}: "
            f"{detail}\nIs PostgreSQL running with trust auth for 127.0.0.1 (`bash {rel(SERVICES_SCRIPT)}`)?"
        ) from None
    finally:
        engine.dispose()


def flush_celery(urls: tuple[str, ...] = (BROKER_URL, RESULT_BACKEND)) -> None:
    """Empty the demo's Redis databases: the tasks an earlier demo queued, and their results."""
    import redis

    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        except redis.RedisError as error:
            raise DemoError(f"cannot empty the Redis database {url}: {error}") from None
        finally:
            client.close()
