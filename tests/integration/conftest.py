"""Integration tests: real PostgreSQL, MinIO and MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import psycopg
import pytest
import pytest_asyncio

from enertef_hub.workbench import Workbench


@pytest.fixture(scope="session", autouse=True)
def _services(services):
    return services


@pytest_asyncio.fixture(scope="session")
async def workbench(services):
    """A Workbench configured from the environment, as the hub's would be."""
    Workbench.clear_instance()
    wb = Workbench.instance()
    yield wb
    await wb.close()
    Workbench.clear_instance()


@pytest.fixture(scope="session")
def admin_conn(services):
    """A synchronous admin connection to the MLflow database, for assertions."""
    with psycopg.connect(services["ENERTEF_POSTGRES_ADMIN_URL"], autocommit=True) as conn:
        yield conn


def run_as_user(environment: dict[str, str], code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter with only a user's server environment.

    Nothing of the test process leaks in: this is what a kernel in the user's server sees.
    """
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    env.update(environment)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tempfile.mkdtemp(),
                          capture_output=True, text=True, timeout=timeout)
