"""A real JupyterHub for tests and benchmarks, and what they do with it.

:func:`running_hub` starts ``jupyterhub -f`` :data:`HUB_CONFIG` (the one next to
``sys.executable``, so the same tests run under whichever venv runs them: ``.venv``
with JupyterHub 6.x, ``.venv-hub``, the hub image's environment, with 5.5):
EnerTEFAuthenticator, EnerTEFLocalSpawner (servers run as the hub's own OS user unless
``ENERTEF_E2E_SYSTEM_USERS`` is set), real PostgreSQL and MinIO, a state directory for
the hub database, cookie secret and homes, ports from 18200-18599. It yields a
:class:`Hub`. The admin account exists from the start: the hub creates it from
``ENERTEF_HUB_ADMIN_PASSWORD`` (``EnerTEFAuthenticator.admin_password``), as in
production; nobody can sign up under the admin's name.

The rest are plain functions of a :class:`Hub`: its users' servers
(:func:`start_server`, :func:`server_environment`), the lifecycle events in its log
(:func:`events_for`, :func:`wait_for_event`); its forms are in :mod:`.forms`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import requests

from .forms import login_session
from .services import require_root

HUB_CONFIG = Path(__file__).with_name("hub_config.py")
PORT_RANGE = range(18200, 18600)
# Public, hub, proxy API, then user servers. The session's hub keeps every server a test
# started (77 ports: the whole e2e tier ran out of 17 in CI).
PORTS_PER_HUB = 80


@dataclass
class Hub:
    """A running test hub (:func:`running_hub`; the ``hub`` fixture of tests/conftest.py)."""

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


# ------------------------------------------------------------------ running it


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # as servers do: connections of a finished run (TIME_WAIT) do not hold the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port_block() -> int:
    # Several test sessions (or engineers) may run hubs at once: take the first
    # block whose fixed ports are all free.
    for base in range(PORT_RANGE.start, PORT_RANGE.stop, PORTS_PER_HUB):
        if all(_port_free(base + i) for i in range(3)):
            return base
    raise RuntimeError(f"no free block of ports in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def _jupyterhub_executable() -> str:
    exe = Path(sys.executable).parent / "jupyterhub"
    if not exe.exists():
        raise RuntimeError(f"{exe} not found: install jupyterhub in the venv running pytest")
    return str(exe)


def _wait_for_hub(process: subprocess.Popen, url: str, log_path: Path, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"jupyterhub exited with {process.returncode} while starting; its log:\n"
                + log_path.read_text(errors="replace")[-6000:]
            )
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"jupyterhub did not answer at {url} within {timeout}s; its log:\n"
        + log_path.read_text(errors="replace")[-6000:]
    )


def _parent_and_start(pid: int) -> tuple[int, str] | None:
    """A process's parent and start time (``/proc/PID/stat``), or None once it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19]


def _process_tree(pid: int) -> list[tuple[int, str]]:
    """The descendants of ``pid``, each as (pid, start time), read from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (seen := _parent_and_start(int(entry.name))) is not None:
            children.setdefault(seen[0], []).append((int(entry.name), seen[1]))
    found, parents = [], [pid]
    while parents:
        for child in children.get(parents.pop(), []):
            found.append(child)
            parents.append(child[0])
    return found


def _stop(process: subprocess.Popen):
    if process.poll() is not None:
        return
    # The hub's managed services (the idle culler) and users' servers run in sessions of
    # their own: a hub that has to be killed would leave them running, polling a dead hub.
    tree = _process_tree(process.pid)
    # SIGTERM lets JupyterHub stop users' servers (cleanup_servers) and its proxy.
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    for pid, started in tree:
        seen = _parent_and_start(pid)  # None: it ended with the hub, as it should
        if seen is not None and seen[1] == started:  # the very process (a PID may be reused)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_hub(services_env: dict, state_dir: Path, extra_env: dict | None = None):
    """Start a hub with :data:`HUB_CONFIG` in ``state_dir``; stop it on exit.

    ``extra_env`` adds to the hub's environment, e.g. ``ENERTEF_E2E_EXTRA_CONFIG`` (more
    config files, ``os.pathsep``-separated) or ``ENERTEF_E2E_SYSTEM_USERS=1``.
    """
    if shutil.which("configurable-http-proxy") is None:
        raise RuntimeError(
            "configurable-http-proxy is not installed: npm install -g configurable-http-proxy"
        )
    # Homes must be reachable by the server process; nothing else of the user's is here.
    (state_dir / "homes").mkdir()
    base = _pick_port_block()
    token = secrets.token_hex(32)
    admin_name = "hubboss"
    admin_password = secrets.token_urlsafe(18)
    env = {
        **os.environ,
        **services_env,
        "ENERTEF_E2E_DIR": str(state_dir),
        "ENERTEF_E2E_PORT": str(base),
        "ENERTEF_E2E_USER_PORTS": f"{base + 3}-{base + PORTS_PER_HUB - 1}",
        "ENERTEF_E2E_ADMIN": admin_name,
        "ENERTEF_E2E_TOKEN": token,
        # The operator's bootstrap: the hub creates the admin account from this at start.
        "ENERTEF_HUB_ADMIN_PASSWORD": admin_password,
        # The user servers (jupyterhub-singleuser, JupyterLab) come from the same venv, or
        # from ENERTEF_E2E_NOTEBOOK_BIN when the hub runs in the hub image's environment
        # (which, like the image, has no JupyterLab: the notebook image has its own).
        "PATH": os.pathsep.join([os.environ.get("ENERTEF_E2E_NOTEBOOK_BIN", str(Path(sys.executable).parent)),
                                 str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    log_path = state_dir / "jupyterhub.log"
    # The hub's public URL: http://localhost:PORT, users at http://<name>.localhost:PORT.
    shared = (extra_env or {}).get("ENERTEF_E2E_SHARED_ORIGIN") or os.environ.get("ENERTEF_E2E_SHARED_ORIGIN")
    url = f"http://{'127.0.0.1' if shared else 'localhost'}:{base}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [_jupyterhub_executable(), "-f", str(HUB_CONFIG)],
            cwd=state_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a stuck hub and its proxy can be killed as a group
        )
    hub = Hub(url, token, admin_name, admin_password, log_path, state_dir, process)
    try:
        _wait_for_hub(process, url, log_path)
        hub.admin_session()  # the admin exists from the start (raises if it cannot log in)
        yield hub
    finally:
        _stop(process)


@contextlib.contextmanager
def running_system_users_hub(services_env: dict, prefix: str):
    """A hub as production runs on one machine: as root, each user's server as a system
    account ``jupyter-<name>`` of its own. The accounts it made are removed after it.

    Not root: a failure in CI (which runs as root), a skip elsewhere.
    """
    import pwd

    require_root("system-user mode needs the hub to run as root")
    # Not under pytest's private tmp_path: the users' homes must be reachable by them.
    state_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(state_dir, 0o755)
    try:
        with running_hub(services_env, state_dir, {"ENERTEF_E2E_SYSTEM_USERS": "1"}) as hub:
            yield hub
    finally:
        # Leave no test accounts on the machine.
        for account in pwd.getpwall():
            if account.pw_dir.startswith(str(state_dir)):
                subprocess.run(["userdel", account.pw_name], check=False, capture_output=True)
        shutil.rmtree(state_dir, ignore_errors=True)


# ------------------------------------------------------------------ its users: servers, lifecycle events


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


def spawn_and_follow(hub: Hub, username: str) -> list[dict]:
    """Start ``username``'s server and return every progress event until it is ready or failed."""
    if hub.api("GET", f"/users/{username}").status_code == 404:
        hub.api("POST", f"/users/{username}").raise_for_status()
    started = hub.api("POST", f"/users/{username}/server")
    assert started.status_code in (201, 202), started.text
    response = hub.api("GET", f"/users/{username}/server/progress", stream=True, timeout=240,
                       headers={"Accept": "text/event-stream"})
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data:"):
            event = json.loads(line[len("data:"):])
            events.append(event)
            if event.get("ready") or event.get("failed"):
                break
    return events


def server_pid(hub: Hub, username: str) -> int:
    """PID of the user's running server process (from the spawner state the hub keeps)."""
    model = hub.api("GET", f"/users/{username}").json()
    state = model["servers"][""].get("state") or {}
    if "pid" not in state:
        raise AssertionError(f"no pid in {username}'s server state: {state!r}")
    return int(state["pid"])


def kernel_pids(server: int) -> list[int]:
    """PIDs of the kernels (ipykernel processes) below the server process ``server``."""
    import psutil

    found = []
    for child in psutil.Process(server).children(recursive=True):
        try:
            if "ipykernel" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


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
