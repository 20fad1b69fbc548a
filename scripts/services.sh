#!/usr/bin/env bash
# Start the machine's PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379) when they
# are not running; leave them alone when they are. Used by `.ci/run` (the end-to-end tests) and by
# `make demo` (scripts/demo.py: the metadata database and Celery's broker). Prints what it starts;
# exits 1, naming the command that failed and how to fix it, when one cannot be started.
#
#   bash scripts/services.sh            # both
#   bash scripts/services.sh postgres   # or only one of them
#
# PG_PORT / REDIS_PORT (environment) check other ports; what is started is the machine's cluster.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
REDIS_HOST=127.0.0.1
REDIS_PORT=${REDIS_PORT:-6379}
WAIT_SECONDS=30

fail() {
  echo "scripts/services.sh: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || fail "no \`$1\` command: install $2 (Debian: apt-get install $2)"
}

postgres_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }
redis_up() { [[ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

wait_for() {
  local check=$1
  for _ in $(seq "$WAIT_SECONDS"); do
    "$check" && return 0
    sleep 1
  done
  "$check"
}

start_postgres() {
  need pg_isready postgresql-client
  if postgres_up; then
    echo "PostgreSQL: running on $PG_HOST:$PG_PORT"
    return 0
  fi
  need pg_ctlcluster postgresql-common
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$version" ]] || fail "PostgreSQL is not running on $PG_HOST:$PG_PORT and no cluster is configured \
in /etc/postgresql (install the postgresql package, which creates one)"
  local command=(pg_ctlcluster --skip-systemctl-redirect "$version" main start)
  echo "starting PostgreSQL: ${command[*]}"
  "${command[@]}" || fail "PostgreSQL could not be started: \`${command[*]}\` failed (see \
/var/log/postgresql/postgresql-$version-main.log)"
  wait_for postgres_up || fail "PostgreSQL was started (\`${command[*]}\`) but does not accept \
connections on $PG_HOST:$PG_PORT after ${WAIT_SECONDS} s (see /var/log/postgresql/postgresql-$version-main.log)"
}

start_redis() {
  need redis-cli redis-tools
  if redis_up; then
    echo "Redis: running on $REDIS_HOST:$REDIS_PORT"
    return 0
  fi
  need redis-server redis-server
  mkdir -p /var/lib/redis /var/log/redis
  local command=(redis-server --daemonize yes --bind "$REDIS_HOST" -::1 --port "$REDIS_PORT" --save ""
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log)
  echo "starting Redis: ${command[*]}"
  "${command[@]}" || fail "Redis could not be started: \`${command[*]}\` failed (see /var/log/redis/ci.log)"
  wait_for redis_up || fail "Redis was started (\`${command[*]}\`) but does not answer PING on \
$REDIS_HOST:$REDIS_PORT after ${WAIT_SECONDS} s (see /var/log/redis/ci.log)"
}

services=("$@")
[[ ${#services[@]} -gt 0 ]] || services=(postgres redis)
for service in "${services[@]}"; do
  case "$service" in
    postgres) start_postgres ;;
    redis) start_redis ;;
    *) fail "unknown service '$service' (postgres, redis)" ;;
  esac
done
