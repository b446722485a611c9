#!/usr/bin/env bash
# Run the single-machine workbench: install what is missing, start PostgreSQL and
# MinIO on loopback, then JupyterHub with EnerTEFAuthenticator and
# EnerTEFLocalSpawner on http://localhost:8000, each user's server on
# http://<name>.localhost:8000 (ENERTEF_HUB_URL to change it; see docs/single-machine.md).
# The admin account is "labadmin" (ENERTEF_ADMIN_USERS): its password is generated
# once into $ENERTEF_STATE_DIR/admin-password (mode 600) and printed the first time.
# Ctrl-C stops the hub; `scripts/services.sh stop` stops the services.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ENERTEF_SKIP_TEST_ENVS=${ENERTEF_SKIP_TEST_ENVS:-1} scripts/bootstrap.sh
scripts/services.sh start
# shellcheck source=/dev/null
. .local/services.env
.venv/bin/enertef-hub check
# The admin account is made by the hub at start from this password (never by a sign-up,
# which anyone could race): generated once, readable by this account only.
STATE=${ENERTEF_STATE_DIR:-$ROOT/.local}
ADMIN_PASSWORD_FILE=$STATE/admin-password
ADMIN=${ENERTEF_ADMIN_USERS:-labadmin}
ADMIN=${ADMIN%%,*}
URL=${ENERTEF_HUB_URL:-http://localhost:8000}
if [ ! -s "$ADMIN_PASSWORD_FILE" ]; then
  (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(15))' > "$ADMIN_PASSWORD_FILE.tmp" \
    && mv "$ADMIN_PASSWORD_FILE.tmp" "$ADMIN_PASSWORD_FILE")
  echo "[workbench] open $URL and log in as $ADMIN with password: $(cat "$ADMIN_PASSWORD_FILE")" >&2
  echo "[workbench] (shown once; kept in $ADMIN_PASSWORD_FILE, mode 600; change it at $URL/hub/change-password)" >&2
else
  echo "[workbench] open $URL and log in as $ADMIN (first password: $ADMIN_PASSWORD_FILE)" >&2
fi
chmod 600 "$ADMIN_PASSWORD_FILE"
ENERTEF_HUB_ADMIN_PASSWORD=$(cat "$ADMIN_PASSWORD_FILE")
export ENERTEF_HUB_ADMIN_PASSWORD
PATH="$ROOT/.venv/bin:$PATH" exec .venv/bin/jupyterhub -f scripts/jupyterhub_config.py "$@"
