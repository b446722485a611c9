"""Shared fixtures: the real services integration and e2e tests run against.

Services are started with ``scripts/services.sh start`` (idempotent) when the
``ENERTEF_*`` variables are not already set. If they cannot be started the tests
fail: nothing here ever skips for lack of a service.
"""

from __future__ import annotations

import os
import random
import string
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def load_env_file(path: Path) -> dict[str, str]:
    """Parse the ``export NAME=value`` lines written by scripts/services.sh."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env[key] = value
    return env


def start_services(state_dir: Path | None = None, pg_port: int | None = None, minio_port: int | None = None) -> dict[str, str]:
    """Start PostgreSQL and MinIO (or reuse running ones); return their environment."""
    env = dict(os.environ)
    if state_dir is not None:
        env.update(ENERTEF_STATE_DIR=str(state_dir), ENERTEF_PG_PORT=str(pg_port),
                   ENERTEF_MINIO_PORT=str(minio_port), ENERTEF_MINIO_CONSOLE_PORT=str(minio_port + 1))
    proc = subprocess.run([str(REPO / "scripts" / "services.sh"), "start"], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"could not start PostgreSQL/MinIO:\n{proc.stderr[-3000:]}", pytrace=False)
    return load_env_file((state_dir or REPO / ".local") / "services.env")


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    """The ``ENERTEF_*`` environment of running PostgreSQL and MinIO, also set in ``os.environ``."""
    if not os.environ.get("ENERTEF_POSTGRES_ADMIN_URL"):
        os.environ.update(start_services())
    return {k: v for k, v in os.environ.items() if k.startswith("ENERTEF_")}


def unique_name(prefix: str) -> str:
    """A fresh valid username (letters and digits) so tests never share accounts."""
    return prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
