"""Jupyter servers and kernels from the outside, as JupyterLab and jupyter-server-proxy reach them."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psutil
import requests

from enertef_hub.notebook.team_stores import UnixHTTPConnection

from .services import free_port

#: What the MLflow UI's processes have in their command line.
UI_MODULE = "enertef_hub.notebook.mlflow_ui"


class NotebookServer:
    """A running ``jupyter server`` under ``/user/<name>/`` with token auth."""

    def __init__(self, name: str, env: dict[str, str], root: Path, extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()):  # fmt: skip
        self.token = secrets.token_hex(16)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/user/{name}/"
        env = {**env, **(extra_env or {}), "JUPYTER_TOKEN": self.token}
        self.log = root / "jupyter-server.log"
        cmd = [str(Path(sys.executable).parent / "jupyter-server"), f"--port={port}", "--ip=127.0.0.1", "--no-browser",
               f"--ServerApp.base_url=/user/{name}/", f"--ServerApp.root_dir={root}"]  # fmt: skip
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        cmd.extend(args)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        deadline = time.monotonic() + 90
        while True:
            try:
                if self.get("api/status").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"jupyter server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return requests.get(self.url + path, headers={"Authorization": f"token {self.token}"}, **kwargs)

    def ui_processes(self, marker: str = UI_MODULE) -> list[psutil.Process]:
        """The server's child processes whose command line contains *marker* (the MLflow UI's)."""
        found = []
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if marker in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.NoSuchProcess:
                pass
        return found

    def wait_until_ready(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.get("mlflow/enertef-ui-status").json()
            if status["state"] != "starting":
                return status
            time.sleep(0.2)
        raise AssertionError(f"MLflow UI still starting after {timeout}s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def execute_notebook(server_url: str, token: str, path: str, save_outputs: bool = False) -> list[str]:
    """Run the code cells of the server-side notebook *path* in a new kernel, up to the
    first error; return the error texts.

    With ``save_outputs``, each cell keeps its outputs and execution count as JupyterLab
    keeps them, and the notebook is saved with them (the contents API, as Ctrl-S).
    """
    import nbformat
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"token {token}"}
    model = requests.get(f"{server_url}api/contents/{path}", headers=headers, timeout=30)
    model.raise_for_status()
    notebook = nbformat.from_dict(model.json()["content"])
    session = requests.post(
        f"{server_url}api/sessions",
        headers=headers,
        json={"path": path, "name": Path(path).name, "type": "notebook", "kernel": {"name": "python3"}},
        timeout=60,
    )
    session.raise_for_status()
    session_id, kernel_id = session.json()["id"], session.json()["kernel"]["id"]
    ws_url = "ws" + server_url[len("http"):] + f"api/kernels/{kernel_id}/channels"
    errors: list[str] = []
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers), max_message_size=64 << 20)
    try:
        client_session = uuid.uuid4().hex
        for count, cell in enumerate((c for c in notebook.cells if c.cell_type == "code" and c.source.strip()), 1):
            if save_outputs:
                cell.outputs, cell.execution_count = [], count
            msg_id = uuid.uuid4().hex
            await conn.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": "e2e", "session": client_session,
                           "msg_type": "execute_request", "version": "5.3",
                           "date": datetime.now(timezone.utc).isoformat()},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": cell.source, "silent": False, "store_history": True,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }))  # fmt: skip
            replied = idle = False
            while not (replied and idle):
                raw = await asyncio.wait_for(conn.read_message(), timeout=180)
                assert raw is not None, "kernel websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if save_outputs and kind in ("stream", "display_data", "execute_result", "error"):
                    cell.outputs.append(nbformat.v4.output_from_msg(msg))
                if kind == "error":
                    errors.append(f"{path}: {msg['content']['ename']}: {msg['content']['evalue']}\n{cell.source}")
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            if errors:
                break
    finally:
        conn.close()
        requests.delete(f"{server_url}api/sessions/{session_id}", headers=headers, timeout=30)
    if save_outputs:
        saved = requests.put(f"{server_url}api/contents/{path}", headers=headers, timeout=30,
                             json={"type": "notebook", "format": "json", "content": notebook})  # fmt: skip
        saved.raise_for_status()
    return errors


def unix_request(sock: str, method: str, path: str, body: dict | None = None, host: str = "localhost",
                 headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """One HTTP request over the unix socket ``sock`` (``body`` sent as JSON); its status and body."""
    conn = UnixHTTPConnection(sock, host, timeout=30)
    conn.timeout = timeout
    headers = {**({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def put_notebook(server_url: str, token: str, path: str, cells: list[str]) -> None:
    """Save a notebook of code ``cells`` at ``path`` in the server (the contents API, as JupyterLab saves)."""
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    response = requests.put(f"{server_url}api/contents/{path}", headers={"Authorization": f"token {token}"},
                            json={"type": "notebook", "format": "json", "content": notebook}, timeout=30)
    response.raise_for_status()
