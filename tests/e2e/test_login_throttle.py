"""Issue 19, part 5 (security regression): someone guessing the admin's password never
keeps the admin out, and is slowed down whatever address they claim.

A real JupyterHub with its configurable-http-proxy (tests/e2e/conftest.py
``running_hub``, a hub of this module's own so the hammering cannot slow other
tests' admin logins), Chromium for the admin, plain HTTP for the attacker.
hub_config.py: login_free_failures 3, login_delay 2 s doubling up to 8 s.

Before the fix the throttle counted failures per (name, ``request.remote_ip``):
tornado, as JupyterHub runs it (``xheaders``), takes that from any client's
``X-Real-Ip`` or ``X-Forwarded-For``. An attacker claiming the admin's address
kept the admin out; one claiming a new address each time was never slowed down;
and from the admin's own address (all local clients share 127.0.0.1) the right
password was refused while the guessing went on.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
import time

import pytest
from tests.harness.forms import form_session, new_session, SourceAddressAdapter
from tests.harness.hub import running_hub
from playwright.sync_api import expect


pytestmark = pytest.mark.jupyterhub_login  # also on JupyterHub 5.5 (the hub image): its cookies

WAIT_TEXT = "Too many failed logins with this name from your address"


@pytest.fixture(scope="module")
def hub(services_env, tmp_path_factory):  # a hub of this module's own
    with running_hub(services_env, tmp_path_factory.mktemp("throttle-hub")) as hub:
        yield hub


def attempt(hub, name: str, password: str, source: str = "127.0.0.1", headers: dict | None = None) -> str:
    """One login through the hub's proxy, as a browser would (login page, then the form):
    "ok", "wait" (throttled) or "invalid"."""
    session = new_session()
    session.mount("http://", SourceAddressAdapter(source))
    session.headers.update(headers or {})
    session, xsrf = form_session(hub, "/hub/login", session=session)
    response = session.post(
        f"{hub.url}/hub/login",
        data={"_xsrf": xsrf, "username": name, "password": password},
        allow_redirects=False,
        timeout=60,
    )
    if response.status_code == 302:
        return "ok"
    assert response.status_code == 403, response.text[-1500:]
    if WAIT_TEXT in response.text:
        return "wait"
    assert "Invalid username or password" in response.text, response.text[-1500:]
    return "invalid"


def summary(outcomes: list[str]) -> str:
    return f"{len(outcomes)} attempts, first ones {outcomes[:8]}, counts " + str(
        {o: outcomes.count(o) for o in set(outcomes)}
    )


@contextlib.contextmanager
def hammering(hub, name: str, source: str, headers=lambda: {}):
    """An attacker posting wrong passwords for ``name`` without pause while the block runs;
    yields the list of outcomes so far."""
    outcomes: list[str] = []
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                outcomes.append(attempt(hub, name, "wrong-" + secrets.token_hex(4), source, headers()))
            except AssertionError as error:  # an unexpected answer: stop, say which
                outcomes.append(f"unexpected: {str(error)[-300:]}")
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while "wait" not in outcomes and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.1)
        yield outcomes
    finally:
        stop.set()
        thread.join(60)


def browser_login(page, hub, name: str, password: str) -> bool:
    """Log in through the login form in Chromium; True if the hub let the browser in."""
    page.goto(f"{hub.url}/hub/login?next=/hub/home")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    with page.expect_navigation():
        page.click("#login_submit")
    if re.search(r"/hub/home$", page.url):
        return True
    expect(page.locator("#login_submit")).to_be_visible()
    return False


def logged_out(page, hub):
    page.goto(f"{hub.url}/hub/logout")
    page.wait_for_url(re.compile(r".*/hub/login.*"))


def wait_until_free(hub, timeout: float = 20):
    """Until the admin's name is no longer throttled at 127.0.0.1 (the next test starts clean)."""
    deadline = time.monotonic() + timeout
    while attempt(hub, hub.admin_name, hub.admin_password) != "ok":
        assert time.monotonic() < deadline, "the admin's address stayed throttled"
        time.sleep(1)


def test_an_attacker_claiming_the_admins_address_is_throttled_and_the_admin_logs_in(hub, new_page):
    # The attacker connects from 127.0.0.2 and claims, in the headers the proxy passes
    # on, to be 127.0.0.1: the admin's address.
    claims = {"X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1"}
    with hammering(hub, hub.admin_name, "127.0.0.2", lambda: claims) as outcomes:
        assert "wait" in outcomes, f"the attacker was never throttled: {summary(outcomes)}"
        # The admin, in a browser that never logged in before, gets in at once.
        assert browser_login(new_page(), hub, hub.admin_name, hub.admin_password)
    assert outcomes.index("wait") == 4
    assert outcomes.count("ok") == 0
    wait_until_free(hub)


def test_an_attacker_claiming_a_new_address_each_time_is_still_throttled(hub):
    def new_address():
        fake = f"198.51.100.{secrets.randbelow(250) + 1}"
        return {"X-Real-Ip": fake, "X-Forwarded-For": fake}

    with hammering(hub, hub.admin_name, "127.0.0.3", new_address) as outcomes:
        pass
    assert "wait" in outcomes, f"never throttled: {summary(outcomes)}"
    # 3 free failures, a 4th that starts the wait, then refusals: as from one address.
    assert outcomes.index("wait") == 4


def test_the_admins_browser_logs_in_while_an_attacker_at_the_same_address_hammers(hub, new_page):
    admin_page = new_page()
    assert browser_login(admin_page, hub, hub.admin_name, hub.admin_password)
    logged_out(admin_page, hub)
    with hammering(hub, hub.admin_name, "127.0.0.1") as outcomes:
        assert "wait" in outcomes, f"the attacker was never throttled: {summary(outcomes)}"
        # The browser the admin logged in with before is a client of its own ...
        assert browser_login(admin_page, hub, hub.admin_name, hub.admin_password)
        # ... a new browser at the attacker's address waits, told so, ...
        stranger = new_page()
        assert not browser_login(stranger, hub, hub.admin_name, hub.admin_password)
        expect(stranger.locator("body")).to_contain_text(WAIT_TEXT)
    stopped = time.monotonic()
    # ... but no longer than login_max_delay (8 s) once the guessing stops.
    while not browser_login(stranger, hub, hub.admin_name, hub.admin_password):
        assert time.monotonic() - stopped < 8 + 5, "refused long after the guessing stopped"
        time.sleep(1)
    assert outcomes.count("ok") == 0
