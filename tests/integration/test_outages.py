"""PostgreSQL or MinIO down: a clear error, nothing half-made, and recovery once they return.

These tests stop services, so they run against a private PostgreSQL and MinIO of
their own (other ports, a temporary state directory), never the shared ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psycopg
import pytest
import pytest_asyncio
from minio import Minio

from enertef_hub.errors import ServiceUnavailableError
from tests.harness.names import unique_name
from tests.harness.s3 import minio_admin
from tests.harness.services import PRIVATE_SERVICE_KEYS, private_services, start_services
from tests.harness.workbench import open_workbench


@pytest.fixture(scope="module")
def own_services():
    # The private ports and state directory stay in the environment, to restart the pair.
    with private_services("enertef-outage-") as env:
        yield env


@pytest_asyncio.fixture
async def workbench(own_services):
    async with open_workbench(own_services, timeout=2.0) as wb:
        yield wb


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
    admin = minio_admin(env)
    try:
        admin.user_info(f"user-{username}")
        users = [f"user-{username}"]
    except Exception:
        users = []
    return {"roles": roles, "schemas": schemas, "accounts": accounts, "buckets": buckets, "users": users}


NOTHING = {"roles": [], "schemas": [], "accounts": 0, "buckets": [], "users": []}


async def test_postgres_down_gives_clear_error_and_creates_nothing(workbench, own_services):
    env = own_services
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


async def test_minio_down_gives_clear_error_and_rolls_back_the_database(workbench, own_services):
    env = own_services
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
