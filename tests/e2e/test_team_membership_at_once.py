"""Teams in JupyterHub's own admin panel and REST API: made of users who never logged in, and in effect at once.

- Approval makes the user's JupyterHub user (JupyterHub itself makes it at the first
  login only), so the admin panel's group page takes the name ("Add user" refused it
  with "is not a valid JupyterHub user" before).
- A group edit (the REST calls the admin panel makes) syncs the moved users' team
  access before the API answers: a new member's team login works, a removed member's
  ends (with its open sessions), within seconds. The test hub runs no periodic team
  sync (``enertef-team-sync``) at all, so it cannot be what did it. (Not even one
  with a long interval: its first sync, at the hub's start, would revoke every team
  membership other test hubs recorded in the shared PostgreSQL, as teams this hub
  does not know.)

Marked ``jupyterhub_login``: it also runs on JupyterHub 5.5 (the hub image's
environment), whose admin bundle differs from 6.1's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.harness.browser import add_to_group_in_admin_panel, log_in
from tests.harness.forms import signup_and_approve
from tests.harness.hub import events_for, wait_prepared
from tests.harness.names import unique_name
from tests.harness.postgres import connect_as_team
from tests.harness.s3 import s3_client
from tests.harness.wait import wait_for

pytestmark = pytest.mark.jupyterhub_login

PASSWORD = "correct horse battery 20"
#: The longest a group change may take to reach the member's team access.
AT_ONCE = 10.0


def server_env_of(name: str, services_env: dict) -> dict[str, str]:
    """The environment a server of ``name`` receives (``enertef-hub provision --json``: it
    leaves team memberships alone); the team login shares the user's password."""
    done = subprocess.run([sys.executable, "-m", "enertef_hub.cli", "provision", name, "--json", "--no-tables"],
                          env={**os.environ, **services_env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["environment"]


def team_login_works(env: dict[str, str], team: str) -> bool:
    try:
        with connect_as_team(env, team) as conn:
            return conn.execute("SELECT current_user").fetchone()[0] == f"t_{team}"
    except psycopg.OperationalError:
        return False


def seconds_until(change, check, what: str) -> float:
    """Seconds from the start of ``change()`` (an API request) until ``check()`` holds (AssertionError after a minute)."""
    started = time.monotonic()
    change().raise_for_status()
    wait_for(check, timeout=60, what=what, interval=0.1)
    return time.monotonic() - started


def test_admin_puts_approved_users_who_never_logged_in_in_a_group(hub, page, services_env):
    team = unique_name("lab")
    alice = signup_and_approve(hub, unique_name("alice"), PASSWORD)
    bob = signup_and_approve(hub, unique_name("bob"), PASSWORD)
    for name in (alice, bob):
        # Neither has logged in: their hub users were made by the approval.
        model = hub.api("GET", f"/users/{name}").json()
        assert model["name"] == name and model["last_activity"] is None
        wait_prepared(hub, name)
    hub.api("POST", f"/groups/{team}").raise_for_status()

    log_in(page, hub, hub.admin_name, hub.admin_password, wait=True)
    add_to_group_in_admin_panel(page, hub, team, [alice, bob])

    assert sorted(hub.api("GET", f"/groups/{team}").json()["users"]) == sorted([alice, bob])
    # The e2e hub runs no periodic sync at all: the admin panel's change itself gave the access.
    for name in (alice, bob):
        assert team_login_works(server_env_of(name, services_env), team), f"{name}'s team login"


def test_group_edits_take_effect_within_seconds(hub, services_env):
    team = unique_name("lab")
    alice = signup_and_approve(hub, unique_name("alice"), PASSWORD)
    bob = signup_and_approve(hub, unique_name("bob"), PASSWORD)
    for name in (alice, bob):
        wait_prepared(hub, name)
    alice_env, bob_env = server_env_of(alice, services_env), server_env_of(bob, services_env)
    hub.api("POST", f"/groups/{team}").raise_for_status()
    assert not team_login_works(alice_env, team)

    # Added as the admin panel's group page adds them: both team logins work within seconds.
    added = seconds_until(lambda: hub.api("POST", f"/groups/{team}/users", json={"users": [alice, bob]}),
                          lambda: team_login_works(alice_env, team) and team_login_works(bob_env, team),
                          "the new members' team logins")
    assert added < AT_ONCE, f"the members' team logins took {added:.1f} s"
    s3_client(bob_env).put_object(Bucket=f"team-{team}", Key="shared.csv", Body=b"a,b\n1,2\n")
    bobs_session = connect_as_team(bob_env, team)

    # Removed: bob's login, his open session and his keys to the bucket end within seconds.
    removed = seconds_until(lambda: hub.api("DELETE", f"/groups/{team}/users", json={"users": [bob]}),
                            lambda: not team_login_works(bob_env, team), "the removed member's team login to end")
    assert removed < AT_ONCE, f"the removed member kept the team for {removed:.1f} s"
    with pytest.raises(psycopg.OperationalError):
        bobs_session.execute("SELECT 1")
    with pytest.raises(ClientError) as refused:
        s3_client(bob_env).get_object(Bucket=f"team-{team}", Key="shared.csv")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert team_login_works(alice_env, team)

    # The group deleted: its last member loses the team as fast.
    gone = seconds_until(lambda: hub.api("DELETE", f"/groups/{team}"),
                         lambda: not team_login_works(alice_env, team), "the deleted group's member to lose it")
    assert gone < AT_ONCE, f"a deleted group's member kept the team for {gone:.1f} s"

    # The API requests' own syncs did this, in the name of whoever made the change.
    granted = [e for e in events_for(hub, bob) if e["event"] in ("team-granted", "team-revoked")]
    assert [(e["event"], e["actor"]) for e in granted] == [("team-granted", "e2e-tests"), ("team-revoked", "e2e-tests")]
    print(f"team access after a group edit: added {added:.2f} s, removed {removed:.2f} s, group deleted {gone:.2f} s")
