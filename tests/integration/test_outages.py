"""PostgreSQL or MinIO down: a clear error, nothing half-made, and recovery once they return.

These tests stop services, so they run against a private PostgreSQL and MinIO of
their own (other ports, a temporary state directory), never the shared ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from minio import Minio
from traitlets.config import Config

from enertef_hub.errors import ServiceUnavailableError
from enertef_hub.workbench import Workbench
from tests.conftest import PRIVATE_SERVICE_KEYS, private_services_env, start_services, unique_name


@pytest.fixture(scope="module")
def private_services():
    # Not under pytest's tmp_path: that is private to root, and PostgreSQL runs as postgres.
    state = Path(tempfile.mkdtemp(prefix="enertef-outage-", dir="/var/tmp"))
    os.chmod(state, 0o755)
    private_env = private_services_env(state)
    # The private ports and state directory stay in the environment, to restart the pair.
    env = {**start_services(private_env), **private_env}
    yield env
    subprocess.run([os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "services.sh"), "stop"],
                   env={**os.environ, **private_env}, check=False)
    shutil.rmtree(state, ignore_errors=True)


@pytest_asyncio.fixture
async def workbench(private_services):
    env = private_services
    config = Config()
    config.PostgresProvisioner.admin_url = env["ENERTEF_POSTGRES_ADMIN_URL"]
    config.PostgresProvisioner.connect_timeout = 2.0
    config.MinioProvisioner.endpoint = env["ENERTEF_MINIO_ENDPOINT"]
    config.MinioProvisioner.access_key = env["ENERTEF_MINIO_ACCESS_KEY"]
    config.MinioProvisioner.secret_key = env["ENERTEF_MINIO_SECRET_KEY"]
    config.MinioProvisioner.timeout = 2.0
    config.Workbench.secret_key = env["ENERTEF_SECRET_KEY"]
    wb = Workbench(config=config)
    yield wb
    await wb.close()


def pg_ctl(env, action: str):
    cmd = [f"{env['ENERTEF_PG_BIN']}/pg_ctl", "-D", env["ENERTEF_PG_DATA"], "-w", "-m", "fast", action]
    if action == "start":
        cmd += ["-l", f"{env['ENERTEF_PG_DATA']}/server.log"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, capture_output=True)


def minio_signal(env, sig):
    with open(env["ENERTEF_MINIO_PID_FILE"]) as f:
        os.kill(int(f.read()), sig)


def what_exists(env, username: str) -> dict:
    """Every trace of ``username`` in PostgreSQL and MinIO, seen as the admins."""
    with psycopg.connect(env["ENERTEF_POSTGRES_ADMIN_URL"], autocommit=True) as conn:
        roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"u_{username}%",)).fetchall()
        schemas = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"u_{username}%",)).fetchall()
        accounts = conn.execute("SELECT count(*) FROM enertef.accounts WHERE username = %s", (username,)).fetchone()[0]
    s3 = Minio(env["ENERTEF_MINIO_ENDPOINT"].split("//")[1], env["ENERTEF_MINIO_ACCESS_KEY"],
               env["ENERTEF_MINIO_SECRET_KEY"], secure=False)
    buckets = [b.name for b in s3.list_buckets() if b.name.startswith(f"user-{username}")]
    from minio import MinioAdmin
    from minio.credentials import StaticProvider

    admin = MinioAdmin(endpoint=env["ENERTEF_MINIO_ENDPOINT"].split("//")[1], secure=False,
                       credentials=StaticProvider(env["ENERTEF_MINIO_ACCESS_KEY"], env["ENERTEF_MINIO_SECRET_KEY"]))
    try:
        admin.user_info(f"user-{username}")
        users = [f"user-{username}"]
    except Exception:
        users = []
    return {"roles": roles, "schemas": schemas, "accounts": accounts, "buckets": buckets, "users": users}


NOTHING = {"roles": [], "schemas": [], "accounts": 0, "buckets": [], "users": []}


async def test_postgres_down_gives_clear_error_and_creates_nothing(workbench, private_services):
    env = private_services
    await workbench.provision(unique_name("warm"))  # the pool is open and warm
    name = unique_name("dbdown")
    pg_ctl(env, "stop")
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as err:
            await workbench.provision(name)
        assert time.monotonic() - started < 15
        message = str(err.value)
        assert "PostgreSQL" in message and "unreachable" in message and "start your server again" in message
        assert env["ENERTEF_POSTGRES_ADMIN_URL"].split("@")[0] not in message  # no credentials
    finally:
        pg_ctl(env, "start")
    assert what_exists(env, name) == NOTHING
    result = await workbench.provision(name)  # the pool recovers by itself
    assert result.created
    assert what_exists(env, name)["roles"] == [(f"u_{name}",)]


async def test_minio_down_gives_clear_error_and_rolls_back_the_database(workbench, private_services):
    env = private_services
    name = unique_name("miniodown")
    minio_signal(env, signal.SIGSTOP)  # frozen: connections hang, as with a dead host
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as err:
            await workbench.provision(name)
        assert time.monotonic() - started < 30
        assert "MinIO" in str(err.value) and "unreachable" in str(err.value)
    finally:
        minio_signal(env, signal.SIGCONT)
    assert what_exists(env, name) == NOTHING

    minio_signal(env, signal.SIGTERM)  # stopped: connections refused
    time.sleep(1)
    try:
        with pytest.raises(ServiceUnavailableError, match="MinIO"):
            await workbench.provision(name)
    finally:
        start_services({key: env[key] for key in PRIVATE_SERVICE_KEYS})
    assert what_exists(env, name) == NOTHING
    result = await workbench.provision(name)
    assert result.created
    found = what_exists(env, name)
    assert found["buckets"] == [f"user-{name}"] and found["users"] == [f"user-{name}"]
