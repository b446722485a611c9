"""The hub's login and sign-up forms in Chromium: what a newcomer sees after submitting.

- A refused login keeps the username in the field (NativeAuthenticator's page wrote
  ``val=``, which browsers ignore, so the field came back empty).
- A successful sign-up shows its message without the form under it (which invited a
  second sign-up); a refused one keeps the form and the username.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.harness.browser import log_in, sign_up
from tests.harness.names import unique_name

PASSWORD = "Forms-e2e-passw0rd!"


def test_refused_login_keeps_the_username(hub, page) -> None:
    name = unique_name("formlogin")
    log_in(page, hub, name, "not-the-password")
    expect(page.get_by_text("Invalid username or password.")).to_be_visible()
    expect(page.locator("#username_input")).to_have_value(name)
    expect(page.locator("#password_input")).to_have_value("")


def test_signup_form_is_gone_after_success_and_kept_after_refusal(hub, page) -> None:
    name = unique_name("formsignup")
    sign_up(page, hub, name, PASSWORD, confirmation=PASSWORD + "x")
    expect(page.get_by_text("The password and its confirmation differ")).to_be_visible()
    expect(page.locator("#signup_submit")).to_be_visible()
    expect(page.locator("#username_input")).to_have_value(name)  # kept, the passwords not
    expect(page.locator("#password_input")).to_have_value("")

    sign_up(page, hub, name, PASSWORD)
    expect(page.locator(".alert-info, .alert-success").first).to_be_visible()
    expect(page.locator("#signup_submit")).to_have_count(0)
    expect(page.locator("#username_input")).to_have_count(0)
    expect(page.get_by_role("link", name="Login")).to_be_visible()
