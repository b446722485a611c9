#!/usr/bin/env bash
# Install everything enertef-hub needs on a fresh Debian 12 machine (idempotent):
# Debian packages (PostgreSQL 15, Chromium, shellcheck), configurable-http-proxy
# from npm, the Python environments, and the MinIO server binary (built once from
# its Go module and cached outside the clone).
#
#   scripts/bootstrap.sh          everything (workbench and tests)
#   ENERTEF_SKIP_JH55=1 ...       skip the JupyterHub 5.5 test environment
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[bootstrap] %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# -- Debian packages --------------------------------------------------------
need_apt=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
command -v curl >/dev/null || need_apt+=(curl)
command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || need_apt+=(golang-go)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian starts its own cluster on 5432; ours runs on its own port and data dir.
export PATH="$PATH:/usr/local/go/bin"

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
install_venv .venv
if [ -z "${ENERTEF_SKIP_JH55:-}" ]; then
  # The z2jh 4.4.0 hub image runs JupyterHub 5.5: the login flow is tested on it too.
  install_venv .venv-jh55 "jupyterhub==5.5.0"
fi

# -- MinIO ---------------------------------------------------------------------------
scripts/build-minio.sh >/dev/null
log "ready"
