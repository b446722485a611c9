"""A team is made of approved users who never logged in, in JupyterHub's own admin panel (Chromium).

Approval makes the user's JupyterHub user (JupyterHub itself makes it at the first
login only), so the admin panel's group page takes the name ("Add user" refused it
with "is not a valid JupyterHub user" before).

Marked ``jupyterhub_login``: it also runs on JupyterHub 5.5 (the hub image's
environment), whose admin bundle differs from 6.1's.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.harness.browser import log_in
from tests.harness.forms import signup_and_approve
from tests.harness.hub import wait_prepared
from tests.harness.names import unique_name
from tests.harness.wait import wait_for

PASSWORD = "correct horse battery 20"


def add_in_admin_panel(page, hub, team: str, usernames: list[str]):
    """What an admin does: Admin → Manage Groups → the group → "Add by username" → Add user → Apply."""
    page.goto(f"{hub.url}/hub/admin#/groups")
    page.get_by_text(team, exact=True).click()
    expect(page.get_by_text(f"Editing Group {team}")).to_be_visible()
    for name in usernames:
        page.fill("#username-input", name)
        page.click("#validate-user")
        expect(page.locator(".users-container .item.selected", has_text=name)).to_be_visible()
    expect(page.get_by_text("is not a valid JupyterHub user")).to_have_count(0)
    page.get_by_role("button", name="Apply").click()
    wait_for(lambda: set(usernames) <= set(hub.api("GET", f"/groups/{team}").json()["users"]),
             timeout=30, what=f"the admin panel to add {usernames} to {team}")


@pytest.mark.jupyterhub_login
def test_admin_puts_approved_users_who_never_logged_in_in_a_group(hub, page):
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
    add_in_admin_panel(page, hub, team, [alice, bob])

    assert sorted(hub.api("GET", f"/groups/{team}").json()["users"]) == sorted([alice, bob])
