#!/usr/bin/env bash
# Start, stop or describe the real services enertef-hub needs on one machine:
# a PostgreSQL 16 cluster of its own and a MinIO server, both on loopback only.
#
#   scripts/services.sh start    start both (idempotent) and write $STATE_DIR/services.env
#   scripts/services.sh stop     stop both; data stays in $STATE_DIR unless --delete-data
#   scripts/services.sh status   say what runs
#   scripts/services.sh env      print the environment variables the hub reads
#
# The hub connects as a non-superuser admin role (CREATEROLE, owner of the MLflow
# database), as a production deployment should; the superuser is only used here.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${ENERTEF_STATE_DIR:-$ROOT/.local}
PG_PORT=${ENERTEF_PG_PORT:-55432}
MINIO_PORT=${ENERTEF_MINIO_PORT:-59000}
MINIO_CONSOLE_PORT=${ENERTEF_MINIO_CONSOLE_PORT:-59001}
PG_BIN=${ENERTEF_PG_BIN:-}
MINIO_BIN=${ENERTEF_MINIO_BIN:-}
# Named by major release: a cluster of another release (15, before issue 19) is left alone.
PG_DATA=$STATE_DIR/postgres-16
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$(dirname "$STATE_DIR")" 2>/dev/null; then
  # The postgres user cannot reach a data directory inside this checkout (a private
  # parent directory): keep the cluster under /var/tmp, one per checkout.
  PG_DATA=/var/tmp/enertef-hub-pg16-$(printf '%s' "$STATE_DIR" | sha1sum | cut -c1-12)
fi
MINIO_DATA=$STATE_DIR/minio
ENV_FILE=$STATE_DIR/services.env
SECRETS_FILE=$STATE_DIR/secrets.env

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# Run a command as the postgres system user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

ensure_secrets() {
  mkdir -p "$STATE_DIR"
  chmod 755 "$STATE_DIR"
  if [ ! -f "$SECRETS_FILE" ]; then
    umask 077
    {
      echo "PG_SUPERUSER_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
      echo "PG_ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
      echo "MINIO_ROOT_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
      echo "ENERTEF_SECRET_KEY=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    } > "$SECRETS_FILE"
  fi
  # shellcheck source=/dev/null
  . "$SECRETS_FILE"
}

minio_binary() {
  if [ -n "$MINIO_BIN" ]; then echo "$MINIO_BIN"; return; fi
  "$ROOT/scripts/build-minio.sh"
}

pg_running() { [ -f "$PG_DATA/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }
minio_running() { curl -fsS "http://127.0.0.1:$MINIO_PORT/minio/health/live" >/dev/null 2>&1; }

# Who may connect to what: users' roles (members of enertef_users) reach only the
# MLflow database, never "postgres" or "template1"; the superuser and the hub's admin
# role reach every database. Rewritten at every start, so existing clusters get it.
write_pg_hba() {
  local hba="$PG_DATA/pg_hba.conf"
  cat > "$hba.new" <<'HBA'
# Written by enertef-hub scripts/services.sh at every start: edits here are lost.
# TYPE  DATABASE  USER                    ADDRESS        METHOD
local   all       postgres,enertef_admin                 scram-sha-256
host    all       postgres,enertef_admin  127.0.0.1/32   scram-sha-256
local   mlflow    all                                    scram-sha-256
host    mlflow    all                     127.0.0.1/32   scram-sha-256
local   all       all                                    reject
host    all       all                     127.0.0.1/32   reject
host    all       all                     ::1/128        reject
HBA
  [ "$(id -u)" -eq 0 ] && chown postgres: "$hba.new"
  chmod 600 "$hba.new"
  mv "$hba.new" "$hba"
}

start_postgres() {
  if pg_running; then
    write_pg_hba
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null
    log "PostgreSQL already runs on 127.0.0.1:$PG_PORT"
    return
  fi
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 16 is not installed ($PG_BIN/initdb missing): run scripts/bootstrap.sh"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "creating PostgreSQL cluster in $PG_DATA"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DATA"
    local pwfile
    pwfile=$(mktemp)
    printf '%s\n' "$PG_SUPERUSER_PASSWORD" > "$pwfile"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$pwfile"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --pwfile="$pwfile" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    cat >> "$PG_DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DATA'
max_connections = 300
fsync = off
synchronous_commit = off
EOF
  fi
  write_pg_hba
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start >/dev/null \
    || { tail -20 "$PG_DATA/server.log" >&2; die "PostgreSQL did not start (log above)"; }
  # The admin role the hub uses: not a superuser, as in production.
  PGPASSWORD=$PG_SUPERUSER_PASSWORD "$PG_BIN/psql" -qAt -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -v pw="$PG_ADMIN_PASSWORD" >/dev/null <<'EOF'
SELECT format('CREATE ROLE enertef_admin LOGIN CREATEROLE PASSWORD %L', :'pw')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'enertef_admin') \gexec
SELECT 'CREATE DATABASE mlflow OWNER enertef_admin'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'mlflow') \gexec
EOF
}

minio_is_ours() { [ -f "$STATE_DIR/minio.pid" ] && kill -0 "$(cat "$STATE_DIR/minio.pid")" 2>/dev/null; }

start_minio() {
  if minio_running; then
    # Another MinIO on this port would have other credentials: never reuse it.
    minio_is_ours || die "port $MINIO_PORT is used by a MinIO that this checkout did not start: stop it or set ENERTEF_MINIO_PORT"
    log "MinIO already runs on 127.0.0.1:$MINIO_PORT"
    return
  fi
  local bin
  bin=$(minio_binary)
  mkdir -p "$MINIO_DATA"
  log "starting MinIO on 127.0.0.1:$MINIO_PORT"
  MINIO_ROOT_USER=enertefadmin MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD \
  MINIO_BROWSER=off MINIO_UPDATE=off \
    nohup "$bin" server "$MINIO_DATA" --quiet \
      --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" \
      > "$STATE_DIR/minio.log" 2>&1 &
  echo $! > "$STATE_DIR/minio.pid"
  for _ in $(seq 1 100); do
    minio_running && return
    sleep 0.2
  done
  tail -20 "$STATE_DIR/minio.log" >&2
  die "MinIO did not become healthy (log above)"
}

write_env() {
  umask 077
  cat > "$ENV_FILE" <<EOF
export ENERTEF_POSTGRES_ADMIN_URL=postgresql://enertef_admin:$PG_ADMIN_PASSWORD@127.0.0.1:$PG_PORT/mlflow
export ENERTEF_POSTGRES_SUPERUSER_URL=postgresql://postgres:$PG_SUPERUSER_PASSWORD@127.0.0.1:$PG_PORT/postgres
export ENERTEF_MINIO_ENDPOINT=http://127.0.0.1:$MINIO_PORT
export ENERTEF_MINIO_ACCESS_KEY=enertefadmin
export ENERTEF_MINIO_SECRET_KEY=$MINIO_ROOT_PASSWORD
export ENERTEF_SECRET_KEY=$ENERTEF_SECRET_KEY
export ENERTEF_PG_DATA=$PG_DATA
export ENERTEF_PG_BIN=$PG_BIN
export ENERTEF_MINIO_PID_FILE=$STATE_DIR/minio.pid
EOF
}

stop_all() {
  if pg_running; then
    log "stopping PostgreSQL"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
  fi
  if [ -f "$STATE_DIR/minio.pid" ]; then
    local pid
    pid=$(cat "$STATE_DIR/minio.pid")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping MinIO"
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$STATE_DIR/minio.pid"
  fi
}

# The server: ENERTEF_PG_BIN, or PostgreSQL 16 installed once (scripts/install-postgres.sh).
if [ -z "$PG_BIN" ]; then
  case "${1:-}" in
    start) PG_BIN=$("$ROOT/scripts/install-postgres.sh") ;;
    *) PG_BIN=${ENERTEF_CACHE_DIR:-/var/cache/enertef-hub}/postgresql-${ENERTEF_PG_VERSION:-16.15.0}/bin ;;
  esac
fi

case "${1:-}" in
  start)
    ensure_secrets
    start_postgres
    start_minio
    write_env
    log "ready; environment in $ENV_FILE"
    ;;
  stop)
    stop_all
    if [ "${2:-}" = "--delete-data" ]; then
      log "deleting $PG_DATA and $MINIO_DATA"
      rm -rf "$PG_DATA" "$MINIO_DATA" "$ENV_FILE" "$SECRETS_FILE"
    fi
    ;;
  status)
    if pg_running; then echo "postgresql: running on 127.0.0.1:$PG_PORT"; else echo "postgresql: stopped"; fi
    if minio_running; then echo "minio: running on 127.0.0.1:$MINIO_PORT"; else echo "minio: stopped"; fi
    ;;
  env)
    [ -f "$ENV_FILE" ] || die "services were never started: run scripts/services.sh start"
    cat "$ENV_FILE"
    ;;
  *)
    echo "usage: $0 start|stop [--delete-data]|status|env" >&2
    exit 2
    ;;
esac
