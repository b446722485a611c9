#!/usr/bin/env bash
# The test command (README, CI): set up a fresh machine, start the real services,
# and run every tier: unit, integration, security, e2e on JupyterHub 6; then, in the
# z2jh 4.4.0 hub image's own Python environment (.venv-hub: JupyterHub 5.5.0,
# KubeSpawner 7.0.0, the image's frozen packages), the login flow and everything
# Kubernetes (the released chart on a real control plane).
#
#   scripts/run-tests.sh                 everything
#   scripts/run-tests.sh tests/unit      only some tests (pytest arguments), on JupyterHub 6
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/bootstrap.sh
# What this run starts, it stops: the services (PostgreSQL, MinIO) and the Kubernetes
# control plane the e2e tests start are left running only if they ran before.
services_were_up=$(scripts/services.sh status | grep -c ': running' || true)
kube_was_up=0
scripts/kube.sh status >/dev/null 2>&1 && kube_was_up=1
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  [ "$kube_was_up" = 1 ] || scripts/kube.sh stop >/dev/null 2>&1 || true
  [ "$services_were_up" = 2 ] || scripts/services.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
scripts/services.sh start
# shellcheck source=/dev/null
. .local/services.env

if [ $# -gt 0 ]; then
  status=0
  .venv/bin/python -m pytest "$@" || status=$?  # not exec: the clean-up still runs
  exit $status
fi

status=0
echo "== JupyterHub $(.venv/bin/python -c 'import jupyterhub; print(jupyterhub.__version__)'): unit, integration, security, e2e"
.venv/bin/python -m pytest -p no:cacheprovider -m "not hub_image" \
  tests/unit tests/integration tests/security tests/e2e || status=$?
echo "== the hub image's environment ($(.venv-hub/bin/python -c 'import jupyterhub, kubespawner; print("JupyterHub", jupyterhub.__version__, "KubeSpawner", kubespawner.__version__)')): login flow, Kubernetes"
# User servers come from .venv: the hub image, like the chart's, has no JupyterLab.
ENERTEF_E2E_NOTEBOOK_BIN=$ROOT/.venv/bin .venv-hub/bin/python -m pytest -p no:cacheprovider \
  -m "jupyterhub_login or hub_image" tests/e2e || status=$?
exit $status
