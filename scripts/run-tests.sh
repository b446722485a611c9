#!/usr/bin/env bash
# The test command (README, CI): set up a fresh machine, start the real services,
# and run every tier: unit, integration, e2e; then the login flow again on
# JupyterHub 5.5 (the version in the z2jh 4.4.0 hub image).
#
#   scripts/run-tests.sh                 everything
#   scripts/run-tests.sh tests/unit      only some tests (pytest arguments), on JupyterHub 6
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/bootstrap.sh
scripts/services.sh start
# shellcheck source=/dev/null
. .local/services.env

if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi

status=0
echo "== JupyterHub $(.venv/bin/python -c 'import jupyterhub; print(jupyterhub.__version__)'): unit, integration, e2e"
.venv/bin/python -m pytest -p no:cacheprovider tests/unit tests/integration tests/e2e || status=$?
echo "== JupyterHub $(.venv-jh55/bin/python -c 'import jupyterhub; print(jupyterhub.__version__)'): login flow"
.venv-jh55/bin/python -m pytest -p no:cacheprovider -m jupyterhub_login tests/e2e || status=$?
echo "== JupyterHub 5.5: the hub as z2jh boots it, and the pod manifest"
.venv-jh55/bin/python -m pytest -p no:cacheprovider tests/integration/test_z2jh_boot.py \
  tests/unit/test_kube_pod_manifest.py tests/unit/test_jupyterhub_config_d.py || status=$?
exit $status
