"""Headless Chromium (Debian's, through Playwright's sync API) and the hub's pages in it."""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import Hub

CHROMIUM = os.environ.get("ENERTEF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def launch_chromium():
    """Headless Chromium for the block (the ``browser`` fixture of tests/conftest.py)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def submit_login(page, username: str, password: str):
    """Fill in and submit the login form the page shows."""
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.click("#login_submit")


def log_in(page, hub: Hub, username: str, password: str, next_url: str = "", wait: bool = False):
    """Log in with the hub's login form, to go on to ``next_url`` (a path) once logged in.

    With ``wait``, wait until the page has left the form (the login was accepted);
    without, the page may still show the form, e.g. with the reason for a refusal.
    """
    page.goto(f"{hub.url}/hub/login" + (f"?next={next_url}" if next_url else ""))
    submit_login(page, username, password)
    if wait:
        page.wait_for_url(lambda url: "/hub/login" not in url, timeout=60_000)


def wait_past_spawn_page(page, timeout: float = 120):
    """Wait until the page is no longer on the hub's spawn or spawn-pending page.

    A user's log-in starts their server from the browser, and the spawn-pending page
    moves on to the server by itself once it is ready: a test's own navigation before
    that is interrupted by it ("interrupted by another navigation").
    """
    page.wait_for_url(lambda url: "/hub/spawn" not in url, timeout=timeout * 1000)


def sign_up(page, hub: Hub, username: str, password: str, confirmation: str | None = None):
    """Fill in and submit the hub's sign-up form (the confirmation is the password unless given)."""
    page.goto(f"{hub.url}/hub/signup")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.fill("#password_confirmation_input", password if confirmation is None else confirmation)
    page.click("#signup_submit")


def delete_in_admin_panel(page, hub: Hub, name: str):
    """What an admin does: Admin → the user's "Edit User" → "Delete user", then confirm our dialog."""
    page.goto(f"{hub.url}/hub/admin")
    if "/hub/login" in page.url:  # not logged in, or the session ended (e.g. a new hub pod with a new secret)
        log_in(page, hub, hub.admin_name, hub.admin_password, "/hub/admin")
    page.locator("tr", has_text=name).get_by_text("Edit User").first.click()
    page.get_by_role("button", name="Delete user").click()
    # The confirmation dialog (enertef-admin-panel.js); with purge_on_delete it asks for the name.
    if page.locator("#enertef-delete-typed").count():
        page.fill("#enertef-delete-typed", name)
    page.locator("#enertef-delete-confirm").click()
    page.wait_for_url(re.compile(r".*/hub/admin#/$"))


def screenshot(page, name: str):
    """Save the page as ``$ENERTEF_E2E_SCREENSHOTS/<name>.png`` when that folder is set (the pictures in docs/)."""
    folder = os.environ.get("ENERTEF_E2E_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, f"{name}.png"))


def group_page_in_admin_panel(page, hub: Hub, team: str):
    """Admin → Manage Groups → the group: its "Editing Group" page (JupyterHub's own admin panel)."""
    from playwright.sync_api import expect

    page.goto(f"{hub.url}/hub/admin#/groups")
    if "/hub/login" in page.url:
        log_in(page, hub, hub.admin_name, hub.admin_password, "/hub/admin#/groups")
    page.get_by_text(team, exact=True).click()
    expect(page.get_by_text(f"Editing Group {team}")).to_be_visible()


def add_to_group_in_admin_panel(page, hub: Hub, team: str, usernames: list[str]):
    """What an admin does: the group's page → "Add by username" → Add user, for each → Apply."""
    from playwright.sync_api import expect

    group_page_in_admin_panel(page, hub, team)
    for name in usernames:
        page.fill("#username-input", name)
        page.click("#validate-user")
        expect(page.locator(".users-container .item.selected", has_text=name)).to_be_visible()
    expect(page.get_by_text("is not a valid JupyterHub user")).to_have_count(0)
    apply_group_edit(page, team, "POST")
    assert set(usernames) <= set(hub.api("GET", f"/groups/{team}").json()["users"])


def remove_from_group_in_admin_panel(page, hub: Hub, team: str, name: str):
    """What an admin does: the group's page → click the member (unselects them) → Apply."""
    group_page_in_admin_panel(page, hub, team)
    page.locator(".users-container .item.selected", has_text=name).click()
    apply_group_edit(page, team, "DELETE")
    assert name not in hub.api("GET", f"/groups/{team}").json()["users"]


def apply_group_edit(page, team: str, method: str):
    """Click the group page's Apply and wait for the hub's answer to its member edit.

    The answer, not the group as the API shows it: the hub commits the change, then
    syncs the moved members' team access, then answers, so a GET in between already
    sees the new members while their access is still the old one.
    """
    edit = f"/hub/api/groups/{team}/users"
    with page.expect_response(lambda r: r.url.split("?")[0].endswith(edit) and r.request.method == method,
                              timeout=60_000) as answer:
        page.get_by_role("button", name="Apply").click()
    assert answer.value.ok, f"{method} {edit}: {answer.value.status}"
