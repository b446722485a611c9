"""The admins' accounts page (/hub/enertef/accounts) in Chromium, against real PostgreSQL and MinIO.

An admin logs in (and lands on the accounts page, with no server of their own),
restores one deleted account (its kept schema and bucket become the name's active
incarnation again: the person signs up anew and finds their data) and purges
another (schema and bucket gone), each through its confirmation page. A non-admin
gets 403; a logged-out visitor of the admin pages is sent to log in, then back.

Each run uses fresh names (PostgreSQL and MinIO outlive the test hub).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import psycopg
import pytest
from playwright.sync_api import expect

from tests.harness.browser import log_in, screenshot, submit_login
from tests.harness.forms import approve, form_session, login_session, signup, signup_and_approve
from tests.harness.hub import server_environment, start_server, wait_prepared
from tests.harness.names import unique_name
from tests.harness.postgres import account_states, libpq_uri, schema_exists
from tests.harness.s3 import bucket_exists, s3_client

PASSWORD = "Tr0ub4dor&3-but-longer"


def user_with_data(hub, prefix: str) -> dict[str, str]:
    """Sign up, approve, spawn; leave a table and an object behind; return the server environment."""
    name = signup_and_approve(hub, unique_name(prefix), PASSWORD)
    start_server(hub, name)
    env = server_environment(hub, name)
    with psycopg.connect(libpq_uri(env["ENERTEF_MLFLOW_BACKEND_STORE_URI"]), connect_timeout=10) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")
    s3_client(env).put_object(Bucket=env["ENERTEF_BUCKET"], Key="data/results.csv", Body=b"a,b\n1,2\n")
    env["name"] = name
    env["schema"] = urlsplit(env["ENERTEF_MLFLOW_BACKEND_STORE_URI"]).username
    return env


def test_admin_restores_one_deleted_account_and_purges_another(hub, page):
    keeper = user_with_data(hub, "keep")
    goner = user_with_data(hub, "gone")
    for env in (keeper, goner):
        # Deleted in the hub: access revoked, data kept as incarnation 1.
        assert hub.api("DELETE", f"/users/{env['name']}").status_code == 204
        assert account_states(env["name"]) == {1: "deleted"}

    # The admin logs in and lands on the accounts page: no server (and store) of their own.
    log_in(page, hub, hub.admin_name, hub.admin_password)
    page.wait_for_url(re.compile(r".*/hub/enertef/accounts$"))
    assert not hub.api("GET", f"/users/{hub.admin_name}").json()["servers"]
    expect(page.locator("#enertef-nav-accounts")).to_be_visible()
    expect(page.locator("#enertef-nav-approvals")).to_have_attribute("href", "/hub/authorize")
    expect(page.locator("#enertef-deletion-help")).to_contain_text("keeps their data")

    # The list comes a page at a time (the shared services hold thousands of accounts): search.
    page.fill("#enertef-q", keeper["name"])
    page.locator("#enertef-accounts-search button[type=submit]").click()
    page.wait_for_url(re.compile(rf".*/hub/enertef/accounts\?q={keeper['name']}&state=$"))
    expect(page.locator("#enertef-shown")).to_contain_text("1–1 of 1 account matching")
    row = page.locator(f"#account-{keeper['name']}")
    expect(row.locator(".account-state")).to_have_text("deleted, data kept")
    expect(row).to_contain_text(keeper["schema"])
    expect(row).to_contain_text(keeper["ENERTEF_BUCKET"])

    # Restore: a confirmation page first; nothing changes until its form is posted.
    row.locator("[data-action=restore]").click()
    page.wait_for_url(re.compile(rf".*/hub/enertef/accounts/{keeper['name']}/restore\?incarnation=1$"))
    expect(page.locator("#enertef-consequences")).to_contain_text(keeper["ENERTEF_BUCKET"])
    expect(page.locator("#enertef-consequences")).to_contain_text("sign up again")
    screenshot(page, "admin-restore-confirmation")
    assert account_states(keeper["name"]) == {1: "deleted"}
    page.locator("#enertef-confirm-submit").click()
    expect(page.locator("#enertef-message")).to_contain_text(f"Restored {keeper['name']}")
    expect(page.locator(f"#account-{keeper['name']} .account-state")).to_have_text("active")
    screenshot(page, "admin-accounts")
    assert account_states(keeper["name"]) == {1: "active"}

    # The person signs up again under the name, is approved, and finds the kept data.
    assert signup(hub, keeper["name"], PASSWORD).status_code == 200
    approve(hub, keeper["name"])
    start_server(hub, keeper["name"])
    back = server_environment(hub, keeper["name"])
    assert back["ENERTEF_BUCKET"] == keeper["ENERTEF_BUCKET"]
    assert back["AWS_SECRET_ACCESS_KEY"] != keeper["AWS_SECRET_ACCESS_KEY"]  # new credentials
    body = s3_client(back).get_object(Bucket=back["ENERTEF_BUCKET"], Key="data/results.csv")["Body"].read()
    assert body == b"a,b\n1,2\n"
    with psycopg.connect(libpq_uri(back["ENERTEF_MLFLOW_BACKEND_STORE_URI"]), connect_timeout=10) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("kept",)]
    assert account_states(keeper["name"]) == {1: "active"}

    # Purge: the name must be typed; a wrong one changes nothing.
    page.goto(f"{hub.url}/hub/enertef/accounts?q={goner['name']}")
    page.locator(f"#account-{goner['name']} [data-action=purge]").click()
    expect(page.locator("#enertef-consequences")).to_contain_text("deleted for good")
    page.fill("#enertef-confirm-input", "someone-else")
    page.locator("#enertef-confirm-submit").click()
    expect(page.locator("#enertef-error")).to_contain_text("Nothing was done")
    assert schema_exists(goner["schema"]) and bucket_exists(goner["ENERTEF_BUCKET"])
    page.fill("#enertef-confirm-input", goner["name"])
    page.locator("#enertef-confirm-submit").click()
    expect(page.locator("#enertef-message")).to_contain_text(f"Purged {goner['name']}")
    expect(page.locator(f"#incarnation-{goner['name']}-1")).to_have_attribute("data-state", "purged")
    assert not schema_exists(goner["schema"])
    assert not bucket_exists(goner["ENERTEF_BUCKET"])
    assert account_states(goner["name"]) == {1: "purged"}
    # The restored account was not touched by the purge.
    assert schema_exists(keeper["schema"]) and bucket_exists(keeper["ENERTEF_BUCKET"])

    # JupyterHub's own admin panel says what its "Delete user" does to the data.
    page.goto(f"{hub.url}/hub/admin")
    expect(page.locator("#enertef-deletion-note")).to_contain_text("keeps their data")
    hub.api("DELETE", f"/users/{keeper['name']}")


@pytest.mark.jupyterhub_login  # also on JupyterHub 5.5 (the hub image): login redirects and scopes
def test_non_admins_get_403_and_logged_out_visitors_log_in_first(hub, new_page):
    name = signup_and_approve(hub, unique_name("plain"), PASSWORD)

    user = new_page()
    log_in(user, hub, name, PASSWORD, next_url="/hub/home")
    user.wait_for_url(re.compile(r".*/hub/home$"))
    expect(user.locator("#enertef-nav-accounts")).to_have_count(0)
    expect(user.locator("#enertef-nav-approvals")).to_have_count(0)
    for path in ("/hub/enertef/accounts", f"/hub/enertef/accounts/{name}/rotate", "/hub/authorize"):
        assert user.goto(f"{hub.url}{path}").status == 403, path
    # JupyterHub's own admin panel too, with a sentence a person reads, not a list of scopes.
    assert user.goto(f"{hub.url}/hub/admin").status == 403
    expect(user.locator("#enertef-not-allowed")).to_contain_text("for the workbench's admins")
    assert "scopes" not in user.locator(".error").inner_text()

    # A form post of an action by a non-admin, with a valid XSRF token of their own: 403.
    session = login_session(hub, name, PASSWORD)
    session, xsrf = form_session(hub, "/hub/change-password", session=session)
    refused = session.post(f"{hub.url}/hub/enertef/accounts/{name}/rotate",
                           data={"_xsrf": xsrf, "confirm": name}, allow_redirects=False, timeout=30)
    assert refused.status_code == 403

    # The admin's own form post needs the hub's XSRF token: without it, 403 before anything
    # is looked at; with it, the action is carried out (the approval prepared a store to rotate).
    admin = hub.admin_session()
    no_token = admin.post(f"{hub.url}/hub/enertef/accounts/{name}/rotate", data={"confirm": name},
                          allow_redirects=False, timeout=30)
    assert no_token.status_code == 403
    admin, xsrf = form_session(hub, "/hub/authorize", session=admin)
    wait_prepared(hub, name)
    tried = admin.post(f"{hub.url}/hub/enertef/accounts/{name}/rotate", data={"_xsrf": xsrf, "confirm": name},
                       allow_redirects=False, timeout=30)
    assert tried.status_code == 200 and f"New credentials for {name}" in tried.text, tried.text[-1500:]

    # Logged out: the admin pages send to the login page, and back after logging in.
    visitor = new_page()
    for path in ("/hub/enertef/accounts", "/hub/authorize"):
        response = visitor.goto(f"{hub.url}{path}")
        assert response.status == 200 and "/hub/login?next=" in visitor.url, path
    submit_login(visitor, hub.admin_name, hub.admin_password)
    visitor.wait_for_url(re.compile(r".*/hub/authorize$"))
    expect(visitor.locator("h1")).to_have_text("Authorization area")
    hub.api("DELETE", f"/users/{name}")
