"""Team stores in the MLflow UI: one MLflow UI process per store, behind the user's own.

MLflow's server keeps its tracking store in module globals read from the environment
(``mlflow.server.handlers``), so one process serves one store. The user's MLflow UI
(:mod:`enertef_hub.notebook.mlflow_ui`, at the proxy prefix ``P`` =
``/user/<name>/mlflow``) therefore serves the user's own store itself and starts one
child process per team store on its first visit:

=======================  ==========================================================
``P/``                   the user's own store (this process)
``P/team/<team>/``       team ``<team>``'s store: its runs, models and artifacts
``P/team/``              a page listing the stores the user can open
``P/enertef-stores``     the same list as JSON, read by the switcher
``P/enertef-stores.js``  the store switcher every MLflow page of the user shows
=======================  ==========================================================

Who is in which team is asked of the database (the user's team logins, as
``mlflow_group_utils.my_teams()`` does), anew for each page a person opens and at most
:data:`MEMBERSHIP_TTL` seconds old for the page's API calls: a user added to a team can
open its store without restarting anything, and a user who was removed gets a "not a
member" answer and their process for that team is stopped.
The team process connects with the member's team login (``m_<team>_<user>``, the
user's own password, ``-c role=t_<team>``), so the database enforces the same: once
the hub has removed a member, that login no longer exists.

A team process reads artifacts from the team's bucket (``s3://team-<team>/mlflow``)
with the server's own storage keys, which reach the team buckets of the user's teams.
It gets the same environment as this process (passed through, never on the command
line, which other accounts can read) and stops when this process does, or after
:data:`IDLE_ENV` seconds without a request.

Requests reach a team process through this one, so the port-proxy guard's rules hold
for them: jupyter-server-proxy has already removed the visitor's cookies,
``Authorization`` header and token (:mod:`enertef_hub.notebook.port_proxy`).
"""

from __future__ import annotations

import html
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..naming import InvalidNameError, make_team_login_pattern, normalize_team_name

#: Seconds a team's MLflow UI process may go without a request before it is stopped
#: (each costs about 150 MB); it starts again on the next visit.
IDLE_ENV = "ENERTEF_MLFLOW_TEAM_UI_IDLE"
DEFAULT_IDLE_SECONDS = 1800

#: How old the answer to "which teams is this user in" may be, in seconds.
MEMBERSHIP_TTL = 5.0

#: Path (under the prefix) of a team's store, followed by the team's name.
TEAM_PATH = "team"
#: Path (under the prefix) of the stores' list, as JSON, and of the switcher script.
STORES_PATH = "enertef-stores"
SWITCHER_PATH = "enertef-stores.js"

#: Seconds a team's UI process may take to listen on its socket (MLflow itself
#: loads afterwards, behind the process's own "starting" page).
LISTEN_TIMEOUT = 30.0

#: Hop-by-hop headers, never forwarded (RFC 9110, section 7.6.1).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "proxy-connection"})  # fmt: skip
#: Never forwarded to a team UI either: jupyter-server-proxy already removes the
#: visitor's credentials (port_proxy.CREDENTIAL_HEADERS), and a team's process gets
#: no more than the user's own UI even if something in front forwarded them.
_CREDENTIALS = frozenset({"cookie", "authorization"})

log = logging.getLogger(__name__)


# -- pure builders -------------------------------------------------------------------


def make_team_store_uri(personal_uri: str, team: str) -> str:
    """The user's tracking URI turned into team *team*'s store (pure).

    The user's team login (``m_<team>_<user>``, same password) acting as the team role,
    in the team's schema: exactly what ``mlflow_group_utils.use_team()`` connects with.
    Raises ValueError for a URI that is not a workbench user's.
    """
    team = normalize_team_name(team)
    parts = urlsplit(personal_uri)
    login = parts.username or ""
    if not parts.scheme.startswith("postgresql") or not login.startswith("u_"):
        raise ValueError("This server's MLflow store is not a workbench store: restart your server from the hub "
                         "control panel.")  # fmt: skip
    netloc = f"m_{team}_{login[2:]}" + parts.netloc[len(login):]
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-c role=t_{team} -c search_path=t_{team}"))
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, quote_via=quote)))


def make_team_ui_environment(environ: dict[str, str], team: str) -> dict[str, str]:
    """The environment of team *team*'s UI process, from this server's (pure).

    The team's store as MLflow's backend and registry, the team's bucket as artifact
    root; MLflow server variables this process set for itself are left out.
    """
    personal = environ.get("ENERTEF_MLFLOW_BACKEND_STORE_URI") or environ.get("MLFLOW_TRACKING_URI") or ""
    uri = make_team_store_uri(personal, team)
    env = {k: v for k, v in environ.items() if not k.startswith("_MLFLOW_")}
    env.update(ENERTEF_MLFLOW_BACKEND_STORE_URI=uri, MLFLOW_TRACKING_URI=uri,
               ENERTEF_MLFLOW_ARTIFACT_ROOT=f"s3://team-{normalize_team_name(team)}/mlflow")  # fmt: skip
    return env


def make_store_list(prefix: str, teams: list[str]) -> list[dict]:
    """The stores a user can open, with their URLs under *prefix* (pure)."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    stores = [{"name": "personal", "title": "My own store", "url": f"{prefix}/"}]
    stores += [{"name": f"team {t}", "title": f"Team {t}", "url": f"{prefix}/{TEAM_PATH}/{t}/"} for t in teams]
    return stores


def split_team_path(prefix: str, path: str) -> tuple[str, str] | None:
    """``(team, rest)`` when *path* is under ``<prefix>/team/``, else None (pure).

    ``team`` is ``""`` for the list page (``<prefix>/team`` or ``<prefix>/team/``).
    """
    base = f"{prefix}/{TEAM_PATH}"
    if path == base:
        return "", ""
    if not path.startswith(base + "/"):
        return None
    team, _, rest = path[len(base) + 1:].partition("/")
    return team, rest


def idle_seconds(environ: dict[str, str] | None = None) -> float:
    """Seconds without a request after which a team's UI process stops (:data:`IDLE_ENV`)."""
    environ = os.environ if environ is None else environ
    try:
        return max(60.0, float(environ.get(IDLE_ENV, DEFAULT_IDLE_SECONDS)))
    except ValueError:
        return float(DEFAULT_IDLE_SECONDS)


# -- membership ----------------------------------------------------------------------


def member_teams(personal_uri: str) -> list[str]:
    """Teams whose store the user can open now, asked of the database.

    The hub gives a member a team login (``m_<team>_<user>``) when an admin adds them
    and drops it when they are removed; the catalogue is readable by every login.
    Raises ``OSError``-like ``psycopg.Error`` when the database cannot be asked.
    """
    import psycopg

    parts = urlsplit(personal_uri)
    login = parts.username or ""
    if not login.startswith("u_"):
        return []
    libpq = urlunsplit(parts._replace(scheme="postgresql"))
    with psycopg.connect(libpq, connect_timeout=5) as conn:
        rows = conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname ~ %s AND rolcanlogin ORDER BY 1",
                            (make_team_login_pattern(login),)).fetchall()  # fmt: skip
    me = login[2:]  # m_<team>_<me>: names hold no underscore, so the team is what lies between
    return [name[2:-(len(me) + 1)] for (name,) in rows]


class Membership:
    """The user's teams, asked of the database at most every *ttl* seconds (thread-safe)."""

    def __init__(self, personal_uri: str, ttl: float = MEMBERSHIP_TTL, ask=member_teams):
        self._uri = personal_uri
        self._ttl = ttl
        self._ask = ask
        self._lock = threading.Lock()
        self._teams: list[str] | None = None
        self._asked = 0.0

    def teams(self, fresh: bool = False) -> list[str] | None:
        """The user's teams, or None if the database cannot be asked now."""
        with self._lock:
            if fresh or self._teams is None or time.monotonic() - self._asked > self._ttl:
                try:
                    self._teams = self._ask(self._uri)
                except Exception as exc:  # noqa: BLE001 - unreachable now; the caller says so
                    # The message names host and login, never the password.
                    log.warning("MLflow UI: could not ask the database for your teams: %s", type(exc).__name__)
                    self._teams = None
                self._asked = time.monotonic()
            return None if self._teams is None else list(self._teams)


# -- team UI processes ---------------------------------------------------------------


@dataclass
class TeamUI:
    """One team's MLflow UI process."""

    team: str
    socket_path: str
    process: subprocess.Popen
    last_used: float = field(default_factory=time.monotonic)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, wait: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (a team UI's; the tests reach the MLflow UI's and TensorBoard's with it too)."""

    def __init__(self, path: str, host: str, timeout: float):
        super().__init__(host or "localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


def _accepts(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(path)
        return True
    except OSError:
        return False


class TeamStores:
    """Routes ``<prefix>/team/<team>/...`` to one MLflow UI process per team store.

    Use :meth:`wrap` around the user's own UI. *membership* tells which teams the user
    is in now; *command(team, prefix, socket_path)* is the team UI's command line.
    """

    def __init__(self, prefix: str, membership: Membership, command=None, environ: dict[str, str] | None = None,
                 idle: float | None = None):  # fmt: skip
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.membership = membership
        self._command = command or make_team_ui_command
        self._environ = dict(os.environ if environ is None else environ)
        self.idle = idle_seconds(self._environ) if idle is None else idle
        # Private to this account: the sockets lead to the user's team stores.
        self._socket_dir = tempfile.mkdtemp(prefix="enertef-mlflow-teams-")
        self._uis: dict[str, TeamUI] = {}
        self._lock = threading.Lock()
        self._starting: dict[str, threading.Lock] = {}
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, name="team-uis", daemon=True).start()

    # -- WSGI ------------------------------------------------------------------------

    def wrap(self, app):
        """WSGI app: team paths and the stores' list here, everything else to *app* (the user's own UI)."""

        def dispatch(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == f"{self.prefix}/{STORES_PATH}":
                return self._stores_json(start_response)
            if path == f"{self.prefix}/{SWITCHER_PATH}":
                return _answer(start_response, "200 OK", make_switcher_js(self.prefix),
                               "application/javascript; charset=utf-8")  # fmt: skip
            where = split_team_path(self.prefix, path)
            if where is None:
                return app(environ, start_response)
            team, rest = where
            if not team:
                return self._list_page(start_response)
            return self._team_request(team, environ, start_response, bare=(rest == "" and not path.endswith("/")))

        return dispatch

    def _stores_json(self, start_response):
        teams = self.membership.teams()
        body = json.dumps({"stores": make_store_list(self.prefix, teams or []),
                           "teams_known": teams is not None}).encode()  # fmt: skip
        return _answer(start_response, "200 OK", body, "application/json")

    def _list_page(self, start_response):
        teams = self.membership.teams()
        return _answer(start_response, "200 OK", make_store_page(self.prefix, teams), "text/html; charset=utf-8")

    def _team_request(self, name: str, environ, start_response, bare: bool):
        try:
            team = normalize_team_name(name)
        except InvalidNameError:
            return self._refuse(environ, start_response, "404 Not Found", f"There is no team named {name!r}.")
        if team != name:
            return self._refuse(environ, start_response, "404 Not Found", f"There is no team named {name!r}.")
        # A person opening a page (a visit, a reload) is answered from the database as it is
        # now: a member removed a moment ago sees the refusal, not MLflow's page failing on
        # a login that is gone. The many API calls of a page use the answer of the last
        # MEMBERSHIP_TTL seconds (the database refuses a removed login's calls anyway).
        teams = self.membership.teams(fresh=_is_page_visit(environ))
        if teams is None:
            return self._refuse(environ, start_response, "503 Service Unavailable",
                                "The database cannot be asked which teams you are in right now; try again in a "
                                "minute. If it persists, ask an administrator.")  # fmt: skip
        if team not in teams:
            self.stop(team)
            known = ", ".join(teams) or "none"
            return self._refuse(environ, start_response, "403 Forbidden",
                                f"You are not a member of team {team} (your teams: {known}). "
                                "Ask an admin to add you to its group.")  # fmt: skip
        if bare:  # MLflow's page loads its files relative to the trailing slash
            start_response("302 Found", [("Location", f"{self.prefix}/{TEAM_PATH}/{team}/"), ("Content-Length", "0")])
            return [b""]
        try:
            ui = self.ensure(team)
        except RuntimeError as exc:
            return self._refuse(environ, start_response, "502 Bad Gateway", str(exc))
        return self._forward(ui, environ, start_response)

    def _refuse(self, environ, start_response, status: str, message: str):
        # MLflow's page shows an API error's "message"; a person's visit gets a page.
        if _is_page_visit(environ):
            return _answer(start_response, status, make_message_page(self.prefix, message), "text/html; charset=utf-8")
        code = {"403": "PERMISSION_DENIED", "404": "RESOURCE_DOES_NOT_EXIST"}.get(status[:3], "TEMPORARILY_UNAVAILABLE")
        body = json.dumps({"error_code": code, "message": message}).encode()
        return _answer(start_response, status, body, "application/json")

    def _forward(self, ui: TeamUI, environ, start_response):
        ui.last_used = time.monotonic()
        uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if not uri:
            uri = quote(environ.get("PATH_INFO", "")) + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        headers = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                if name.lower() not in _HOP_BY_HOP | _CREDENTIALS:
                    headers[name] = value
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = environ.get("CONTENT_LENGTH")
        body = None
        if length:
            body = environ["wsgi.input"].read(int(length))
        elif environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read()
        if body is not None:
            headers["Content-Length"] = str(len(body))
        conn = UnixHTTPConnection(ui.socket_path, environ.get("HTTP_HOST", ""), timeout=120)
        try:
            conn.request(environ.get("REQUEST_METHOD", "GET"), uri, body=body, headers=headers)
            response = conn.getresponse()
        except OSError as exc:
            conn.close()
            return self._refuse(environ, start_response, "502 Bad Gateway",
                                f"The MLflow UI of team {ui.team} did not answer ({type(exc).__name__}); reload the "
                                "page to start it again.")  # fmt: skip
        start_response(f"{response.status} {response.reason}",
                       [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP])

        def stream():
            try:
                while chunk := response.read(65536):
                    ui.last_used = time.monotonic()
                    yield chunk
            finally:
                conn.close()

        return stream()

    # -- processes -------------------------------------------------------------------

    def ensure(self, team: str) -> TeamUI:
        """Team *team*'s UI process, started if it is not running; raises RuntimeError if it cannot listen."""
        with self._lock:
            ui = self._uis.get(team)
            if ui is not None and ui.running():
                return ui
            starting = self._starting.setdefault(team, threading.Lock())
        with starting:  # one start per team, however many requests arrive meanwhile
            with self._lock:
                ui = self._uis.get(team)
                if ui is not None and ui.running():
                    return ui
            if ui is not None:
                ui.stop()
            ui = self._start(team)
            with self._lock:
                self._uis[team] = ui
            return ui

    def _start(self, team: str) -> TeamUI:
        socket_path = os.path.join(self._socket_dir, f"{team}.sock")
        try:
            os.unlink(socket_path)
        except OSError:
            pass
        cmd = self._command(team, f"{self.prefix}/{TEAM_PATH}/{team}", socket_path)
        # The same environment as this process (the user's keys reach the team bucket);
        # the team's store is derived from it in the child, never put on its command line.
        env = {k: v for k, v in self._environ.items() if not k.startswith("_MLFLOW_")}
        process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        log.info("MLflow UI of team %s: started (pid %d)", team, process.pid)
        deadline = time.monotonic() + LISTEN_TIMEOUT
        while not _accepts(socket_path):
            if process.poll() is not None or time.monotonic() > deadline:
                ui = TeamUI(team, socket_path, process)
                ui.stop()
                raise RuntimeError(f"The MLflow UI of team {team} could not start (see the server's log); reload "
                                   "the page to try again. If it persists, ask an administrator.")  # fmt: skip
            time.sleep(0.05)
        return TeamUI(team, socket_path, process)

    def stop(self, team: str) -> bool:
        """Stop team *team*'s UI process if one runs. Whether one did."""
        with self._lock:
            ui = self._uis.pop(team, None)
        if ui is None:
            return False
        ui.stop()
        log.info("MLflow UI of team %s: stopped", team)
        return True

    def running(self) -> list[str]:
        """Teams whose UI process runs now."""
        with self._lock:
            return sorted(t for t, ui in self._uis.items() if ui.running())

    def stop_all(self) -> None:
        self._stopped.set()
        for team in list(self._uis):
            self.stop(team)
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def sweep(self) -> list[str]:
        """Stop the processes of teams the user left and of idle ones; the teams stopped."""
        with self._lock:
            if not self._uis:
                return []
            idle = [t for t, ui in self._uis.items() if time.monotonic() - ui.last_used > self.idle or not ui.running()]
        teams = self.membership.teams(fresh=True)
        gone = [t for t in self.running() if teams is not None and t not in teams]
        stopped = []
        for team in sorted(set(idle) | set(gone)):
            if self.stop(team):
                stopped.append(team)
        return stopped

    def _watch(self, every: float = 15.0) -> None:
        while not self._stopped.wait(every):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the watch must outlive one bad round
                log.exception("MLflow UI: checking the team stores' processes failed")


def make_team_ui_command(team: str, prefix: str, socket_path: str) -> list[str]:
    """Command line of team *team*'s MLflow UI process (no secret on it: other accounts can read it)."""
    return [sys.executable, "-m", "enertef_hub.notebook.mlflow_ui", "--team", team, "--prefix", prefix,
            "--unix-socket", socket_path, "--exit-with-parent", str(os.getpid())]  # fmt: skip


def stop_with_process(stores: TeamStores) -> None:
    """Stop the team processes when this process is told to stop (SIGTERM from jupyter-server-proxy)."""

    def on_term(signum, frame):
        stores.stop_all()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)


def exit_with_parent(parent_pid: int, every: float = 1.0) -> None:
    """End this process when *parent_pid* is no longer its parent (the user's UI stopped or died)."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# -- pages ---------------------------------------------------------------------------


def _is_page_visit(environ) -> bool:
    """Whether a request is a browser opening a page (not one of the page's own API calls)."""
    return environ.get("REQUEST_METHOD") == "GET" and "text/html" in environ.get("HTTP_ACCEPT", "")


def _answer(start_response, status: str, body: bytes, content_type: str):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])  # fmt: skip
    return [body]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; color: #1f272d; background: #f7f8f9; }}
main {{ max-width: 36em; margin: 4em auto; padding: 2em; background: #fff; border-radius: 8px;
       box-shadow: 0 1px 3px rgba(0,0,0,.12); }}
li {{ margin: .5em 0; }} a {{ color: #2272b4; }}
</style></head><body><main>{body}</main></body></html>
"""


def make_store_page(prefix: str, teams: list[str] | None) -> bytes:
    """The page listing the stores the user can open (pure)."""
    items = "".join(f'<li><a href="{html.escape(s["url"])}">{html.escape(s["title"])}</a></li>'
                    for s in make_store_list(prefix, teams or []))  # fmt: skip
    note = ("<p>You are in no team yet: an admin adds you to a team (a group in the hub's admin panel).</p>"
            if teams == [] else "")
    if teams is None:
        note = "<p>The database cannot be asked which teams you are in right now; try again in a minute.</p>"
    body = f"<h1>MLflow stores</h1><p>Open your own runs and models, or a team's:</p><ul>{items}</ul>{note}"
    return _PAGE.format(title="MLflow stores", body=body).encode()


def make_message_page(prefix: str, message: str) -> bytes:
    """A page saying *message*, with a way back to the user's own store (pure)."""
    body = (f"<h1>This team store cannot be opened</h1><p>{html.escape(message)}</p>"
            f'<p><a href="{html.escape(prefix)}/">Open your own store</a> · '
            f'<a href="{html.escape(prefix)}/{TEAM_PATH}/">All stores you can open</a></p>')
    return _PAGE.format(title="MLflow store", body=body).encode()


#: The store switcher on every MLflow page of the user (own store and team stores): a
#: small select at the top right, shown only to users in at least one team. A style of
#: its own, not MLflow's components, so MLflow's React keeps working on its own tree.
SWITCHER_JS = """// enertef-hub: switch the MLflow UI between your own store and your teams' stores.
(function () {
  var list = %(list)s;
  function mount(stores) {
    if (!stores || stores.length < 2 || document.getElementById("enertef-store-switcher")) return;
    var path = window.location.pathname, current = stores[0];
    stores.forEach(function (s) { if (path.indexOf(s.url) === 0 && s.url.length > current.url.length) current = s; });
    var box = document.createElement("label");
    box.id = "enertef-store-switcher";
    box.title = "Which MLflow store this page shows";
    box.style.cssText = "position:fixed;top:6px;right:12px;z-index:1000;display:flex;align-items:center;gap:6px;" +
      "font:13px system-ui,sans-serif;color:#5f7281;background:#fff;border:1px solid #d1d9e1;" +
      "border-radius:4px;padding:2px 4px 2px 8px;box-shadow:0 1px 2px rgba(0,0,0,.08)";
    box.appendChild(document.createTextNode("Store"));
    var select = document.createElement("select");
    select.setAttribute("aria-label", "MLflow store");
    select.style.cssText = "font:inherit;color:#1f272d;border:0;background:transparent;padding:2px";
    stores.forEach(function (s) {
      var option = document.createElement("option");
      option.value = s.url;
      option.textContent = s.title;
      option.selected = s === current;
      select.appendChild(option);
    });
    select.addEventListener("change", function () { window.location.assign(select.value); });
    box.appendChild(select);
    document.body.appendChild(box);
  }
  function load() {
    fetch(list, {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) { mount(data.stores); }, function () {});
  }
  if (document.body) load(); else document.addEventListener("DOMContentLoaded", load);
})();
"""


def make_switcher_js(prefix: str) -> bytes:
    """The switcher script for a UI whose own store is at *prefix* (pure)."""
    return (SWITCHER_JS % {"list": json.dumps(f"{prefix}/{STORES_PATH}")}).encode()
