"""What a user sees while the workbench is prepared: progress messages, and a plain-words
error (with nothing half-made) when a service is down.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.harness.forms import login_session, signup_and_approve
from tests.harness.hub import running_hub, spawn_and_follow
from tests.harness.names import unique_name


def test_spawn_page_shows_each_provisioning_step(hub):
    name = signup_and_approve(hub, unique_name("paula"), "correct horse battery 7")
    events = spawn_and_follow(hub, name)
    messages = [e.get("message", "") for e in events]
    assert events[-1].get("ready"), messages
    assert any("Preparing your MLflow store" in m for m in messages)
    assert any(f"u_{name}" in m and f"user-{name}" in m and "ready" in m for m in messages)
    assert any("Starting your server" in m for m in messages)
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress)


@pytest.fixture(scope="module")
def hub_without_minio(services_env):
    """A hub whose MinIO endpoint answers nothing (as when MinIO is down)."""
    state_dir = Path(tempfile.mkdtemp(prefix="enertef-e2e-nominio-", dir="/var/tmp"))
    with running_hub(services_env, state_dir, {"ENERTEF_MINIO_ENDPOINT": "http://127.0.0.1:9"}) as hub:
        yield hub


def test_storage_down_gives_a_plain_error_and_creates_nothing(hub_without_minio, services_env):
    hub = hub_without_minio
    name = signup_and_approve(hub, unique_name("quinn"), "correct horse battery 8")
    events = spawn_and_follow(hub, name)
    final = events[-1]
    assert final.get("failed"), events
    message = " ".join(e.get("message", "") for e in events)
    assert "MinIO" in message and "unreachable" in message and "start your server again" in message
    assert services_env["ENERTEF_MINIO_SECRET_KEY"] not in message
    # A user who opens (or reloads) the spawn page once the spawn has failed gets
    # JupyterHub's "Spawn failed" page: it says why too, not only that it failed.
    page = login_session(hub, name, "correct horse battery 8").get(f"{hub.url}/hub/spawn-pending/{name}")
    assert page.status_code == 500 and "Spawn failed" in page.text, page.text[-2000:]
    assert "Could not prepare your workbench" in page.text and "MinIO" in page.text and "unreachable" in page.text
    assert services_env["ENERTEF_MINIO_SECRET_KEY"] not in page.text
    with psycopg.connect(services_env["ENERTEF_POSTGRES_ADMIN_URL"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (f"u_{name}",)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM enertef.accounts WHERE username = %s", (name,)).fetchone()[0] == 0
    # The hub itself is fine: the user can try again once MinIO is back.
    assert hub.api("GET", f"/users/{name}").json()["servers"] == {}
