"""End-to-end harness: a real JupyterHub, real PostgreSQL and MinIO, headless Chromium.

Fixtures (reuse them in any tests/e2e module):

``services_env`` (session)
    The ``ENERTEF_*`` variables of the running PostgreSQL and MinIO, from
    tests/conftest.py's ``services`` (which runs ``scripts/services.sh start`` when
    they are not set). A service that cannot start is a test failure, never a skip.

``hub`` (session)
    A running ``jupyterhub`` (the one next to ``sys.executable``, so the same tests
    run under whichever venv runs pytest, e.g. ``.venv`` with JupyterHub 6.x and
    ``.venv-hub``, the hub image's environment, with 5.5) with tests/e2e/hub_config.py: EnerTEFAuthenticator,
    EnerTEFLocalSpawner (servers run as the hub's own OS user), a temporary
    directory for the hub database, cookie secret and homes, ports from
    18200-18299. A :class:`Hub` with ``.url``, ``.api(method, path, **kw)``,
    ``.token``, ``.admin_name``, ``.admin_password``, ``.log_path``, ``.dir``.
    The admin account exists from the start: the hub creates it from
    ``ENERTEF_HUB_ADMIN_PASSWORD`` (``EnerTEFAuthenticator.admin_password``), as in
    production; nobody can sign up under the admin's name.
    When a test using it fails, the end of the hub log is added to the report.

``browser`` (session), ``page`` (function), ``new_page`` (function)
    Headless Chromium through Playwright's sync API. ``page`` is a fresh browser
    context (own cookies); ``new_page()`` makes more, e.g. one for a user and one
    for the admin.

Helpers (plain functions in tests/e2e/hubharness.py; ``from hubharness import ...``,
this conftest puts the directory on ``sys.path``):

``signup(hub, username, password)`` -> the sign-up form's HTTP response;
``signup_and_approve(hub, username, password)`` -> the normalised username, signed
up through the form and approved by the admin on /hub/authorize;
``start_server(hub, username)`` -> the URL of the user's running server;
``server_environment(hub, username)`` -> the environment of the user's server
process (read from /proc: servers run locally);
``form_session(hub, path)`` -> ``(requests.Session, xsrf_token)`` ready to post a form.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubharness import Hub  # noqa: E402

HUB_CONFIG = Path(__file__).with_name("hub_config.py")
PORT_RANGE = range(18200, 18300)
PORTS_PER_HUB = 20  # public, hub, proxy API, then user servers
SERVICE_VARS = (
    "ENERTEF_POSTGRES_ADMIN_URL",
    "ENERTEF_MINIO_ENDPOINT",
    "ENERTEF_MINIO_ACCESS_KEY",
    "ENERTEF_MINIO_SECRET_KEY",
    "ENERTEF_SECRET_KEY",
)
CHROMIUM = os.environ.get("ENERTEF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# ------------------------------------------------------------------ services


@pytest.fixture(scope="session")
def services_env(services) -> dict[str, str]:
    """ENERTEF_* settings of the running PostgreSQL and MinIO (tests/conftest.py's ``services``)."""
    missing = [name for name in SERVICE_VARS if not services.get(name)]
    if missing:
        raise RuntimeError(f"services environment lacks {', '.join(missing)}")
    return services


# ---------------------------------------------------------------------- hub


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


@pytest.fixture(scope="session")
def hub(services_env, tmp_path_factory) -> Hub:
    """A real JupyterHub running tests/e2e/hub_config.py (see the module docstring)."""
    with running_hub(services_env, tmp_path_factory.mktemp("hub")) as hub:
        yield hub


@contextlib.contextmanager
def running_hub(services_env: dict, state_dir: Path, extra_env: dict | None = None):
    """Start a hub with tests/e2e/hub_config.py in ``state_dir``; stop it on exit."""
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "hub" in getattr(item, "fixturenames", ()):
        hub_fixture = item.funcargs.get("hub") if hasattr(item, "funcargs") else None
        if isinstance(hub_fixture, Hub):
            report.sections.append(("jupyterhub log (last 200 lines)", hub_fixture.log_tail()))


# ------------------------------------------------------------------ browser


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's) driven by Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser):
    """Factory of pages, each in its own browser context (own cookies)."""
    contexts = []

    def make():
        context = browser.new_context()
        context.set_default_timeout(30_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    """One fresh browser page (own context)."""
    return new_page()

