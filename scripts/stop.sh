#!/usr/bin/env bash
# Stop enertef-hub on k3d (see scripts/start.sh).
#
#   scripts/stop.sh                stop the port-forwards and the cluster; every volume
#                                  (user homes, PostgreSQL, MinIO, pgAdmin) is kept, and
#                                  scripts/start.sh brings it all back
#   scripts/stop.sh --delete-data  delete the cluster with all its data, the Secrets and
#                                  the local image registry (asks first; --yes skips that)
set -euo pipefail

# Settings and helpers (cluster name, state dir, ...) are shared with start.sh.
# shellcheck source=start.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/start.sh"

log() { printf '[stop] %s\n' "$*" >&2; }
die() { printf '[stop] error: %s\n' "$*" >&2; exit 1; }

# Only our own port-forwards: pid_alive checks the pid is still a port-forward.
stop_port_forwards() {
  local pidfile
  for pidfile in "$STATE_DIR"/port-forward-*.pid; do
    [ -e "$pidfile" ] || continue
    if pid_alive "$pidfile"; then
      kill "$(cat "$pidfile")"
      log "stopped port-forward $(basename "$pidfile" .pid | sed 's/^port-forward-//')"
    fi
    rm -f "$pidfile"
  done
}

stop_usage() { header_help "${BASH_SOURCE[0]}"; }

stop_main() {
  local delete_data=0 yes=0
  while [ $# -gt 0 ]; do
    case $1 in
      --delete-data) delete_data=1 ;;
      --yes|-y) yes=1 ;;
      -h|--help) stop_usage; return 0 ;;
      *) stop_usage >&2; die "unknown option: $1" ;;
    esac
    shift
  done
  command -v k3d >/dev/null 2>&1 || die "k3d is not installed (need k3d >= $MIN_K3D), so there is no cluster to stop"
  stop_port_forwards
  if [ "$delete_data" = 1 ]; then
    if [ "$yes" = 0 ]; then
      [ -t 0 ] || die "--delete-data deletes every user's files, MLflow runs and buckets: add --yes to confirm when not run interactively"
      printf "Delete cluster '%s' with ALL user homes, MLflow stores and buckets? Type 'delete': " "$CLUSTER" >&2
      local answer
      read -r answer
      [ "$answer" = delete ] || die "nothing deleted"
    fi
    if cluster_exists; then
      log "deleting k3d cluster $CLUSTER and all its volumes"
      k3d cluster delete "$CLUSTER" >/dev/null
    fi
    if k3d registry list "$REGISTRY_CONTAINER" >/dev/null 2>&1; then
      log "deleting the local image registry $REGISTRY_CONTAINER"
      k3d registry delete "$REGISTRY_CONTAINER" >/dev/null
    fi
    rm -rf "$STATE_DIR"
    log "done: everything is deleted; scripts/start.sh starts afresh"
    return
  fi
  if cluster_exists; then
    log "stopping k3d cluster $CLUSTER (volumes kept)"
    k3d cluster stop "$CLUSTER" >/dev/null
  else
    log "no k3d cluster $CLUSTER: nothing to stop"
  fi
  log "done: data kept; scripts/start.sh starts it again"
}

stop_main "$@"
