"""Regression tests of issue 19, part 1: what jupyter-server-proxy forwards in a user's server.

A real ``jupyter server`` with jupyter-server-proxy and our entry points (MLflow UI,
TensorBoard), and a process on a loopback port that tells what it was sent
(tests/security/header_echo.py), standing in for a web server any account could
start:

- the generic routes (``proxy/<port>/``, ``proxy/absolute/<port>/``, and the
  ``<host>:<port>`` forms) answer 404 and never reach the process, for any method and
  for websockets;
- a named server (configured like ours) receives no ``Cookie``, no ``Authorization``
  and no ``token`` parameter, over HTTP and websocket; the server's log says the MLflow
  UI's and TensorBoard's routes are guarded the same way;
- the deliberate, unsafe setting turns the generic routes on, still without credentials.

The browser replay of the attack is tests/e2e/test_port_proxy_attack.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tornado import httpclient, websocket

from enertef_hub.notebook.port_proxy import PORT_PROXY_OFF_MESSAGE, UNSAFE_PORT_PROXY_ENV
from tests.harness.names import unique_name
from tests.harness.notebooks import NotebookServer
from tests.harness.services import free_port

ECHO = Path(__file__).with_name("header_echo.py")
COOKIE = "jupyterhub-user-victim=stolen-session; _xsrf=stolen-xsrf"


@pytest.fixture(scope="session", autouse=True)
def _services():
    """Nothing here uses PostgreSQL or MinIO: override the tier's autouse start of them."""
    yield


class Echo:
    """header_echo.py on a loopback port; ``.seen()`` lists every request it received."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.record = root / f"echo-{self.port}.jsonl"
        self.proc = subprocess.Popen([sys.executable, str(ECHO), str(self.port), str(self.record)])
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{self.port}/ready", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "header_echo.py did not start"
                time.sleep(0.1)
        self.record.unlink()  # the readiness probe is not a proxied request

    def seen(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines()] if self.record.exists() else []

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def echo(tmp_path):
    running = Echo(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def server(tmp_path):
    """Factory of real notebook servers with a named server ``echo`` (a header_echo.py it starts)."""
    servers = []

    def start(**extra_env) -> NotebookServer:
        config_dir = tmp_path / f"jupyter-config-{len(servers)}"
        config_dir.mkdir()
        # A named server as jupyter-server-proxy makes ours (a command it starts on
        # demand): the same handler classes as the MLflow UI and TensorBoard.
        (config_dir / "jupyter_server_config.py").write_text(
            "c.ServerProxy.servers = {'echo': {'command': "
            f"[{sys.executable!r}, {str(ECHO)!r}, '{{port}}'], 'timeout': 30}}}}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENERTEF_", "AWS_", "MLFLOW_", "JUPYTER"))}
        env.update({"HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(config_dir), "ENERTEF_MLFLOW_UI_WARMUP": "0"})
        servers.append(NotebookServer(unique_name("proxied"), env, tmp_path, extra_env))
        return servers[-1]

    yield start
    for running in servers:
        running.stop()


def generic_routes(port: int) -> list[str]:
    return [
        f"proxy/{port}/page.html",
        f"proxy/absolute/{port}/page.html",
        f"proxy/localhost:{port}/page.html",
        f"proxy/127.0.0.1:{port}/page.html",
        f"proxy/absolute/localhost:{port}/page.html",
    ]


def send(server: NotebookServer, method: str, path: str) -> requests.Response:
    """A request as a logged-in visitor would send it: token, cookies, and a token in the query too."""
    headers = {"Authorization": f"token {server.token}", "Cookie": COOKIE, "X-XSRFToken": "stolen-xsrf"}
    return requests.request(method, f"{server.url}{path}?token={server.token}&keep=1", headers=headers, timeout=60)


async def websocket_handshake(server: NotebookServer, path: str) -> dict:
    """What the process behind *path* saw of a websocket handshake carrying the visitor's credentials."""
    url = server.url.replace("http://", "ws://") + f"{path}?token={server.token}"
    request = httpclient.HTTPRequest(url, headers={"Authorization": f"token {server.token}", "Cookie": COOKIE})
    connection = await websocket.websocket_connect(request)
    try:
        return json.loads(await asyncio.wait_for(connection.read_message(), 30))
    finally:
        connection.close()


def assert_no_credentials(seen: dict, token: str):
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert "cookie" not in headers, seen
    assert "authorization" not in headers, seen
    assert token not in json.dumps(seen), seen
    assert "stolen-session" not in json.dumps(seen), seen


def test_generic_port_routes_are_off(server, echo):
    running = server()
    for path in generic_routes(echo.port):
        for method in ("GET", "POST", "PUT", "DELETE"):
            answer = send(running, method, path)
            assert answer.status_code == 404, (method, path, answer.status_code, answer.text[:300])
            assert PORT_PROXY_OFF_MESSAGE in answer.text, (method, path, answer.text[:300])
        with pytest.raises((httpclient.HTTPClientError, websocket.WebSocketError)):
            asyncio.run(websocket_handshake(running, path.replace("page.html", "ws")))
    assert echo.seen() == [], "a generic port route reached the process"
    assert "generic port proxy off" in running.log.read_text()


def test_named_servers_receive_no_credentials(server):
    running = server()
    answer = send(running, "GET", "echo/page.html")
    assert answer.status_code == 200, answer.text[:500]
    seen = answer.json()
    assert_no_credentials(seen, running.token)
    assert seen["uri"] == "/page.html?keep=1"  # the rest of the query is left as it was
    assert seen["headers"].get("X-Xsrftoken") == "stolen-xsrf"  # other headers pass (only credentials go)
    posted = send(running, "POST", "echo/form")
    assert posted.status_code == 200 and posted.json()["method"] == "POST"
    assert_no_credentials(posted.json(), running.token)
    assert_no_credentials(asyncio.run(websocket_handshake(running, "echo/ws")), running.token)
    # Our own launchers are named servers of the same kind: the guard lists them.
    guarded = [line for line in running.log.read_text().splitlines() if "Proxied without cookies or tokens" in line]
    assert guarded, running.log.read_text()[-3000:]
    for name in ("mlflow", "tensorboard", "echo"):
        assert f"/{name}/(.*)" in guarded[-1], guarded[-1]


def test_unsafe_setting_turns_the_port_proxy_on_still_without_credentials(server, echo):
    running = server(**{UNSAFE_PORT_PROXY_ENV: "1"})
    for path in generic_routes(echo.port):
        answer = send(running, "GET", path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        assert_no_credentials(answer.json(), running.token)
    assert_no_credentials(asyncio.run(websocket_handshake(running, f"proxy/{echo.port}/ws")), running.token)
    assert "UNSAFE: the generic port proxy is on" in running.log.read_text()
