"""A small REST client of the test cluster's API server, as its admin.

``scripts/kube.sh env`` says where the server is and which client certificate is the
admin's; :func:`cluster_env` reads it (starting the control plane if needed).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[3]


def cluster_env() -> dict[str, str]:
    """The variables of ``scripts/kube.sh env``, after ``scripts/kube.sh start`` (idempotent)."""
    script = REPO / "scripts" / "kube.sh"
    start = subprocess.run([str(script), "start"], capture_output=True, text=True, timeout=3600)
    if start.returncode != 0:
        raise RuntimeError(f"scripts/kube.sh start failed:\n{start.stderr[-4000:]}")
    out = subprocess.run([str(script), "env"], capture_output=True, text=True, check=True).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env[key] = value
    env["PATH"] = f"{env['KUBE_BIN']}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


class KubeAPI:
    """GET/POST/PATCH/DELETE on the API server with the admin's client certificate."""

    def __init__(self, env: dict[str, str]):
        self.url = env["KUBE_API_URL"]
        self.session = requests.Session()
        self.ca = env["KUBE_CA"]
        self.session.cert = (env["KUBE_ADMIN_CERT"], env["KUBE_ADMIN_KEY"])

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        # Per request: REQUESTS_CA_BUNDLE in the environment would override a session's.
        kwargs.setdefault("verify", self.ca)
        return self.session.request(method, self.url + path, **kwargs)

    def get(self, path: str, missing_ok: bool = False) -> dict | None:
        response = self.request("GET", path)
        if missing_ok and response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def items(self, path: str) -> list[dict]:
        return self.get(path)["items"]

    def create(self, path: str, body: dict) -> dict:
        response = self.request("POST", path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:1000]}")
        return response.json()

    def delete(self, path: str) -> None:
        response = self.request("DELETE", path)
        if response.status_code not in (200, 202, 404):
            raise RuntimeError(f"DELETE {path}: {response.status_code} {response.text[:1000]}")
