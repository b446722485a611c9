#!/usr/bin/env bash
# Run the single-machine workbench: install what is missing, start PostgreSQL and
# MinIO on loopback, then JupyterHub with EnerTEFAuthenticator and
# EnerTEFLocalSpawner on http://127.0.0.1:8000 (ENERTEF_HUB_URL to change it).
# The admin account is "labadmin" (ENERTEF_ADMIN_USERS): sign it up first.
# Ctrl-C stops the hub; `scripts/services.sh stop` stops the services.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ENERTEF_SKIP_JH55=${ENERTEF_SKIP_JH55:-1} scripts/bootstrap.sh
scripts/services.sh start
# shellcheck source=/dev/null
. .local/services.env
.venv/bin/enertef-hub check
echo "[workbench] open ${ENERTEF_HUB_URL:-http://127.0.0.1:8000}; sign up as ${ENERTEF_ADMIN_USERS:-labadmin} to administer" >&2
PATH="$ROOT/.venv/bin:$PATH" exec .venv/bin/jupyterhub -f scripts/jupyterhub_config.py "$@"
