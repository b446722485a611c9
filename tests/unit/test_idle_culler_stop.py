"""Stopping the hub does not wait for the idle culler.

The hub stops a managed service with SIGINT, then waits 30 s before SIGTERM. A hub
started in the background hands its services SIGINT ignored; the culler then sat out
the whole wait (stopping the single-machine workbench took 35 s).
"""

from __future__ import annotations

import http.server
import json
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "jupyterhub_config.d" / "30-enertef-idle-culler.py"


class _EmptyHubAPI(http.server.BaseHTTPRequestHandler):
    """Enough of the hub's API for the culler to run its rounds: a version, no users."""

    def do_GET(self):
        body = json.dumps({"version": "5.5.0"} if self.path.rstrip("/").endswith("/api") else []).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _culler_command() -> list[str]:
    """The service command the single-machine config gives the hub."""
    config = type("Config", (), {})()
    config.JupyterHub = type("JupyterHub", (), {"services": [], "load_roles": []})()
    runpy.run_path(str(SNIPPET), init_globals={"c": config})
    (service,) = [s for s in config.JupyterHub.services if s["name"] == "jupyterhub-idle-culler"]
    return service["command"]


def test_the_idle_culler_service_ends_at_once_on_the_hubs_sigint(tmp_path):
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyHubAPI)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": "t",
           "JUPYTERHUB_API_URL": f"http://127.0.0.1:{api.server_address[1]}/hub/api"}
    log = tmp_path / "culler.log"
    with open(log, "w") as out:
        # As under a hub started in the background: SIGINT ignored, inherited by its services.
        proc = subprocess.Popen(_culler_command(), stdout=out, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 60
        while "pycurl" not in log.read_text():  # it has started its loop
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        assert time.monotonic() - sent < 3, "the hub would wait 30 s for the culler"
    finally:
        proc.kill()
        proc.wait()
        api.shutdown()
