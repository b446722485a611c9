"""Issue 11 through a real JupyterHub: withdrawn approval and deletion end everything the user held.

Uses the hub harness (tests.harness.hub): real hub, proxy, PostgreSQL and MinIO. The
deletion test runs the production single-machine mode (hub as root, a system account
per user).
"""

from __future__ import annotations

import pwd
import re
import subprocess

import psycopg
import pytest
import requests

from enertef_hub import sysaccounts
from tests.harness.forms import approve, login_session, signup_and_approve
from tests.harness.hub import running_system_users_hub, server_environment, start_server
from tests.harness.names import unique_name
from tests.harness.postgres import connect_as
from tests.harness.wait import wait_for

PASSWORD = "correct horse battery staple 11"


def test_withdrawn_approval_ends_tokens_server_and_store_access(hub):
    name = signup_and_approve(hub, unique_name("alice"), PASSWORD)
    start_server(hub, name)
    env = server_environment(hub, name)
    with connect_as(env) as conn:
        conn.execute("CREATE TABLE notes (v text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")
    # A personal token, made on the hub's token page as the user would.
    session = login_session(hub, name, PASSWORD)
    page = session.get(f"{hub.url}/hub/token", timeout=30).text
    xsrf = re.search(r'xsrf_token:\s*"([^"]+)"', page).group(1)
    made = session.post(f"{hub.url}/hub/api/users/{name}/tokens", json={"note": "personal", "expires_in": 86400},
                        headers={"X-XSRFToken": xsrf}, timeout=30)
    assert made.status_code == 201, made.text
    token = made.json()["token"]

    def as_alice(method, path):
        return requests.request(method, f"{hub.url}/hub/api{path}", headers={"Authorization": f"token {token}"},
                                timeout=30)

    assert as_alice("GET", "/user").status_code == 200

    approve(hub, name)  # the same form post toggles: approval withdrawn

    # Every hub token is gone at once (not at the next auth refresh), the server is stopped.
    assert hub.api("GET", f"/users/{name}/tokens").json()["api_tokens"] == []
    assert as_alice("GET", "/user").status_code == 403
    assert as_alice("POST", f"/users/{name}/server").status_code == 403
    assert not hub.api("GET", f"/users/{name}").json()["servers"]
    # The credentials in the server's environment no longer open the store.
    with pytest.raises(psycopg.OperationalError):
        connect_as(env)
    # Not even an admin can start the server while the user is unapproved.
    hub.api("POST", f"/users/{name}/server")
    wait_for(lambda: not hub.api("GET", f"/users/{name}").json().get("pending"), what="refused spawn")
    assert not hub.api("GET", f"/users/{name}").json()["servers"]
    assert "not approved" in hub.log_text()

    approve(hub, name)  # approved again: the same data, with new credentials
    start_server(hub, name)
    again = server_environment(hub, name)
    assert again["AWS_SECRET_ACCESS_KEY"] != env["AWS_SECRET_ACCESS_KEY"]
    with connect_as(again) as conn:
        assert conn.execute("SELECT v FROM notes").fetchall() == [("kept",)]


@pytest.fixture(scope="module")
def system_hub(services_env):
    with running_system_users_hub(services_env, "enertef-sec-sysusers-") as running:
        yield running


def test_deletion_ends_detached_processes_and_the_name_starts_again(system_hub):
    name = signup_and_approve(system_hub, unique_name("alice"), PASSWORD)
    start_server(system_hub, name)
    account = pwd.getpwnam(f"jupyter-{name}")
    # What a user can leave behind: a process that left the server's session.
    subprocess.Popen(["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
                      "setsid", "sleep", "900"], start_new_session=True)
    wait_for(lambda: len(sysaccounts.processes_of(account.pw_uid)) >= 2, what="the detached process")

    response = system_hub.api("DELETE", f"/users/{name}")
    assert response.status_code == 204, response.text

    assert sysaccounts.processes_of(account.pw_uid) == []
    with pytest.raises(KeyError):
        pwd.getpwnam(account.pw_name)
    # A new sign-up with the same name starts (before issue 11: 500, home missing).
    signup_and_approve(system_hub, name, PASSWORD)
    start_server(system_hub, name)
