"""Start the MLflow UI while JupyterLab opens, so the launcher tile opens it ready.

jupyter-server-proxy starts the MLflow UI when its URL is first visited, and MLflow
takes seconds to load (more on a busy machine). A click on the MLflow tile follows
JupyterLab's opening by seconds: the browser loads the JupyterLab page, then asks the
notebook server for its launcher tiles (``<base_url>server-proxy/servers-info``),
draws the launcher, and the person finds the tile. So the first time either is asked
for by the server's owner, the notebook server starts the MLflow UI itself, through
jupyter-server-proxy's own process manager: the same handler class, process state
and lock a click would use, so the click then finds the process running (or
starting, and shows its "starting" page) and nothing is started twice.

Servers that never open JupyterLab (API-only use, the hub's spawn benchmarks) do not
pay for it; the cost is one MLflow UI process per user who opens JupyterLab, as if
they had clicked the tile.

It needs no configuration file: jupyter-server-proxy calls our entry point
(:func:`enertef_hub.notebook.proxies.setup_mlflow_ui`) inside the notebook server
while it loads, and that calls :func:`warm_up_when_lab_opens`, which waits for the
server's event loop (all extensions loaded) before touching its routes. Turn it off
with ``ENERTEF_MLFLOW_UI_WARMUP=0`` in the server's environment.
"""

from __future__ import annotations

import asyncio
import logging
import os

from .port_proxy import routing_rules, running_server_app

#: Environment variable that turns the warm-up off (``0``, ``false``, ``no``).
WARMUP_ENV = "ENERTEF_MLFLOW_UI_WARMUP"

#: Name of the jupyter-server-proxy entry (its URL path under the server).
PROXY_NAME = "mlflow"

log = logging.getLogger(__name__)


def warmup_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether the warm-up is on (pure): on unless ``ENERTEF_MLFLOW_UI_WARMUP`` says off."""
    environ = os.environ if environ is None else environ
    return environ.get(WARMUP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def warm_up_when_lab_opens() -> bool:
    """In a running notebook server, arrange the warm-up; elsewhere do nothing. Whether it was arranged."""
    if not warmup_enabled():
        return False
    serverapp = running_server_app()
    if serverapp is None or getattr(serverapp, "_enertef_mlflow_warmup", False):
        return False
    io_loop = serverapp.io_loop
    serverapp._enertef_mlflow_warmup = True
    # Run once the loop starts: by then every extension has added its routes.
    io_loop.add_callback(install, serverapp.web_app, serverapp.log)
    return True


def _lab_opening_handlers() -> tuple[type, ...]:
    """Handler classes whose GET means "JupyterLab is opening": the launcher tiles, the JupyterLab page."""
    from jupyter_server_proxy.api import ServersInfoHandler

    classes: list[type] = [ServersInfoHandler]
    try:
        from jupyterlab_server.handlers import LabHandler
    except ImportError:  # a server without JupyterLab still has the tiles' route
        pass
    else:
        classes.append(LabHandler)
    return tuple(classes)


def find_routes(web_app, base_url: str):
    """``(rules that mean JupyterLab is opening, (mlflow proxy handler class, its kwargs) or None)`` of *web_app*."""
    from jupyter_server.utils import url_path_join

    opening = _lab_opening_handlers()
    opening_rules, proxy = [], None
    proxy_path = url_path_join(base_url, PROXY_NAME, "(.*)") + "$"
    for router in (web_app.default_router, web_app.wildcard_router):
        for rule in routing_rules(router):
            target = rule.target
            if isinstance(target, type) and target in opening:  # exactly: not LabHandler's 404 page
                opening_rules.append(rule)
            pattern = getattr(getattr(rule.matcher, "regex", None), "pattern", None)
            if pattern == proxy_path and isinstance(target, type):
                proxy = (target, dict(rule.target_kwargs))
    return opening_rules, proxy


def install(web_app, logger: logging.Logger = log) -> bool:
    """Make JupyterLab's page and launcher tiles start the MLflow UI the first time either is asked. Whether it could."""
    base_url = web_app.settings.get("base_url", "/")
    opening_rules, proxy = find_routes(web_app, base_url)
    if not opening_rules or proxy is None:
        logger.warning("MLflow UI warm-up: jupyter-server-proxy routes not found; the UI starts on first visit")
        return False
    started = []

    def warm():
        if not started:
            started.append(asyncio.ensure_future(start_through_proxy(web_app, *proxy, logger=logger)))

    for rule in opening_rules:
        rule.target = _warming(rule.target, warm)
    return True


def _warming(handler_class: type, warm) -> type:
    """A subclass of *handler_class* whose GET by the server's owner first calls ``warm()``."""

    class Warming(handler_class):
        def get(self, *args, **kwargs):
            # current_user is set by prepare(); the GET itself stays @authenticated.
            if self.current_user:
                warm()
            # tornado awaits what a handler method returns: works for sync and async GETs.
            return super().get(*args, **kwargs)

    Warming.__name__ = Warming.__qualname__ = f"MlflowWarming{handler_class.__name__}"
    Warming.__doc__ = f"{handler_class.__name__} that also starts the MLflow UI, once."
    return Warming


class _NoConnection:
    """The connection of a request nobody sent: the warm-up's stand-in for a click."""

    context = None

    def set_close_callback(self, callback):
        pass


async def start_through_proxy(web_app, handler_class, handler_kwargs, logger: logging.Logger = log) -> bool:
    """Start the proxied process as a first visit would (same state and lock). Whether it is ready."""
    from jupyter_server.utils import url_path_join
    from tornado.httputil import HTTPServerRequest

    path = url_path_join(web_app.settings.get("base_url", "/"), PROXY_NAME, "")
    request = HTTPServerRequest(method="GET", uri=path, connection=_NoConnection())
    try:
        handler = handler_class(web_app, request, **handler_kwargs)
        await handler.ensure_process()
    except Exception as exc:  # the click will try again and show the error to the user
        logger.warning("MLflow UI warm-up failed (it starts on first visit instead): %s", exc)
        return False
    logger.info("MLflow UI started as JupyterLab opened, ahead of the first visit")
    return True
