"""Why a login is refused, in Chromium: suspended and deleted users are told, strangers learn nothing.

- A user whose approval an admin withdrew reads that the account is suspended and
  whom to ask (the hub's admins), not that it "is waiting for approval".
- The owner of a deleted account reads that it no longer exists, not "Invalid
  username or password".
- Both only with the right password: a wrong one reads "Invalid username or
  password", exactly as for a name that never existed.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.harness.browser import log_in
from tests.harness.forms import approve, signup_and_approve
from tests.harness.names import unique_name

pytestmark = pytest.mark.jupyterhub_login

PASSWORD = "Login-messages-passw0rd!"
INVALID = "Invalid username or password."


def refusal(page, hub, username: str, password: str):
    """The login form's error after logging in as ``username`` (the page stays on the form)."""
    log_in(page, hub, username, password)
    error = page.locator(".login_error")
    expect(error).to_be_visible()
    assert "/hub/login" in page.url
    return error


def test_a_suspended_user_reads_that_they_are_suspended_and_whom_to_ask(hub, page):
    name = signup_and_approve(hub, unique_name("carol"), PASSWORD)
    approve(hub, name)  # the same button again: the admin withdraws the approval

    error = refusal(page, hub, name, PASSWORD)
    expect(error).to_contain_text("suspended")
    expect(error).to_contain_text(hub.admin_name)
    expect(error).not_to_contain_text("waiting for approval")
    expect(refusal(page, hub, name, PASSWORD + "x")).to_have_text(INVALID)


def test_a_deleted_user_reads_that_the_account_is_gone_and_strangers_nothing(hub, page):
    name = signup_and_approve(hub, unique_name("dave"), PASSWORD)
    assert hub.api("DELETE", f"/users/{name}").status_code == 204

    error = refusal(page, hub, name, PASSWORD)
    expect(error).to_contain_text("no longer exists")
    expect(error).not_to_contain_text(INVALID)
    # Without the password, a deleted name and one that never existed read the same.
    expect(refusal(page, hub, name, PASSWORD + "x")).to_have_text(INVALID)
    expect(refusal(page, hub, unique_name("never"), PASSWORD)).to_have_text(INVALID)
