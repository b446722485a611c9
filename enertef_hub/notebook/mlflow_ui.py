"""A light, single-process MLflow UI for one user, served behind jupyter-server-proxy.

``mlflow server`` is built for a shared tracking server: a CLI process that starts
uvicorn with four workers plus a job runner (measured here: 15 processes, ~3 GB RSS;
``--workers 1`` without jobs still two processes, ~575 MB). A user looking at their
own runs needs none of that, so this module serves MLflow's own Flask application
(``mlflow.server.app``: the UI and the REST/ajax API it calls) from ONE process with
Werkzeug's threaded server, no job execution and no artifact proxying (artifacts are
read straight from the user's bucket with the server's own credentials).

Configuration comes from the environment the hub gives every server:
``ENERTEF_MLFLOW_BACKEND_STORE_URI`` (falls back to ``MLFLOW_TRACKING_URI``) and
``ENERTEF_MLFLOW_ARTIFACT_ROOT``. Run::

    python -m enertef_hub.notebook.mlflow_ui --prefix /user/alice/mlflow --unix-socket PATH
    python -m enertef_hub.notebook.mlflow_ui --prefix /user/alice/mlflow --port 18123

The user's own UI also opens the stores of the user's teams, each in a process of its
own started on first visit (``--team``, at ``<prefix>/team/<team>/``), and shows a
store switcher on every page: :mod:`enertef_hub.notebook.team_stores`.

Why the security settings below: behind jupyter-server-proxy every request carries
the hub's public ``Host`` and ``Origin``, which MLflow's default host and CORS checks
(made for a server on localhost) reject. Authentication is the hub's (the proxy
only forwards requests of the server's owner), but the proxy leaves cross-site
request forgery checks to the proxied app, so we replace MLflow's origin allow-list
by a same-origin rule: a state-changing request must come from a page of the same
host it is sent to.

Memory and start-up: the process listens from its first fraction of a second and
shows a "starting" page while MLflow loads in the background
(:mod:`enertef_hub.notebook.ui_loading`), and MLflow is imported without the
libraries its UI never uses (:mod:`enertef_hub.notebook.mlflow_imports`: pandas,
pyarrow, numpy, scipy; ~300 MB became ~150 MB).

Endpoints of features this server leaves out, which MLflow's own page calls on every
visit (MLflow's basic-auth accounts and the Assistant), get the answer MLflow's page
takes for "not set up" (see :data:`ABSENT_FEATURE_ANSWERS`) instead of a 404 in the
browser console.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

from .html_pages import serve_edited_html
from .mlflow_imports import ImportPolicy
from .team_stores import (SWITCHER_PATH, TEAM_PATH, Membership, TeamStores, exit_with_parent,
                          make_team_ui_environment, stop_with_process)
from .ui_loading import LoadingApp

#: Methods that change state and so must pass the same-origin check.
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def make_server_environment(prefix: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables MLflow's server module reads at import, for this user and *prefix*.

    Pure: returns the variables to set; raises ValueError with a user-facing message
    when the server has no MLflow store configured.
    """
    environ = os.environ if environ is None else environ
    backend = environ.get("ENERTEF_MLFLOW_BACKEND_STORE_URI") or environ.get("MLFLOW_TRACKING_URI")
    if not backend or backend.startswith(("http:", "https:")):
        raise ValueError(
            "No MLflow database is configured for this server (ENERTEF_MLFLOW_BACKEND_STORE_URI "
            "is not set). Restart your server from the hub control panel; if it persists, "
            "ask an administrator to check the workbench provisioning."
        )
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    env = {
        # Names are MLflow's own (mlflow.server.handlers / mlflow.server.__init__).
        "_MLFLOW_SERVER_FILE_STORE": backend,
        "_MLFLOW_SERVER_REGISTRY_STORE": backend,
        "_MLFLOW_STATIC_PREFIX": prefix,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # Same-origin is enforced by same_origin_guard; see the module docstring.
        "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": "*",
        # A UI process for one user must not phone home.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    artifact_root = environ.get("ENERTEF_MLFLOW_ARTIFACT_ROOT")
    if artifact_root:
        env["_MLFLOW_SERVER_ARTIFACT_ROOT"] = artifact_root
    if not prefix:
        del env["_MLFLOW_STATIC_PREFIX"]
    return env


def is_same_origin(method: str, origin: str | None, host: str | None) -> bool:
    """Whether a request may proceed: safe methods always; state changes only from the same host.

    A missing ``Origin`` is allowed: browsers send it on every cross-site POST, so its
    absence means a same-site navigation or a non-browser client (which the hub
    already authenticated).
    """
    if method.upper() not in _STATE_CHANGING or not origin:
        return True
    if origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def same_origin_guard(wsgi_app):
    """WSGI middleware refusing cross-site state-changing requests with 403."""

    def guarded(environ, start_response):
        if is_same_origin(environ.get("REQUEST_METHOD", "GET"), environ.get("HTTP_ORIGIN"), environ.get("HTTP_HOST")):
            return wsgi_app(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"Cross-site request refused: open the MLflow UI from your JupyterLab.\n"]

    return guarded


#: Served next to the UI page and loaded by it before MLflow's bundle.
UI_DEFAULTS_PATH = "enertef-ui-defaults.js"

#: First-visit defaults of the UI. MLflow 3 opens an experiment in its "GenAI" view,
#: whose Traces page is empty for runs logged with ``mlflow.start_run()``; the
#: workbench is for model training, so that view is the default (MLflow keeps the
#: choice in localStorage as ``mlflow.workflowType_v1``; a switch in the UI is kept).
#:
#: It also hides what cannot work in a user's server (MLflow 3.17's own names, found
#: in its bundle): the Assistant panel (it needs a Claude Code CLI, an AI Gateway or
#: Ollama; its open state is ``mlflow.assistant.panelOpen_v1`` and it opens itself once
#: unless ``mlflow.assistant.fab.autoOpenedOnFirstLoad_v1`` is set), the home page's
#: "Getting Started" section ("Start Demo" and the GenAI feature cards: the demo writes
#: traces and prompts the workbench has no use for) and the AI Gateway sidebar links.
#: MLflow marks the Assistant's button and panel ``data-assistant-ui``.
#: A style sheet, not DOM surgery, so MLflow's React keeps working on its own tree.
UI_DEFAULTS_JS = b"""// enertef-hub: open MLflow on its model-training view unless the user chose another,
// and hide the GenAI-only parts that cannot work in a user's server.
try {
  var store = window.localStorage;
  if (!store.getItem("mlflow.workflowType_v1")) {
    store.setItem("mlflow.workflowType_v1", JSON.stringify("machine_learning"));
  }
  store.setItem("mlflow.assistant.panelOpen_v1", "false");
  store.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
} catch (e) {}
(function () {
  var style = document.createElement("style");
  style.id = "enertef-ui-hidden";
  style.textContent = [
    '[data-assistant-ui]',
    '[data-component-id^="mlflow.assistant."]',
    '[data-component-id^="mlflow.experiment_side_nav.assistant"]',
    '[data-component-id^="mlflow.sidebar.gateway"]',
    'a[href*="/gateway"]',
    'section:has([data-component-id="mlflow.home.demo-banner.launch"])',
    // The panel's column, should MLflow open it anyway (close button < header < panel < column).
    'div:has(> div > div > div > [data-component-id="mlflow.assistant.chat_panel.close"])'
  ].join(",\\n") + " { display: none !important; }";
  document.head.appendChild(style);
})();
"""


def add_ui_defaults(html: bytes, switcher_src: str | None = None) -> bytes:
    """The UI page loading :data:`UI_DEFAULTS_JS` before MLflow's (deferred) bundle (pure).

    With *switcher_src*, also the store switcher (:mod:`enertef_hub.notebook.team_stores`).
    """
    tags = [f'<script src="{UI_DEFAULTS_PATH}"></script>']
    if switcher_src:
        tags.append(f'<script src="{switcher_src}" defer></script>')
    for tag in (t.encode() for t in tags):
        if tag not in html:
            html = html.replace(b"</head>", tag + b"</head>", 1)
    return html


def ui_defaults(wsgi_app, switcher_src: str | None = None):
    """WSGI middleware serving :data:`UI_DEFAULTS_JS` and adding it (and the store switcher) to the UI page."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.endswith("/" + UI_DEFAULTS_PATH):
            start_response("200 OK", [("Content-Type", "application/javascript; charset=utf-8"),
                                      ("Content-Length", str(len(UI_DEFAULTS_JS))), ("Cache-Control", "no-cache")])
            return [UI_DEFAULTS_JS]
        if environ.get("REQUEST_METHOD", "GET") != "GET" or not path.endswith(("/", ".html")):
            return wsgi_app(environ, start_response)
        return serve_edited_html(wsgi_app, environ, start_response, lambda html: add_ui_defaults(html, switcher_src))

    return app


#: Answers to the GET endpoints of features this server leaves out, which MLflow
#: 3.17's page calls on every visit; each is what MLflow's page takes for "not set up"
#: (checked in its bundle: the same state as after the 404 it got before, without the
#: console error). Paths are relative to the prefix.
ABSENT_FEATURE_ANSWERS = {
    # MLflow's basic-auth accounts (the hub authenticates): no MLflow user, no basic
    # auth; the page reads ``user`` and ``is_basic_auth`` (mlflow.server.auth.get_current_user).
    "/ajax-api/2.0/mlflow/users/current": {"user": None, "is_basic_auth": False},
    # The Assistant (mlflow.server.assistant.api's ConfigResponse and
    # ProvidersResponse): nothing configured, no provider, none resolved.
    "/ajax-api/3.0/mlflow/assistant/config": {"providers": {}, "projects": {}, "remote_access_allowed": False},
    "/ajax-api/3.0/mlflow/assistant/providers": {"providers": [], "resolved": None, "gateway_vendor_options": {}},
}


def absent_features(wsgi_app, prefix: str):
    """WSGI middleware answering :data:`ABSENT_FEATURE_ANSWERS` (GET only; everything else passes)."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    answers = {prefix + path: json.dumps(body).encode() for path, body in ABSENT_FEATURE_ANSWERS.items()}

    def app(environ, start_response):
        body = answers.get(environ.get("PATH_INFO", ""))
        if body is None or environ.get("REQUEST_METHOD", "GET") != "GET":
            return wsgi_app(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def make_app(prefix: str = "", import_policy: ImportPolicy | None = None, switcher_src: str | None = None):
    """MLflow's Flask app with the UI's middleware, without the same-origin guard (environment must be set first).

    With *import_policy*, MLflow is imported under it and its optional libraries are
    allowed again afterwards (see :mod:`enertef_hub.notebook.mlflow_imports`). With
    *switcher_src*, its pages show the store switcher loaded from there.
    """
    import logging

    # MLflow warns that wildcard CORS disables credentialed cross-origin requests:
    # exactly what we want (same-origin only), so keep the log free of it.
    logging.getLogger("mlflow.server.security").setLevel(logging.ERROR)
    if import_policy is not None:
        import_policy.install()
    try:
        from mlflow.server import app as flask_app  # heavy: imported only in the UI process
    finally:
        if import_policy is not None:
            import_policy.lift()
    connect_tracking_store()
    return ui_defaults(absent_features(flask_app, prefix), switcher_src)


def connect_tracking_store() -> None:
    """Open the user's store now (engine, schema check: ~0.5 s), not on the page's first call.

    Best effort: if the database cannot be reached now, the UI starts anyway and its
    calls report MLflow's own error, and work again once the database is back.
    """
    import logging

    from mlflow.server import handlers

    try:
        handlers._get_tracking_store()
    except Exception as exc:  # noqa: BLE001 - the UI's own calls retry and report it
        logging.getLogger(__name__).warning("MLflow UI: the tracking store is not reachable yet: %s", exc)


def main(argv: list[str] | None = None) -> int:
    """Command line: serve the UI on a unix socket or a loopback port until stopped."""
    parser = argparse.ArgumentParser(prog="python -m enertef_hub.notebook.mlflow_ui", description=__doc__.split("\n")[0])
    parser.add_argument("--prefix", default="", help="URL path the proxy serves the UI under, e.g. /user/alice/mlflow")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix-socket", help="listen on this unix socket (private to the user)")
    where.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT")
    parser.add_argument("--team", help="serve this team's store (the user's team login) instead of the user's own; "
                        "the prefix then ends in /team/TEAM")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID",
                        help="end when process PID (the user's own MLflow UI) is no longer the parent")
    args = parser.parse_args(argv)
    prefix = "/" + args.prefix.strip("/") if args.prefix.strip("/") else ""
    try:
        if args.team:
            os.environ.update(make_team_ui_environment(dict(os.environ), args.team))
        os.environ.update(make_server_environment(prefix))
    except ValueError as exc:
        print(f"MLflow UI: {exc}", file=sys.stderr)
        return 1
    if args.exit_with_parent:
        exit_with_parent(args.exit_with_parent)

    # The user's own UI (no --team) serves the team stores' list and switcher and
    # starts the team UIs; a team UI's pages load the switcher from there.
    team_suffix = f"/{TEAM_PATH}/{args.team}" if args.team else ""
    stores_prefix = prefix[: -len(team_suffix)] if team_suffix and prefix.endswith(team_suffix) else prefix
    switcher_src = f"{stores_prefix}/{SWITCHER_PATH}" if not args.team or stores_prefix != prefix else None
    title = f"MLflow UI of team {args.team}" if args.team else "MLflow UI"

    # Listen at once; MLflow loads meanwhile (the user sees a "starting" page).
    ui = LoadingApp(
        lambda: make_app(prefix, ImportPolicy(), switcher_src),
        prefix,
        title=title,
        failure_hint="Restart your server from the hub control panel (File > Hub Control Panel); "
        "if it persists, ask an administrator.",
    ).start()
    if not args.team:
        personal = os.environ.get("ENERTEF_MLFLOW_BACKEND_STORE_URI") or os.environ.get("MLFLOW_TRACKING_URI", "")
        stores = TeamStores(prefix, Membership(personal))
        stop_with_process(stores)
        ui = stores.wrap(ui)
    make_ui_server(same_origin_guard(ui), unix_socket=args.unix_socket, port=args.port).serve_forever()
    return 0


def make_ui_server(wsgi_app, unix_socket: str | None = None, port: int | None = None):
    """Werkzeug's threaded WSGI server on *unix_socket* (or 127.0.0.1:*port*), as TensorBoard's here.

    One user's UI behind the hub's proxy needs no more: Werkzeug is loaded with Flask
    anyway, where uvicorn would add an event loop and a thread pool (~2 MB). Requests
    come only through the proxy, so its forwarded scheme and client address are trusted.
    """
    from werkzeug import serving
    from werkzeug.middleware.proxy_fix import ProxyFix

    class QuietHandler(serving.WSGIRequestHandler):
        def log_request(self, *args, **kwargs):
            pass  # no access log (the notebook server logs every proxied request)

    host, port = (f"unix://{unix_socket}", 0) if unix_socket else ("127.0.0.1", port)
    return serving.make_server(host, port, ProxyFix(wsgi_app, x_for=1, x_proto=1), threaded=True,
                               request_handler=QuietHandler)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
