#!/usr/bin/env bash
# Run MLflow's own tracking-store tests against a user's store made by MLflow (a) and
# one made by our replayed recording (b), each connected as the store's own role, and
# fail if (b) fails a test that (a) passes (issue 13). See tests/mlflow_store_suite.py.
#
#   scripts/check-mlflow-store-tests.sh /path/to/mlflow-checkout [TESTS...] [--pytest-args ...]
#
# The checkout must be MLflow's source at the release in .venv (the tests are in
# neither its wheel nor its sdist on PyPI, so this cannot fetch them itself).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 MLFLOW_SOURCE_DIR [TESTS...] [--pytest-args ...]" >&2; exit 2; }
source_dir=$1; shift
scripts/services.sh start >/dev/null
. .local/services.env
exec .venv/bin/python -m tests.mlflow_store_suite --mlflow-source "$source_dir" "$@"
