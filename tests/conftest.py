"""Shared fixtures: the real services integration and e2e tests run against.

Services are started with ``scripts/services.sh start`` (idempotent) when the
``ENERTEF_*`` variables are not already set. If they cannot be started the tests
fail: nothing here ever skips for lack of a service.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
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


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PRIVATE_SERVICE_KEYS = ("ENERTEF_STATE_DIR", "ENERTEF_PG_PORT", "ENERTEF_MINIO_PORT", "ENERTEF_MINIO_CONSOLE_PORT")


def private_services_env(state_dir: Path) -> dict[str, str]:
    """Environment for scripts/services.sh that puts a private PostgreSQL and MinIO in ``state_dir``.

    Every port is chosen free at run time, so a service another program holds is never hit.
    """
    return {"ENERTEF_STATE_DIR": str(state_dir), "ENERTEF_PG_PORT": str(free_port()),
            "ENERTEF_MINIO_PORT": str(free_port()), "ENERTEF_MINIO_CONSOLE_PORT": str(free_port())}


def start_services(private_env: dict[str, str] | None = None) -> dict[str, str]:
    """Start PostgreSQL and MinIO (or reuse running ones); return their environment.

    ``private_env`` (from :func:`private_services_env`) starts a private pair instead of
    the shared one in the checkout's ``.local``.
    """
    env = {**os.environ, **(private_env or {})}
    proc = subprocess.run([str(REPO / "scripts" / "services.sh"), "start"], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"could not start PostgreSQL/MinIO:\n{proc.stderr[-3000:]}", pytrace=False)
    state_dir = Path(private_env["ENERTEF_STATE_DIR"]) if private_env else REPO / ".local"
    return load_env_file(state_dir / "services.env")


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    """The ``ENERTEF_*`` environment of running PostgreSQL and MinIO, also set in ``os.environ``."""
    if not os.environ.get("ENERTEF_POSTGRES_ADMIN_URL"):
        os.environ.update(start_services())
    return {k: v for k, v in os.environ.items() if k.startswith("ENERTEF_")}


@contextlib.contextmanager
def acting_as(conn, role: str):
    """The hub's admin connection ``conn`` (autocommit) acting as store role ``role`` for the block.

    The admin role is not a member of any store role between operations (issue 13),
    so, as the hub does, it is granted ``role`` inside one transaction and revoked
    before it commits; on an exception the rollback takes the grant back.
    """
    from psycopg import sql

    with conn.transaction():
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        yield conn
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(sql.Identifier(role)))


def unique_name(prefix: str) -> str:
    """A fresh valid username (letters and digits) so tests never share accounts."""
    return prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
