"""The real PostgreSQL and MinIO the tests run against (``scripts/services.sh``).

:func:`start_services` starts the shared pair in the checkout's ``.local`` (or reuses it);
:func:`private_services` starts a pair of its own on free ports, for tests and
benchmarks that stop services or fill them. A service that cannot start is a
failure: nothing here ever skips for lack of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

from . import REPO

SERVICES_SH = REPO / "scripts" / "services.sh"
#: What tells scripts/services.sh where a private pair lives (see :func:`private_services_env`).
PRIVATE_SERVICE_KEYS = ("ENERTEF_STATE_DIR", "ENERTEF_PG_PORT", "ENERTEF_MINIO_PORT", "ENERTEF_MINIO_CONSOLE_PORT")


def require_root(needs: str) -> None:
    """Go on only as root: fail in CI (which runs as root), skip on a developer's machine.

    ``needs``: what needs root, for the message ("system accounts need root").
    """
    import pytest

    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{needs}, and CI runs as root")
        pytest.skip(f"{needs} (CI runs it)")


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
    proc = subprocess.run([str(SERVICES_SH), "start"], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        import pytest  # a benchmark that gets here fails the same way (pytest is in .venv)

        pytest.fail(f"could not start PostgreSQL/MinIO:\n{proc.stderr[-3000:]}", pytrace=False)
    state_dir = Path(private_env["ENERTEF_STATE_DIR"]) if private_env else REPO / ".local"
    return load_env_file(state_dir / "services.env")


def stop_services(private_env: dict[str, str]) -> None:
    """Stop a private pair started with ``private_env`` (never the shared one: it has no such env)."""
    subprocess.run([str(SERVICES_SH), "stop"], env={**os.environ, **private_env}, capture_output=True, check=False)


@contextlib.contextmanager
def private_services(prefix: str = "enertef-private-") -> Iterator[dict[str, str]]:
    """A private PostgreSQL and MinIO for the block, stopped and removed after it.

    Yields their ``ENERTEF_*`` environment with the :data:`PRIVATE_SERVICE_KEYS`, so
    ``start_services({k: env[k] for k in PRIVATE_SERVICE_KEYS})`` restarts the same pair.
    """
    # Not under pytest's tmp_path: that is private to root, and PostgreSQL runs as postgres.
    state = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(state, 0o755)
    private_env = private_services_env(state)
    try:
        yield {**start_services(private_env), **private_env}
    finally:
        stop_services(private_env)
        shutil.rmtree(state, ignore_errors=True)


def run_as_user(environment: dict[str, str], code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter with only a user's server environment.

    Nothing of the test process leaks in: this is what a kernel in the user's server sees.
    """
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    env.update(environment)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tempfile.mkdtemp(),
                          capture_output=True, text=True, timeout=timeout)
