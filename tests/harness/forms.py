"""The hub's forms, posted as a browser would, from Python (``requests``).

Importing this module teaches this test process what browsers know about the test
hub's origins: every ``*.localhost`` name is loopback, and ``localhost`` cookies
(``Secure``, ``Domain=localhost``) go back to it. Nothing outside this process changes.
"""

from __future__ import annotations

import re
import socket
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests

if TYPE_CHECKING:
    from .hub import Hub

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


# ------------------------------------------------------------------ the forms


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connect from another loopback address (127.0.0.2, ...): another client for the proxy and hub."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


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
