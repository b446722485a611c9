"""A user's life through the Hub, in a real browser, against real PostgreSQL and MinIO.

Sign up → told to wait for approval → the admin approves on /hub/authorize → log in
and spawn: the server has the contract environment and its credentials work →
the admin deletes the user: the credentials stop working at once, the data stays →
a new sign-up under the same name gets a new, empty incarnation.

Each run uses fresh names (PostgreSQL and MinIO outlive the test hub).
"""

from __future__ import annotations

import os
import re
import time
from urllib.parse import urlsplit

import psycopg
import pytest
from botocore.exceptions import ClientError
from playwright.sync_api import expect
from psycopg import sql

from tests.harness.browser import delete_in_admin_panel, log_in, sign_up
from tests.harness.forms import approve, form_session, login_session, signup, signup_and_approve
from tests.harness.hub import events_for, server_environment, start_server
from tests.harness.names import unique_name
from tests.harness.postgres import libpq_uri
from tests.harness.s3 import admin_s3, s3_client

pytestmark = pytest.mark.jupyterhub_login

CONTRACT_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "ENERTEF_MLFLOW_BACKEND_STORE_URI",
    "ENERTEF_MLFLOW_ARTIFACT_ROOT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "ENERTEF_BUCKET",
    "ENERTEF_TEAMS",
)
PASSWORD = "Tr0ub4dor&3-but-longer"
REFUSED_S3 = {"InvalidAccessKeyId", "AccessDenied", "SignatureDoesNotMatch"}


def schema_of(env: dict[str, str]) -> str:
    # The role is the user name in the URI; its schema carries the same name.
    return urlsplit(env["ENERTEF_MLFLOW_BACKEND_STORE_URI"]).username


def test_signup_waits_for_approval_then_user_logs_in_and_spawns(hub, new_page):
    typed = unique_name("Alice")  # typed with a capital: names are case-insensitive
    name = typed.lower()
    user = new_page()

    # 1. Sign up in the browser: told to wait for an admin.
    sign_up(user, hub, typed, PASSWORD)
    expect(user.locator(".alert")).to_contain_text("waiting for approval")
    expect(user.locator(".alert")).to_contain_text(f"'{name}'")

    # 2. Logging in before approval is refused with the same explanation, no server.
    log_in(user, hub, typed, PASSWORD)
    expect(user.locator(".login_error")).to_contain_text("waiting for approval")
    assert "/hub/login" in user.url
    assert hub.api("GET", f"/users/{name}").status_code == 404

    # 3. The admin approves on /hub/authorize.
    admin = new_page()
    # (straight to the approval page: no server for the admin)
    log_in(admin, hub, hub.admin_name, hub.admin_password, next_url="/hub/authorize")
    admin.wait_for_url(re.compile(r".*/hub/authorize$"))
    row = admin.locator(f"tr#{name}")
    expect(row).to_contain_text("No")
    row.get_by_role("button", name="Authorize", exact=True).click()
    expect(admin.locator(f"tr#{name}")).to_contain_text("Yes")

    # 4. The user logs in (any case) and the hub spawns the server.
    log_in(user, hub, name.upper(), PASSWORD)
    user.wait_for_url(re.compile(rf".*/user/{name}/.*"), timeout=240_000)
    model = hub.api("GET", f"/users/{name}").json()
    assert model["servers"][""]["ready"]

    env = server_environment(hub, name)
    missing = [key for key in CONTRACT_VARIABLES if key not in env]
    assert not missing, f"server environment lacks {missing}"
    assert env["MLFLOW_TRACKING_URI"] == env["ENERTEF_MLFLOW_BACKEND_STORE_URI"]
    assert env["MLFLOW_TRACKING_URI"].startswith("postgresql+psycopg://")
    assert env["ENERTEF_MLFLOW_ARTIFACT_ROOT"] == f"s3://{env['ENERTEF_BUCKET']}/mlflow"
    assert name in env["ENERTEF_BUCKET"]
    # Never an admin credential in a user's server.
    admin_secrets = [
        os.environ["ENERTEF_MINIO_SECRET_KEY"],
        urlsplit(os.environ["ENERTEF_POSTGRES_ADMIN_URL"]).password,
        os.environ["ENERTEF_SECRET_KEY"],
    ]
    for key, value in env.items():
        assert not key.startswith(("ENERTEF_POSTGRES_ADMIN", "ENERTEF_MINIO_", "ENERTEF_SECRET"))
        for secret in admin_secrets:
            assert secret not in value, f"an admin secret leaked into {key}"

    kinds = [event["event"] for event in events_for(hub, name)]
    assert "signup" in kinds and "approved" in kinds


def test_deleted_user_loses_access_keeps_data_and_a_new_signup_starts_empty(hub, page):
    name = unique_name("alice")
    signup_and_approve(hub, name, PASSWORD)
    start_server(hub, name)
    env = server_environment(hub, name)

    # Her credentials work, and she leaves data behind.
    with psycopg.connect(libpq_uri(env["ENERTEF_MLFLOW_BACKEND_STORE_URI"]), connect_timeout=10) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")
    s3 = s3_client(env)
    s3.put_object(Bucket=env["ENERTEF_BUCKET"], Key="data/results.csv", Body=b"a,b\n1,2\n")
    assert s3.list_objects_v2(Bucket=env["ENERTEF_BUCKET"])["KeyCount"] == 1

    # The admin deletes her in the admin panel (her server is running).
    delete_in_admin_panel(page, hub, name)
    for _ in range(60):
        if hub.api("GET", f"/users/{name}").status_code == 404:
            break
        time.sleep(0.5)
    assert hub.api("GET", f"/users/{name}").status_code == 404

    # Access is gone at once ...
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(libpq_uri(env["ENERTEF_MLFLOW_BACKEND_STORE_URI"]), connect_timeout=10)
    with pytest.raises(ClientError) as refused:
        s3_client(env).list_objects_v2(Bucket=env["ENERTEF_BUCKET"])
    assert refused.value.response["Error"]["Code"] in REFUSED_S3
    # ... and so is her hub login.
    session, xsrf = form_session(hub, "/hub/login")
    login = session.post(f"{hub.url}/hub/login", allow_redirects=False,
                         data={"_xsrf": xsrf, "username": name, "password": PASSWORD})
    assert login.status_code == 403

    # ... the data is still there (seen as the admin).
    old_schema = schema_of(env)
    with psycopg.connect(os.environ["ENERTEF_POSTGRES_ADMIN_URL"]) as admin:
        assert admin.execute(
            # pg_namespace: information_schema shows only schemas of roles the admin is a member of
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (old_schema,)
        ).fetchone()[0] == 1
    keys = [o["Key"] for o in admin_s3().list_objects_v2(Bucket=env["ENERTEF_BUCKET"]).get("Contents", [])]
    assert "data/results.csv" in keys

    kinds = [event["event"] for event in events_for(hub, name)]
    assert "user-deleted" in kinds and "deprovisioned" in kinds
    # the hub's access log names who deleted her
    assert re.search(rf"204 DELETE /hub/api/users/{name}\S* \({hub.admin_name}@", hub.log_text())

    # A new sign-up with the same name is a new account, waiting for approval again ...
    again = signup(hub, name, PASSWORD)
    assert again.status_code == 200 and "waiting for approval" in again.text
    approve(hub, name)
    start_server(hub, name)
    new_env = server_environment(hub, name)

    # ... with a different, empty store and bucket, and no way into the old ones.
    assert new_env["ENERTEF_BUCKET"] != env["ENERTEF_BUCKET"]
    assert schema_of(new_env) != old_schema
    new_s3 = s3_client(new_env)
    assert new_s3.list_objects_v2(Bucket=new_env["ENERTEF_BUCKET"])["KeyCount"] == 0
    with pytest.raises(ClientError) as refused:
        new_s3.list_objects_v2(Bucket=env["ENERTEF_BUCKET"])
    assert refused.value.response["Error"]["Code"] in REFUSED_S3
    with psycopg.connect(libpq_uri(new_env["ENERTEF_MLFLOW_BACKEND_STORE_URI"]), connect_timeout=10) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT * FROM {}.notes").format(sql.Identifier(old_schema)))

    assert hub.api("DELETE", f"/users/{name}").status_code == 204


def test_withdrawn_approval_ends_the_users_session(hub):
    name = unique_name("carol")
    signup_and_approve(hub, name, PASSWORD)
    session = login_session(hub, name, PASSWORD)
    assert session.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30).status_code == 200

    approve(hub, name)  # the same button again: withdraws the approval
    time.sleep(3)  # hub_config.py: auth_refresh_age = 2
    home = session.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30)
    assert home.status_code == 302 and "/hub/login" in home.headers["Location"]
    kinds = [event["event"] for event in events_for(hub, name)]
    assert "approval-withdrawn" in kinds
    hub.api("DELETE", f"/users/{name}")
