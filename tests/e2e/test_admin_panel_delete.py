"""Deleting a user in JupyterHub's own admin panel asks first, in Chromium.

JupyterHub's React admin panel sends ``DELETE /hub/api/users/NAME`` as soon as
"Delete user" is clicked. enertef-admin-panel.js holds that request until the admin
answers a dialog that names the user and says what happens to their data. Here an
admin stops the user's server in the panel (no dialog: other actions are left
alone), clicks "Delete user", reads the dialog, cancels (no request is sent, the
user is still there), clicks again and confirms (the user is gone, their store and
bucket are kept and listed on the Accounts page as kept data).

Marked ``jupyterhub_login``: it also runs on JupyterHub 5.5 (the hub image's
environment), whose admin bundle differs from 6.1's.
"""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from enertef_hub.naming import make_user_resources
from tests.harness.browser import log_in, screenshot
from tests.harness.forms import signup_and_approve
from tests.harness.hub import events_for, start_server
from tests.harness.names import unique_name
from tests.harness.postgres import account_states, schema_exists
from tests.harness.s3 import bucket_exists
from tests.harness.wait import wait_for

PASSWORD = "Tr0ub4dor&3-but-longer"


@pytest.mark.jupyterhub_login  # also on JupyterHub 5.5 (the hub image): its admin bundle differs
def test_deleting_a_user_in_the_admin_panel_asks_first_and_keeps_the_data(hub, page):
    name = signup_and_approve(hub, unique_name("del"), PASSWORD)
    start_server(hub, name)  # the store and bucket are made at the first start
    resources = make_user_resources(name, 1)
    assert account_states(name) == {1: "active"}

    # The script comes from the hub itself (CSP script-src 'self' would allow it), as JavaScript.
    script = requests.get(f"{hub.url}/hub/enertef/static/enertef-admin-panel.js", timeout=30)
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in script.headers

    problems, deletes = [], []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: deletes.append(request.url) if request.method == "DELETE" else None)

    log_in(page, hub, hub.admin_name, hub.admin_password, next_url="/hub/admin")
    page.wait_for_url(re.compile(r".*/hub/admin"))
    expect(page.locator("html")).to_have_attribute("data-enertef-delete-confirm", "ready")
    row = page.locator("tr", has_text=name).first

    # Other actions of the panel are not held: stopping the server asks nothing.
    row.get_by_role("button", name="Stop Server").click()
    wait_for(lambda: not hub.api("GET", f"/users/{name}").json()["servers"], what="the server to stop")
    expect(page.locator("#enertef-delete-dialog")).not_to_be_visible()
    assert [url for url in deletes if "/servers/" in url or url.split("?")[0].endswith("/server")]

    # "Delete user": the dialog names the user and says the data is kept, and where.
    row.get_by_text("Edit User").click()
    page.get_by_role("button", name="Delete user").click()
    dialog = page.locator("#enertef-delete-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#enertef-delete-title")).to_have_text(f"Delete user {name}?")
    consequences = page.locator("#enertef-delete-consequences")
    expect(consequences).to_contain_text(f"{name}'s access ends at once")
    expect(consequences).to_contain_text("Their data is kept")
    expect(consequences.get_by_role("link", name="Accounts")).to_have_attribute("href", "/hub/enertef/accounts")
    expect(page.locator("#enertef-delete-confirm")).to_have_text(f"Delete {name}")
    screenshot(page, "admin-panel-delete-confirmation")

    # Cancel: nothing is sent, the user is still there, the panel stays on the user's page.
    user_deletes = lambda: [url for url in deletes if re.search(rf"/hub/api/users/{name}(\?|$)", url)]  # noqa: E731
    page.locator("#enertef-delete-cancel").click()
    expect(dialog).not_to_be_visible()
    page.wait_for_timeout(1000)  # a request let through would have been sent by now
    assert user_deletes() == []
    assert hub.api("GET", f"/users/{name}").status_code == 200
    assert account_states(name) == {1: "active"}
    expect(page.get_by_role("button", name="Delete user")).to_be_visible()

    # Escape cancels too.
    page.get_by_role("button", name="Delete user").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).not_to_be_visible()
    page.wait_for_timeout(500)
    assert user_deletes() == []

    # Confirm: the panel's own request goes out (with its XSRF token) and the user is gone.
    page.get_by_role("button", name="Delete user").click()
    page.locator("#enertef-delete-confirm").click()
    page.wait_for_url(re.compile(r".*/hub/admin#/$"))
    wait_for(lambda: hub.api("GET", f"/users/{name}").status_code == 404, what="the user to be deleted")
    assert len(user_deletes()) == 1 and "_xsrf=" in user_deletes()[0]
    expect(page.locator("tr", has_text=name)).to_have_count(0)
    # The deletion's events name the admin who deleted, not "system".
    deletion = {e["event"]: e["actor"] for e in events_for(hub, name) if e["event"] in ("user-deleted", "deprovisioned")}
    assert deletion == {"user-deleted": hub.admin_name, "deprovisioned": hub.admin_name}

    # The data is kept, and the Accounts page lists it to restore or purge.
    assert account_states(name) == {1: "deleted"}
    assert schema_exists(resources.schema) and bucket_exists(resources.bucket)
    page.goto(f"{hub.url}/hub/enertef/accounts?q={name}")
    account = page.locator(f"#account-{name}")
    expect(account.locator(".account-state")).to_have_text("deleted, data kept")
    expect(account.locator("[data-action=restore]")).to_be_visible()
    assert not [p for p in problems if "Content Security Policy" in p or "enertef" in p], problems
