#!/usr/bin/env bash
# Services of the scale-out tests (issue 15): a PostgreSQL server on a loopback port, in a cluster folder this
# script owns, and the Python packages of the `cluster` extra (Ray, psycopg, LangGraph's PostgreSQL checkpointer).
# Idempotent: installs only what is missing, starts the server only when it does not answer.
# Ray needs no service here: the tests start (and stop) their own local head + worker processes.
set -euo pipefail
cd "$(dirname "$0")/../.."

PGPORT="${M3LAB_PG_PORT:-55432}"
PGDATA="${M3LAB_PG_DATA:-/var/lib/m3lab-pg}"
PGBIN=""
for dir in /usr/lib/postgresql/*/bin; do [ -x "$dir/initdb" ] && PGBIN="$dir"; done
if [ -z "$PGBIN" ]; then
  echo "[setup] apt-get install postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  for dir in /usr/lib/postgresql/*/bin; do [ -x "$dir/initdb" ] && PGBIN="$dir"; done
fi

# The server refuses to run as root: the cluster belongs to the `postgres` user the package created.
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "[setup] initdb $PGDATA"
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  su postgres -s /bin/sh -c "$PGBIN/initdb -D '$PGDATA' -U postgres --auth=trust -E UTF8 >/dev/null"
fi
if ! "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT"; then
  echo "[setup] starting PostgreSQL on 127.0.0.1:$PGPORT (log: $PGDATA/server.log)"
  su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D '$PGDATA' -l '$PGDATA/server.log' -w -t 60 \
    -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories=/tmp -c max_connections=200\" start >/dev/null"
fi
"$PGBIN/pg_isready" -h 127.0.0.1 -p "$PGPORT"
# One database per purpose: the tests create (and drop) their own schemas inside it.
if ! "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='m3lab'" | grep -q 1; then
  "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres m3lab
fi
echo "[setup] PostgreSQL: postgresql://postgres@127.0.0.1:$PGPORT/m3lab (tests read M3LAB_TEST_PG_URL, this by default)"

venv="${M3LAB_VENV:-.venv}"
if ! "$venv/bin/python" -c "import ray, psycopg, psycopg_pool, langgraph.checkpoint.postgres" 2>/dev/null; then
  echo "[setup] pip install -e .[cluster]"
  "$venv/bin/pip" install -q -e ".[cluster]"
fi
