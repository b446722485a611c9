"""Answer at once while a slow WSGI app loads: a "starting" page instead of a hanging tab.

jupyter-server-proxy starts a tool's process on the first visit and holds the
browser's request until the process answers HTTP; it has no loading page of its own
(4.x), and it checks readiness with a growing back-off (0.01 s doubling: 0.31, 0.63,
1.27, 2.55 s...), so a process ready after 1.3 s is noticed after 2.55 s. MLflow takes
seconds to import, more on a busy machine, and the user saw a blank tab with no word
of why.

:class:`LoadingApp` is the WSGI app the server listens with from its first
milliseconds; the slow app is built in a background thread. Until it is ready:

- the UI's page (``GET <prefix>/``) is a short "starting" page that polls
  ``<prefix>/enertef-ui-status`` and reloads itself when the app is ready (or says
  why it could not start);
- any other request under the prefix (the UI's API calls) waits for the app, at most
  :data:`API_WAIT` seconds, then gets ``503`` with ``Retry-After``;
- requests outside the prefix (jupyter-server-proxy's readiness probe asks ``/``)
  get 404 at once, as the app itself would answer them.

Once ready, every request goes straight to the app.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import traceback

#: Seconds an API call made while the app loads may wait for it (under the
#: proxy's own 20 s request timeout).
API_WAIT = 15.0

#: Path, under the prefix, of the loading status (JSON).
STATUS_PATH = "enertef-ui-status"

log = logging.getLogger(__name__)

STARTING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Starting {title}…</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,">
<noscript><meta http-equiv="refresh" content="2"></noscript>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; height: 100vh; display: flex;
       align-items: center; justify-content: center; color: #1f272d; background: #f7f8f9; }}
main {{ max-width: 34em; padding: 2em; text-align: center; }}
.spinner {{ width: 2.5em; height: 2.5em; margin: 0 auto 1.5em; border-radius: 50%;
           border: 0.3em solid #d8dde1; border-top-color: #2272b4; animation: spin 0.9s linear infinite; }}
@keyframes spin {{ to {{ transform: rotate(360deg); }} }}
#failed {{ color: #b8281d; white-space: pre-wrap; text-align: left; }}
</style></head>
<body><main>
<div class="spinner" id="spinner"></div>
<h1 id="headline">Starting your {title}…</h1>
<p id="detail">It starts on first use and takes a few seconds. This page opens it as soon as it is ready.</p>
<p id="failed" hidden></p>
</main>
<script>
(function () {{
  var status = "{status_path}";
  function poll() {{
    fetch(status, {{cache: "no-store", credentials: "same-origin"}})
      .then(function (r) {{ return r.json(); }})
      .then(function (s) {{
        if (s.state === "ready") {{ window.location.reload(); return; }}
        if (s.state === "failed") {{
          document.getElementById("spinner").hidden = true;
          document.getElementById("headline").textContent = "Your {title} could not start";
          document.getElementById("detail").textContent = s.message;
          return;
        }}
        setTimeout(poll, 300);
      }}, function () {{ setTimeout(poll, 1000); }});
  }}
  setTimeout(poll, 300);
}})();
</script>
</body></html>
"""


def make_starting_page(title: str) -> bytes:
    """The "starting" page for a tool named *title* (pure)."""
    return STARTING_PAGE.format(title=html.escape(title), status_path=STATUS_PATH).encode()


def make_status(ready: bool, error: str | None) -> dict:
    """The status answer: ``{"state": "starting" | "ready" | "failed", "message": ...}`` (pure)."""
    if error is not None:
        return {"state": "failed", "message": error}
    return {"state": "ready" if ready else "starting", "message": ""}


def _answer(start_response, status: str, body: bytes, content_type: str, extra=()):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *extra])  # fmt: skip
    return [body]


class LoadingApp:
    """WSGI app that serves ``build()``'s app once built, and a starting page meanwhile.

    *prefix* is the path the app is served under (``/user/alice/mlflow``); *title* names
    the tool to the user; *failure_hint* is added to the message when ``build()`` raises.
    """

    def __init__(self, build, prefix: str, title: str, failure_hint: str = ""):
        self._build = build
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.title = title
        self.failure_hint = failure_hint
        self._app = None
        self._error: str | None = None
        self._done = threading.Event()

    @property
    def ready(self) -> bool:
        return self._app is not None

    def start(self) -> LoadingApp:
        """Build the app in a background thread; returns self."""
        threading.Thread(target=self._load, name="build-ui", daemon=True).start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the app is built or failed; whether it is ready."""
        self._done.wait(timeout)
        return self.ready

    def _load(self):
        try:
            self._app = self._build()
        except BaseException as exc:  # noqa: BLE001 - any failure is shown to the user
            log.error("%s could not start:\n%s", self.title, traceback.format_exc())
            self._error = f"{type(exc).__name__}: {exc}" + (f"\n\n{self.failure_hint}" if self.failure_hint else "")
        finally:
            self._done.set()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == f"{self.prefix}/{STATUS_PATH}":
            body = json.dumps(make_status(self.ready, self._error)).encode()
            return _answer(start_response, "200 OK", body, "application/json")
        if self._app is not None:
            return self._app(environ, start_response)
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            return _answer(start_response, "404 Not Found", b"Not found\n", "text/plain")
        if environ.get("REQUEST_METHOD") == "GET" and path == self.prefix + "/":
            # (also when building failed: the page asks the status and shows why)
            return _answer(start_response, "200 OK", make_starting_page(self.title), "text/html; charset=utf-8")
        if self.wait(API_WAIT):
            return self._app(environ, start_response)
        message = self._error or f"The {self.title} is still starting; try again in a few seconds."
        body = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}).encode()
        return _answer(start_response, "503 Service Unavailable", body, "application/json", [("Retry-After", "2")])
