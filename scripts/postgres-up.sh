#!/usr/bin/env bash
# Starts Debian's PostgreSQL 15 cluster and makes sure the test role exists; prints the admin URL
# the test suite creates its fresh databases from. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Only the URL goes to stdout (callers capture it); everything the tools print goes to stderr.
exec 3>&1 1>&2
# The server must not inherit the caller's capture pipe (fd 3), or `$(postgres-up.sh)` waits for
# the daemon to exit, that is forever.
pg_cluster() { pg_ctlcluster 15 main "$@" 3>&- </dev/null; }

PG_PORT="${KENNING_TEST_PG_PORT:-5432}"
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1,$2}' | grep -q "^15 main$"; then
  log "creating PostgreSQL cluster 15/main"
  pg_createcluster 15 main --port "$PG_PORT" >/dev/null
fi
if ! pg_lsclusters -h | awk '$1==15 && $2=="main" {print $4}' | grep -q online; then
  log "starting PostgreSQL 15"
  pg_cluster start
fi
port="$(pg_lsclusters -h | awk '$1==15 && $2=="main" {print $3}')"
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 1
done
# A server started before apt upgraded PostgreSQL keeps running the old binary, which cannot load
# the new libraries (plpgsql, vector): restart it whenever the running version is not the installed one.
running="$(runuser -u postgres -- psql -At -p "$port" -c 'SHOW server_version' | awk '{print $1}')"
installed="$(/usr/lib/postgresql/15/bin/postgres -V | awk '{print $3}')"
if [ "$running" != "$installed" ]; then
  log "restarting PostgreSQL ($running is running, $installed is installed)"
  pg_cluster restart
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
  done
fi
runuser -u postgres -- psql -q -p "$port" -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kenning') THEN
    CREATE ROLE kenning LOGIN SUPERUSER PASSWORD 'kenning';
  END IF;
END $$;
SQL
# Databases left by earlier runs: drop them so each run starts from nothing.
for db in $(runuser -u postgres -- psql -At -p "$port" -c "SELECT datname FROM pg_database WHERE datname LIKE 'kenning_test_%'"); do
  runuser -u postgres -- dropdb -p "$port" --if-exists "$db" >/dev/null 2>&1 || true
done
runuser -u postgres -- psql -q -p "$port" -c "CREATE EXTENSION IF NOT EXISTS vector" template1 >/dev/null
echo "postgres://kenning:kenning@127.0.0.1:$port/postgres" >&3
