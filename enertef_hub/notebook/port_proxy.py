"""Only the workbench's named tools are proxied, and never with the visitor's credentials.

Besides the named servers (our MLflow UI and TensorBoard, at ``<base_url>mlflow/`` and
``<base_url>tensorboard/``), jupyter-server-proxy adds generic routes that proxy any
loopback port: ``proxy/<port>/``, ``proxy/absolute/<port>/``, ``proxy/<host>:<port>/``
and ``proxy/absolute/<host>:<port>/``. Any account on the machine (on Kubernetes: any
process in the pod) can listen on a loopback port, and what the proxy fetches from it
is served on the origin of the server visited. So a link to the victim's *own* server,
``/user/<victim>/proxy/<port>/page.html``, runs the attacker's script with the victim's
session (it can start a kernel as the victim), and the proxy hands the victim's cookies
to the attacker's process. jupyter-server-proxy 4.x has no setting that turns these
routes off (its ``host_allowlist`` does not apply to ``proxy/<port>``), so this module
does it, in every server where jupyter-server-proxy loads our entry points:

- the generic routes answer 404 and say why, unless the deployer turned them on on
  purpose (``ENERTEF_UNSAFE_PORT_PROXY=1`` in the server's environment, or
  ``c.PortProxyGuard.allow_port_proxy = True`` in its Jupyter config);
- every proxied request (named tools, and the generic routes when turned on), HTTP and
  websocket, goes out without ``Cookie`` and ``Authorization`` headers and without a
  ``token`` query parameter: a proxied process never holds the credentials of the hub
  or of the user's server, whoever wrote it.

No configuration file is needed, so no spawner or image can forget one:
jupyter-server-proxy calls our entry points (:mod:`enertef_hub.notebook.proxies`)
inside the notebook server while it loads, and they call :func:`guard_when_server_starts`,
which edits the server's routes as its event loop starts, when every extension has
added its routes and before the first request is read.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import unquote_plus

from traitlets import Bool, default
from traitlets.config import Configurable

#: Environment variable that turns the generic port proxy on (``1``, ``true``, ``yes``). Unsafe.
UNSAFE_PORT_PROXY_ENV = "ENERTEF_UNSAFE_PORT_PROXY"

#: Request headers never forwarded to a proxied process (the hub's and the server's credentials).
CREDENTIAL_HEADERS = ("Cookie", "Authorization")

#: Query parameters never forwarded (Jupyter accepts its token as ``?token=``).
CREDENTIAL_PARAMETERS = frozenset({"token"})

#: What the generic port routes answer while they are off.
PORT_PROXY_OFF_MESSAGE = (
    "The port proxy (proxy/<port>/) is off in this workbench: a page served from any "
    "local port would run with your session. Only the workbench's tools are proxied "
    "(mlflow/, tensorboard/). An administrator can turn it on, unsafely, with "
    f"{UNSAFE_PORT_PROXY_ENV}=1 (see docs/user-guide.md)."
)

log = logging.getLogger(__name__)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class PortProxyGuard(Configurable):
    """Settings of the guard over jupyter-server-proxy's routes in a user's server."""

    allow_port_proxy = Bool(
        config=True,
        help=f"""
        UNSAFE. Turn jupyter-server-proxy's generic routes on: ``proxy/<port>/``,
        ``proxy/absolute/<port>/`` and their ``<host>:<port>`` forms.

        Off by default: any account that can listen on a loopback port could then
        send the server's owner a link to their own server that serves the
        attacker's page on the owner's origin, where its script acts with the
        owner's session (starts kernels, reads their credentials). Even when on,
        proxied processes never receive the ``Cookie`` and ``Authorization``
        headers or a ``token`` parameter.

        Defaults from the ``{UNSAFE_PORT_PROXY_ENV}`` environment variable of the
        server (``1``/``true``/``yes``); the named tools (MLflow UI, TensorBoard)
        are proxied either way.
        """,
    )

    @default("allow_port_proxy")
    def _default_allow_port_proxy(self):
        return _truthy(os.environ.get(UNSAFE_PORT_PROXY_ENV))


def without_credential_parameters(uri: str) -> str:
    """*uri* without the query parameters in :data:`CREDENTIAL_PARAMETERS` (pure); others keep their spelling."""
    base, sep, query = uri.partition("?")
    if not sep:
        return uri
    kept = [part for part in query.split("&") if unquote_plus(part.split("=", 1)[0]) not in CREDENTIAL_PARAMETERS]
    return base + ("?" + "&".join(kept) if kept else "")


def without_credentials(handler_class: type) -> type:
    """A subclass of a jupyter-server-proxy handler that forwards no credential of the visitor."""

    class WithoutCredentials(handler_class):
        _enertef_guarded = True

        def proxy_request_headers(self):
            # Used for both HTTP requests and websocket handshakes to the backend.
            headers = super().proxy_request_headers()
            for name in CREDENTIAL_HEADERS:
                if name in headers:
                    del headers[name]  # case-insensitive, every occurrence
            return headers

        def get_client_uri(self, protocol, host, port, proxied_path):
            return without_credential_parameters(super().get_client_uri(protocol, host, port, proxied_path))

    WithoutCredentials.__name__ = WithoutCredentials.__qualname__ = f"WithoutCredentials{handler_class.__name__}"
    WithoutCredentials.__doc__ = f"{handler_class.__name__} that forwards no cookie, Authorization or token."
    return WithoutCredentials


def routing_rules(router):
    """Every routing rule of a tornado router, nested routers included."""
    for rule in getattr(router, "rules", ()):
        yield rule
        yield from routing_rules(rule.target)


def _port_proxy_off_handler() -> type:
    from tornado import web

    class PortProxyOff(web.RequestHandler):
        """Answers every request on a generic port route: 404, and why (no proxying, no login needed)."""

        _enertef_guarded = True

        def check_xsrf_cookie(self):
            pass  # nothing here changes state: every method gets the same 404 and its reason

        def prepare(self):
            self.set_status(404)
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(PORT_PROXY_OFF_MESSAGE + "\n")

    return PortProxyOff


def guard_routes(web_app, allow_port_proxy: bool = False, logger: logging.Logger = log) -> dict[str, list[str]]:
    """Apply the guard to every jupyter-server-proxy route of *web_app*; what it did, by route pattern.

    A named server's handler (a ``NamedLocalProxyHandler``) is kept, without credentials.
    Every other proxy handler is a generic route: refused unless *allow_port_proxy*, and
    then also without credentials. Anything jupyter-server-proxy may add in a later
    version that is not a named server is so refused too. Idempotent.
    """
    from jupyter_server_proxy.handlers import NamedLocalProxyHandler, ProxyHandler

    done: dict[str, list[str]] = {"named": [], "refused": [], "allowed": []}
    refusal = None
    for router in (web_app.default_router, web_app.wildcard_router):
        for rule in list(routing_rules(router)):
            target = rule.target
            if not (isinstance(target, type) and issubclass(target, ProxyHandler)):
                continue
            if getattr(target, "_enertef_guarded", False):
                continue
            pattern = getattr(getattr(rule.matcher, "regex", None), "pattern", repr(rule.matcher))
            if issubclass(target, NamedLocalProxyHandler):
                rule.target = without_credentials(target)
                done["named"].append(pattern)
            elif allow_port_proxy:
                rule.target = without_credentials(target)
                done["allowed"].append(pattern)
            else:
                refusal = refusal or _port_proxy_off_handler()
                rule.target, rule.target_kwargs = refusal, {}
                done["refused"].append(pattern)
    if done["allowed"]:
        logger.warning(
            "UNSAFE: the generic port proxy is on (%s): any page served on a local port runs with "
            "the session of whoever opens its link; routes: %s", UNSAFE_PORT_PROXY_ENV, ", ".join(done["allowed"])
        )
    logger.info(
        "Proxied without cookies or tokens: %s; generic port proxy %s",
        ", ".join(done["named"]) or "nothing", "ON (unsafe)" if allow_port_proxy else "off",
    )
    return done


def running_server_app():
    """The notebook server this code runs in, once it has an event loop; None elsewhere
    (a test, ``jupyter server extension list``...)."""
    try:
        from jupyter_server.serverapp import ServerApp
    except ImportError:
        return None
    if not ServerApp.initialized():
        return None
    serverapp = ServerApp.instance()
    return serverapp if getattr(serverapp, "io_loop", None) is not None else None


def guard_when_server_starts() -> bool:
    """In a running notebook server, arrange :func:`guard_routes` for when its loop starts. Whether it was arranged.

    Called from our jupyter-server-proxy entry points, i.e. while jupyter-server-proxy
    loads and before it adds its generic routes: hence the wait for the loop, by which
    time every extension has added its routes and no request has been read.
    """
    serverapp = running_server_app()
    if serverapp is None:
        return False
    io_loop = serverapp.io_loop
    if getattr(serverapp, "_enertef_port_proxy_guard", False):
        return True
    serverapp._enertef_port_proxy_guard = True
    settings = PortProxyGuard(parent=serverapp)
    io_loop.add_callback(guard_routes, serverapp.web_app, settings.allow_port_proxy, serverapp.log)
    return True
