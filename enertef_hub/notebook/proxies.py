"""jupyter-server-proxy entry points: MLflow UI and TensorBoard, one click away in JupyterLab.

Registered in the ``jupyter_serverproxy_servers`` group as ``mlflow`` and
``tensorboard``, so they open at ``/user/<name>/mlflow/`` and
``/user/<name>/tensorboard/``. jupyter-server-proxy starts each on first visit, and
only the server's owner (as authenticated by the hub) reaches them.

Both get the full request path (``absolute_url``) and are told their public prefix,
so every link and ajax call they build stays under the proxy path. Neither receives
the visitor's cookies, ``Authorization`` header or token, and jupyter-server-proxy's
generic ``proxy/<port>/`` routes are off: :mod:`enertef_hub.notebook.port_proxy`,
arranged by these entry points (jupyter-server-proxy calls them in every server).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .port_proxy import guard_when_server_starts

_HERE = Path(__file__).resolve().parent

#: JupyterLab launcher section of the workbench's tools. JupyterLab 4 draws the icon
#: jupyter-server-proxy gives a tile (``kernelIconUrl``) only in its "Notebook" and
#: "Console" sections, and puts sections of its own after "Other", below the fold of
#: a laptop's window: in "Notebook", MLflow and TensorBoard sit beside the Python
#: kernel, first thing on the launcher, with their icons.
LAUNCHER_CATEGORY = "Notebook"

#: Where TensorBoard looks for event files and TensorBoardLogger writes them.
TENSORBOARD_LOGDIR_ENV = "ENERTEF_TENSORBOARD_LOGDIR"


def make_tensorboard_logdir(environ: dict[str, str] | None = None) -> Path:
    """The user's TensorBoard log folder: ``$ENERTEF_TENSORBOARD_LOGDIR`` or ``~/tensorboard-logs``."""
    environ = os.environ if environ is None else environ
    configured = environ.get(TENSORBOARD_LOGDIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / "tensorboard-logs"


def _prefix(base_url: str, name: str) -> str:
    return "/" + "/".join(part for part in (base_url.strip("/"), name) if part)


def make_mlflow_ui_command(base_url: str, unix_socket: str) -> list[str]:
    """Command line of the light MLflow UI (see :mod:`enertef_hub.notebook.mlflow_ui`)."""
    return [
        sys.executable, "-m", "enertef_hub.notebook.mlflow_ui",
        "--prefix", _prefix(base_url, "mlflow"),
        "--unix-socket", unix_socket,
    ]  # fmt: skip


def make_tensorboard_command(base_url: str, unix_socket: str) -> list[str]:
    """Command line of TensorBoard on a private unix socket, serving the user's log folder under the proxy prefix."""
    logdir = make_tensorboard_logdir()
    # TensorBoard refuses to start on a missing folder; a new user has none yet.
    logdir.mkdir(parents=True, exist_ok=True)
    return [
        sys.executable, "-m", "enertef_hub.notebook.tensorboard_ui",
        "--unix-socket", unix_socket,
        "--logdir", str(logdir),
        "--path_prefix", _prefix(base_url, "tensorboard"),
        # One process: the optional Rust data server would be a second one.
        "--load_fast", "false",
        "--reload_interval", "10",
    ]  # fmt: skip


def setup_mlflow_ui() -> dict:
    """jupyter-server-proxy settings for the MLflow UI (entry point ``mlflow``).

    Called by jupyter-server-proxy inside the notebook server as it loads: the UI is
    then started as JupyterLab opens (:mod:`enertef_hub.notebook.mlflow_warmup`).
    """
    from .mlflow_warmup import warm_up_when_lab_opens

    # First, before anything here can fail: the guard must be in place in every server.
    guard_when_server_starts()
    warm_up_when_lab_opens()
    return {
        "command": make_mlflow_ui_command,
        # A socket in a private folder: other accounts on a shared machine cannot
        # reach the UI (and with it the user's store) around the hub's proxy.
        "unix_socket": True,
        "absolute_url": True,
        "timeout": 60,
        "launcher_entry": {
            "title": "MLflow",
            "icon_path": str(_HERE / "mlflow.svg"),
            "category": LAUNCHER_CATEGORY,
        },
        "new_browser_tab": True,
    }


def setup_tensorboard() -> dict:
    """jupyter-server-proxy settings for TensorBoard (entry point ``tensorboard``)."""
    # Either entry point arranges the guard (once): it holds even if one fails to load.
    guard_when_server_starts()
    return {
        "command": make_tensorboard_command,
        # Private socket, as for the MLflow UI: training logs stay the user's own.
        "unix_socket": True,
        "absolute_url": True,
        "timeout": 60,
        "launcher_entry": {
            "title": "TensorBoard",
            "icon_path": str(_HERE / "tensorboard.svg"),
            "category": LAUNCHER_CATEGORY,
        },
        "new_browser_tab": True,
    }
