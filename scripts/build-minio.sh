#!/usr/bin/env bash
# Print the path of a MinIO server binary, building it from its Go module the first
# time. MinIO publishes no package in any registry this project may use, so it is
# built from source at one pinned commit and cached outside the clone (upstream is
# in maintenance mode: pinning keeps every machine on the same server).
set -euo pipefail
MINIO_VERSION=${ENERTEF_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
CACHE=${ENERTEF_CACHE_DIR:-/var/cache/enertef-hub}
BIN_DIR=$CACHE/minio-$MINIO_VERSION
if [ ! -x "$BIN_DIR/minio" ]; then
  # One build at a time: a second caller waits here, then finds the binary cached.
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.build-minio.lock"
  flock 9
fi
if [ ! -x "$BIN_DIR/minio" ]; then
  command -v go >/dev/null || { echo "[build-minio] error: Go is needed to build MinIO (apt-get install golang or see README)" >&2; exit 1; }
  echo "[build-minio] building MinIO $MINIO_VERSION (first time only, a few minutes)" >&2
  mkdir -p "$BIN_DIR.tmp"
  GOBIN="$BIN_DIR.tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "github.com/minio/minio@$MINIO_VERSION" >&2
  rm -rf "$BIN_DIR"
  mv "$BIN_DIR.tmp" "$BIN_DIR"
fi
echo "$BIN_DIR/minio"
