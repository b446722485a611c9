"""The MLflow UI's fast start, in pieces: import policy, starting page, absent features, warm-up switch.

The real process behind jupyter-server-proxy is tested in
tests/integration/test_mlflow_ui_start.py, and in Chromium by tests/e2e.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading

import pytest
from werkzeug.test import Client

from enertef_hub.notebook.mlflow_imports import NEVER_SERVED, OPTIONAL_AT_IMPORT, ImportPolicy, is_refused
from enertef_hub.notebook.mlflow_ui import ABSENT_FEATURE_ANSWERS, absent_features
from enertef_hub.notebook.mlflow_warmup import warm_up_when_lab_opens, warmup_enabled
from enertef_hub.notebook.ui_loading import STATUS_PATH, LoadingApp, make_starting_page, make_status

PREFIX = "/user/alice/mlflow"


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("pandas", True),
        ("pandas.core.frame", True),
        ("pandasx", False),  # another package that merely starts alike
        ("numpy", True),
        ("mlflow.server.auth", True),
        ("mlflow.server.auth.config", True),
        ("mlflow.server.handlers", False),
        ("mlflow", False),
    ],
)
def test_what_the_ui_process_leaves_out(name, refused) -> None:
    assert is_refused(name, OPTIONAL_AT_IMPORT + NEVER_SERVED) is refused


def test_import_policy_refuses_then_lifts_only_the_optional_libraries(monkeypatch) -> None:
    # Stand-ins for the real names, so this test process keeps its own imports.
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    for name in ("json.tool", "email.generator"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    policy = ImportPolicy(optional=("json.tool",), never=("email.generator",)).install()
    assert sys.meta_path[0] is policy
    with pytest.raises(ModuleNotFoundError, match="left out of the MLflow UI process"):
        importlib.import_module("json.tool")
    policy.lift()
    importlib.import_module("json.tool")  # optional again once MLflow is loaded
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("email.generator")  # never served
    assert policy.install() is policy and sys.meta_path.count(policy) == 1


class SlowApp:
    """A WSGI app whose build waits until the test lets it finish."""

    def __init__(self, fail: bool = False):
        self.go = threading.Event()
        self.fail = fail

    def build(self):
        assert self.go.wait(10)
        if self.fail:
            raise RuntimeError("no database configured")

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"the real app at " + environ["PATH_INFO"].encode()]

        return app


def status(client) -> dict:
    return json.loads(client.get(f"{PREFIX}/{STATUS_PATH}").data)


def test_starting_page_then_the_app(monkeypatch) -> None:
    slow = SlowApp()
    loading = LoadingApp(slow.build, PREFIX + "/", "MLflow UI").start()
    client = Client(loading)
    page = client.get(PREFIX + "/")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert b"Starting your MLflow UI" in page.data and STATUS_PATH.encode() in page.data
    assert status(client) == {"state": "starting", "message": ""}
    # jupyter-server-proxy's readiness probe asks "/": answered at once, as the app would.
    assert client.get("/").status_code == 404
    # An API call made meanwhile waits for the app ...
    monkeypatch.setattr("enertef_hub.notebook.ui_loading.API_WAIT", 0.05)
    late = client.post(PREFIX + "/ajax-api/2.0/mlflow/runs/search")
    assert late.status_code == 503 and late.headers["Retry-After"]
    assert json.loads(late.data)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    slow.go.set()
    assert loading.wait(10)
    assert status(client)["state"] == "ready"
    assert client.get(PREFIX + "/").data == b"the real app at " + PREFIX.encode() + b"/"


def test_an_api_call_waits_for_the_app() -> None:
    slow = SlowApp()
    client = Client(LoadingApp(slow.build, PREFIX, "MLflow UI").start())
    threading.Timer(0.2, slow.go.set).start()
    answer = client.get(PREFIX + "/ajax-api/2.0/mlflow/experiments/search")
    assert answer.status_code == 200 and answer.data.startswith(b"the real app")


def test_a_failed_start_is_explained() -> None:
    slow = SlowApp(fail=True)
    loading = LoadingApp(slow.build, PREFIX, "MLflow UI", failure_hint="Restart your server.").start()
    slow.go.set()
    assert not loading.wait(10)
    client = Client(loading)
    assert status(client) == {"state": "failed", "message": "RuntimeError: no database configured\n\nRestart your server."}
    assert b"could not start" in client.get(PREFIX + "/").data  # the page shows the status message
    api = client.get(PREFIX + "/ajax-api/2.0/mlflow/experiments/search")
    assert api.status_code == 503 and b"no database configured" in api.data


def test_starting_page_and_status_are_pure() -> None:
    assert b"<script>alert(1)</script>" not in make_starting_page("<script>alert(1)</script>")
    assert make_status(False, None)["state"] == "starting"
    assert make_status(True, None)["state"] == "ready"
    assert make_status(False, "boom") == {"state": "failed", "message": "boom"}


def test_absent_features_get_what_mlflows_page_takes_for_not_set_up() -> None:
    def mlflow(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"not found"]

    client = Client(absent_features(mlflow, PREFIX + "/"))
    for path, expected in ABSENT_FEATURE_ANSWERS.items():
        answer = client.get(PREFIX + path)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
        assert json.loads(answer.data) == expected
    # Only the page's own reads are answered; anything else is MLflow's.
    assert client.put(PREFIX + "/ajax-api/3.0/mlflow/assistant/config").status_code == 404
    assert client.get(PREFIX + "/ajax-api/2.0/mlflow/users/list").status_code == 404
    assert client.get("/ajax-api/2.0/mlflow/users/current").status_code == 404  # outside the prefix
    # The shapes MLflow 3.17's page reads (its bundle): user / is_basic_auth; resolved / providers.
    assert ABSENT_FEATURE_ANSWERS["/ajax-api/2.0/mlflow/users/current"]["user"] is None
    assert ABSENT_FEATURE_ANSWERS["/ajax-api/3.0/mlflow/assistant/providers"]["resolved"] is None


@pytest.mark.parametrize(("value", "enabled"), [(None, True), ("1", True), ("0", False), ("false", False), ("No", False)])
def test_warmup_switch(value, enabled) -> None:
    assert warmup_enabled({} if value is None else {"ENERTEF_MLFLOW_UI_WARMUP": value}) is enabled


def test_warmup_does_nothing_outside_a_notebook_server() -> None:
    from jupyter_server.serverapp import ServerApp

    assert not ServerApp.initialized()
    assert warm_up_when_lab_opens() is False
