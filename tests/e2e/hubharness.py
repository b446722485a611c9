"""Helpers of the end-to-end harness (fixtures are in conftest.py, which documents both).

Import them in tests as ``from hubharness import signup, start_server, ...``
(conftest.py puts this directory on ``sys.path``; the module has its own name so
it never collides with another ``conftest``).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

# ------------------------------------------------------------ *.localhost for Python

_getaddrinfo = socket.getaddrinfo


def _getaddrinfo_localhost(host, *args, **kwargs):
    # Browsers resolve every *.localhost name to loopback (the users' origins of the
    # test hub); glibc does not. Map them here, for this test process only.
    if isinstance(host, str) and host.lower().rstrip(".").endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo_localhost


def _is_localhost(request) -> bool:
    host = urlsplit(request.get_full_url()).hostname or ""
    return host == "localhost" or host.endswith(".localhost")


def _return_ok_secure(self, cookie, request, _original=DefaultCookiePolicy.return_ok_secure):
    # With per-user origins the hub's cookies are __Host- cookies, which are Secure;
    # browsers send Secure cookies to http://localhost (a potentially trustworthy
    # origin), Python's cookie jar only over https.
    return _is_localhost(request) or _original(self, cookie, request)


def _return_ok_domain(self, cookie, request, _original=DefaultCookiePolicy.return_ok_domain):
    # JupyterHub sets its session-id cookie with Domain=localhost; browsers keep it as
    # a cookie of the host localhost, Python's jar (which calls that host
    # "localhost.local") would never send it back, and every request would get a new
    # session id (and so a new XSRF token).
    if cookie.domain == ".localhost" and _is_localhost(request):
        return (urlsplit(request.get_full_url()).hostname or "") == "localhost"
    return _original(self, cookie, request)


def _domain_return_ok(self, domain, request, _original=DefaultCookiePolicy.domain_return_ok):
    if domain == ".localhost" and _is_localhost(request):
        return True
    return _original(self, domain, request)


# requests merges cookies into fresh jars with the default policy, so the policy is
# patched where it is defined (this test process only).
DefaultCookiePolicy.return_ok_secure = _return_ok_secure
DefaultCookiePolicy.return_ok_domain = _return_ok_domain
DefaultCookiePolicy.domain_return_ok = _domain_return_ok


def new_session() -> requests.Session:
    """A requests session that behaves like a browser towards the test hub's origins."""
    return requests.Session()


@dataclass
class Hub:
    """A running test hub (the ``hub`` fixture of conftest.py)."""

    url: str
    token: str
    admin_name: str
    admin_password: str
    log_path: Path
    dir: Path
    process: subprocess.Popen = field(repr=False)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the hub REST API (``path`` after ``/hub/api``) with the tests' admin token."""
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 60)
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, **kwargs)

    def log_tail(self, lines: int = 200) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no hub log: {error})"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin_session(self) -> requests.Session:
        """A requests session logged in as the admin."""
        return login_session(self, self.admin_name, self.admin_password)


# -------------------------------------------------------------------- forms


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connect from another loopback address (127.0.0.2, ...): another client for the proxy and hub."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def log_in_page(page, hub: Hub, username: str, password: str):
    """Log in with the hub's login form in a browser page; wait until it has left the form."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url, timeout=60_000)


def form_session(hub: Hub, path: str, session: requests.Session | None = None):
    """GET a hub form page; return ``(session, xsrf_token)`` ready to POST it back."""
    session = session or new_session()
    response = session.get(f"{hub.url}{path}", timeout=30)
    response.raise_for_status()
    match = re.search(r'name="_xsrf" value="([^"]+)"', response.text)
    if not match:
        raise AssertionError(f"no _xsrf field in {path}:\n{response.text[:2000]}")
    return session, match.group(1)


def signup(hub: Hub, username: str, password: str, confirmation: str | None = None) -> requests.Response:
    """Submit the sign-up form as a browser would; return the response (not raised)."""
    session, xsrf = form_session(hub, "/hub/signup")
    return session.post(
        f"{hub.url}/hub/signup",
        data={
            "_xsrf": xsrf,
            "username": username,
            "signup_password": password,
            "signup_password_confirmation": password if confirmation is None else confirmation,
        },
        timeout=30,
    )


def login_session(hub: Hub, username: str, password: str) -> requests.Session:
    """A requests session logged in through the login form (raises if refused)."""
    session, xsrf = form_session(hub, "/hub/login")
    response = session.post(
        f"{hub.url}/hub/login",
        data={"_xsrf": xsrf, "username": username, "password": password},
        allow_redirects=False,
        timeout=30,
    )
    if response.status_code != 302:
        raise AssertionError(
            f"login of {username} refused ({response.status_code}):\n{response.text[-1500:]}"
        )
    return session


def approve(hub: Hub, username: str, admin: requests.Session | None = None):
    """Approve a pending sign-up as the admin: the form post of /hub/authorize."""
    admin = admin or hub.admin_session()
    admin, xsrf = form_session(hub, "/hub/authorize", session=admin)
    response = admin.post(
        f"{hub.url}/hub/authorize/{username}", data={"_xsrf": xsrf}, allow_redirects=False, timeout=30
    )
    if response.status_code != 302:
        raise AssertionError(f"approving {username}: {response.status_code}\n{response.text[-1500:]}")


def signup_and_approve(hub: Hub, username: str, password: str) -> str:
    """Sign ``username`` up through the form and have the admin approve it.

    Returns the normalised username. Raises if either step is refused.
    """
    response = signup(hub, username, password)
    if response.status_code != 200:
        raise AssertionError(f"sign-up of {username} refused ({response.status_code})")
    name = username.lower()
    approve(hub, name)
    return name


def events_for(hub: Hub, username: str) -> list[dict]:
    """The lifecycle events (``enertef-event`` lines of the hub log) of ``username``, in order."""
    found = []
    for line in hub.log_text().splitlines():
        if "enertef-event " in line:
            record = json.loads(line.split("enertef-event ", 1)[1])
            if record.get("user") == username:
                found.append(record)
    return found


def wait_for_event(hub: Hub, username: str, event: str, timeout: float = 60, what: str | None = None) -> dict:
    """The first ``event`` of ``username`` in the hub log, once it is there.

    Raises AssertionError saying ``what`` did not happen (and the log's end) after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [record for record in events_for(hub, username) if record["event"] == event]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or f'no {event} event for {username}'}:\n{hub.log_tail(40)}")
        time.sleep(0.05)


def wait_prepared(hub: Hub, username: str, timeout: float = 60):
    """Wait until the preparation that ``username``'s approval started has ended
    (``prepared`` event in the hub log; EnerTEFAuthenticator.prepare_on_approval)."""
    wait_for_event(hub, username, "prepared", timeout,
                   what=f"{username}'s workbench was not prepared after the approval")


def start_server(hub: Hub, username: str, timeout: float = 240) -> str:
    """Start ``username``'s default server through the REST API; return its URL when ready.

    Creates the hub user if it never logged in. Raises with the spawn's last
    progress message if the server fails or does not become ready in time.
    """
    if hub.api("GET", f"/users/{username}").status_code == 404:
        hub.api("POST", f"/users/{username}").raise_for_status()
    response = hub.api("POST", f"/users/{username}/server")
    if response.status_code not in (201, 202, 400):  # 400: already running
        raise AssertionError(f"starting {username}'s server: {response.status_code} {response.text}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = hub.api("GET", f"/users/{username}").json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            # a full URL (http://<name>.localhost:PORT/user/<name>/) with per-user origins
            return urljoin(hub.url, server["url"])
        if not server and not model.get("pending"):
            raise AssertionError(
                f"{username}'s server stopped while starting; hub log:\n{hub.log_tail(60)}"
            )
        time.sleep(0.5)
    raise AssertionError(f"{username}'s server not ready after {timeout}s:\n{hub.log_tail(60)}")


def server_pid(hub: Hub, username: str) -> int:
    """PID of the user's running server process (from the spawner state the hub keeps)."""
    model = hub.api("GET", f"/users/{username}").json()
    state = model["servers"][""].get("state") or {}
    if "pid" not in state:
        raise AssertionError(f"no pid in {username}'s server state: {state!r}")
    return int(state["pid"])


def server_environment(hub: Hub, username: str) -> dict[str, str]:
    """Environment of the user's server process, read from /proc (servers run locally)."""
    raw = Path(f"/proc/{server_pid(hub, username)}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def run_coroutine(coroutine):
    """asyncio.run in a thread of its own: once a test of the session has opened the
    browser, Playwright's sync API keeps an event loop running in this thread."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# ------------------------------------------------------------------ object storage


def s3_client(env: dict[str, str]):
    """An S3 client with a user's server environment (``AWS_*``), failing fast."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=15),
    )


def admin_s3():
    """An S3 client with the MinIO admin's credentials (the tests' view of every bucket)."""
    import os

    import boto3

    return boto3.client(
        "s3",
        endpoint_url=os.environ["ENERTEF_MINIO_ENDPOINT"],
        aws_access_key_id=os.environ["ENERTEF_MINIO_ACCESS_KEY"],
        aws_secret_access_key=os.environ["ENERTEF_MINIO_SECRET_KEY"],
        region_name="us-east-1",
    )
