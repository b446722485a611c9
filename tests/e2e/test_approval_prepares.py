"""Approval prepares the workbench before the first spawn; withdrawal and deletion stop it.

Against the real hub, PostgreSQL and MinIO: an admin's approval on /hub/authorize
makes the user's store (with MLflow's tables), bucket and credentials in the
background, so the first spawn only checks them. Taking the approval back at once,
or deleting the user, must leave no access behind, whatever the preparation had
done by then.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

from tests.harness.forms import approve, form_session, signup
from tests.harness.hub import events_for, run_coroutine, running_hub, start_server, wait_prepared
from tests.harness.names import unique_name
from tests.harness.s3 import admin_s3

pytestmark = pytest.mark.jupyterhub_login

SLOW_PREPARATION = Path(__file__).with_name("slow_preparation_config.py")


@pytest.fixture(scope="module")
def slow_hub(services_env, tmp_path_factory):
    """A hub whose preparations start 1.5 s after the approval: a withdrawal or deletion
    made at once surely lands while one runs."""
    with running_hub(services_env, tmp_path_factory.mktemp("slowprep"),
                     {"ENERTEF_E2E_EXTRA_CONFIG": str(SLOW_PREPARATION)}) as hub:
        yield hub

PASSWORD = "Tr0ub4dor&3-but-longer"


def store_facts(name: str) -> dict:
    """What exists of ``name``'s first incarnation in PostgreSQL (as the hub's admin sees it)."""
    schema = f"u_{name}"
    with psycopg.connect(os.environ["ENERTEF_POSTGRES_ADMIN_URL"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT rolcanlogin FROM pg_roles WHERE rolname = %(s)s),"
            " EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            "         WHERE n.nspname = %(s)s AND c.relname = 'alembic_version')",
            {"s": schema}).fetchone()
    return {"can_login": row[0], "mlflow_tables": row[1]}


def minio_user_status(name: str) -> str:
    """``enabled``, ``disabled`` or ``absent``: the MinIO user of ``name``'s first incarnation."""
    from enertef_hub.naming import make_user_resources
    from enertef_hub.provisioners.minio import MinioProvisioner

    state = run_coroutine(MinioProvisioner().user_state(make_user_resources(name, 1)))
    return state["minio_user_status"]


def events(hub, event: str, name: str) -> list[dict]:
    return [e for e in events_for(hub, name) if e["event"] == event]


def assert_no_access_now_and_later(hub, name: str):
    """No database login and no enabled MinIO user for ``name``, now and once the
    preparation would have ended; and no preparation completed."""
    def no_access():
        return store_facts(name)["can_login"] in (None, False) and minio_user_status(name) != "enabled"

    assert no_access()
    time.sleep(3)  # the preparation would have ended by now: nothing brings access back
    assert no_access()
    assert not events(hub, "prepared", name)


def test_approval_prepares_store_bucket_and_tables_before_the_first_spawn(hub):
    name = unique_name("prep")
    assert signup(hub, name, PASSWORD).status_code == 200
    assert store_facts(name) == {"can_login": None, "mlflow_tables": False}  # nothing before approval

    approve(hub, name)
    wait_prepared(hub, name)
    assert store_facts(name) == {"can_login": True, "mlflow_tables": True}
    assert f"user-{name}" in {b["Name"] for b in admin_s3().list_buckets()["Buckets"]}
    assert events(hub, "prepared", name)[0]["actor"] == hub.admin_name

    # The first spawn finds everything ready: nothing is provisioned a second time.
    start_server(hub, name)
    assert len(events(hub, "provisioned", name)) == 1


def test_withdrawing_at_once_leaves_no_access_whatever_the_preparation_did(slow_hub):
    hub = slow_hub
    name = unique_name("prepw")
    assert signup(hub, name, PASSWORD).status_code == 200
    admin, xsrf = form_session(hub, "/hub/authorize", session=hub.admin_session())
    for _ in range(2):  # approve, then withdraw straight away, while the preparation runs
        response = admin.post(f"{hub.url}/hub/authorize/{name}", data={"_xsrf": xsrf},
                              allow_redirects=False, timeout=60)
        assert response.status_code == 302, response.text[-1500:]
    assert_no_access_now_and_later(hub, name)


def test_deleting_at_once_leaves_no_access_whatever_the_preparation_did(slow_hub):
    hub = slow_hub
    name = unique_name("prepd")
    assert signup(hub, name, PASSWORD).status_code == 200
    hub.api("POST", f"/users/{name}").raise_for_status()
    approve(hub, name)  # the preparation starts...
    assert hub.api("DELETE", f"/users/{name}").status_code == 204  # ...and the admin deletes the user at once
    assert_no_access_now_and_later(hub, name)
