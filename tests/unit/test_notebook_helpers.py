"""Pure parts of the in-server tools: artifact defaults, team URIs, proxy settings, same-origin rule."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from enertef_hub.notebook.mlflow_store import make_default_artifact_root
from enertef_hub.notebook.mlflow_ui import is_same_origin, make_server_environment
from enertef_hub.notebook.proxies import (
    make_mlflow_ui_command,
    make_tensorboard_command,
    setup_mlflow_ui,
    setup_tensorboard,
)

ROOT = Path(__file__).resolve().parents[2]
URI = "postgresql+psycopg://u_alice:secret@db:5432/mlflow"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "notebook-scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "uri, environ, expected",
    [
        (URI, {"ENERTEF_MLFLOW_ARTIFACT_ROOT": "s3://user-alice/mlflow"}, "s3://user-alice/mlflow"),
        (URI, {}, None),  # MLflow's own default
        (URI + "?options=-c%20role%3Dt_vision%20-c%20search_path%3Dt_vision",
         {"ENERTEF_MLFLOW_ARTIFACT_ROOT": "s3://user-alice/mlflow"}, "s3://team-vision/mlflow"),
        (URI, {"_MLFLOW_SERVER_ARTIFACT_ROOT": "s3://elsewhere", "ENERTEF_MLFLOW_ARTIFACT_ROOT": "s3://user-alice/mlflow"},
         "s3://elsewhere"),
    ],
)  # fmt: skip
def test_default_artifact_root(uri, environ, expected) -> None:
    assert make_default_artifact_root(uri, environ) == expected


def test_team_uri_uses_the_member_s_team_login_and_sets_role_and_schema() -> None:
    utils = load_script("mlflow_group_utils")
    team_uri = utils._make_team_tracking_uri(URI + "?sslmode=require", "vision")
    parts = urlsplit(team_uri)
    # Her team login (never her own role), with her own password.
    assert (parts.username, parts.password, parts.hostname, parts.path) == ("m_vision_alice", "secret", "db", "/mlflow")
    query = parse_qs(parts.query)
    assert query["options"] == ["-c role=t_vision -c search_path=t_vision"]
    assert query["sslmode"] == ["require"]
    # And the workbench store recognises it as the team's: artifacts go to the team bucket.
    assert make_default_artifact_root(team_uri, {}) == "s3://team-vision/mlflow"
    # The hub builds the same URI for the team store's tables and upgrades.
    from enertef_hub.naming import make_team_resources, make_user_resources
    from enertef_hub.mlflow_stores import make_team_tracking_uri
    assert make_team_tracking_uri(URI + "?sslmode=require", make_team_resources("vision"),
                                  make_user_resources("alice")) == team_uri


def test_use_team_refuses_a_team_you_are_not_in(monkeypatch) -> None:
    monkeypatch.setenv("ENERTEF_TEAMS", "vision,nlp")
    utils = load_script("mlflow_group_utils")
    assert utils.my_teams() == ["vision", "nlp"]
    with pytest.raises(ValueError, match="not a member of team 'audio'"):
        utils.use_team("audio")


def test_mlflow_ui_is_one_process_on_a_private_socket_under_the_prefix() -> None:
    config = setup_mlflow_ui()
    assert config["unix_socket"] is True and config["absolute_url"] is True
    assert Path(config["launcher_entry"]["icon_path"]).is_file()
    cmd = make_mlflow_ui_command(base_url="/user/alice/", unix_socket="/tmp/x/sock")
    assert cmd[1:3] == ["-m", "enertef_hub.notebook.mlflow_ui"]
    assert cmd[cmd.index("--prefix") + 1] == "/user/alice/mlflow"


def test_tensorboard_serves_the_logger_folder_under_the_prefix(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ENERTEF_TENSORBOARD_LOGDIR", str(tmp_path / "tb"))
    config = setup_tensorboard()
    assert Path(config["launcher_entry"]["icon_path"]).is_file()
    assert config["unix_socket"] is True and config["absolute_url"] is True
    cmd = make_tensorboard_command(base_url="/user/alice/", unix_socket="/tmp/x/sock")
    assert cmd[cmd.index("--logdir") + 1] == str(tmp_path / "tb")
    assert (tmp_path / "tb").is_dir()  # created, or TensorBoard would refuse to start
    assert cmd[cmd.index("--path_prefix") + 1] == "/user/alice/tensorboard"
    assert cmd[cmd.index("--unix-socket") + 1] == "/tmp/x/sock"
    # The logger writes where TensorBoard reads.
    logger = load_script("tensorboard_logger")
    assert logger.default_logdir() == tmp_path / "tb"


def test_server_environment_needs_a_database_store() -> None:
    env = make_server_environment("/user/alice/mlflow/", {"ENERTEF_MLFLOW_BACKEND_STORE_URI": URI,
                                                          "ENERTEF_MLFLOW_ARTIFACT_ROOT": "s3://user-alice/mlflow"})
    assert env["_MLFLOW_STATIC_PREFIX"] == "/user/alice/mlflow"
    assert env["_MLFLOW_SERVER_FILE_STORE"] == URI
    assert env["_MLFLOW_SERVER_ARTIFACT_ROOT"] == "s3://user-alice/mlflow"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    with pytest.raises(ValueError, match="Restart your server"):
        make_server_environment("/p", {})


@pytest.mark.parametrize(
    "method, origin, host, allowed",
    [
        ("GET", "https://evil.example", "hub.example.org", True),
        ("POST", None, "hub.example.org", True),
        ("POST", "https://hub.example.org", "hub.example.org", True),
        ("POST", "https://HUB.example.org", "hub.example.org", True),
        ("POST", "https://evil.example", "hub.example.org", False),
        ("DELETE", "https://hub.example.org.evil.example", "hub.example.org", False),
        ("POST", "null", "hub.example.org", False),
    ],
)
def test_same_origin_rule(method, origin, host, allowed) -> None:
    assert is_same_origin(method, origin, host) is allowed


def test_tensorboard_logger_writes_event_files_without_tensorflow(tmp_path) -> None:
    code = (
        "import sys, tensorboard_logger as t\n"
        f"tb = t.TensorBoardLogger('my run/1', logdir={str(tmp_path)!r})\n"
        "tb.scalar('loss', 0.5, 0); tb.histogram('w', [1, 2, 3], 0); tb.hparams({'lr': 0.1, 'opt': object()})\n"
        "tb.close()\n"
        "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'torch'))]\n"
        "print(tb.run_dir)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "notebook-scripts"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    run_dir = Path(out.strip())
    assert run_dir == tmp_path / "my_run_1"
    assert [p.name.startswith("events.out.tfevents.") for p in run_dir.iterdir()] == [True]


def test_switching_stores_returns_no_password(monkeypatch) -> None:
    # A notebook saves what a cell returns: neither switch may hand back the password.
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", URI)
    monkeypatch.setenv("ENERTEF_TEAMS", "vision")
    monkeypatch.setenv("ENERTEF_BUCKET", "user-alice")
    monkeypatch.setattr(mlflow, "set_tracking_uri", lambda uri: monkeypatch.setenv("MLFLOW_TRACKING_URI", uri))
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: os.environ["MLFLOW_TRACKING_URI"])
    utils = load_script("mlflow_group_utils")
    for shown in (utils.use_team("vision"), utils.use_personal()):
        assert "secret" not in repr(shown)
    assert utils.use_team("vision")["store"] == "team vision"
    assert utils.use_personal()["store"] == "personal"


def test_whoami_never_shows_the_password_whatever_the_uri(monkeypatch) -> None:
    import mlflow

    utils = load_script("mlflow_group_utils")
    # A socket connection has no host part: the URI is not shown in its place.
    for uri in (URI, "postgresql+psycopg://u_alice:secret@/mlflow?host=/run/postgresql"):
        monkeypatch.setattr(mlflow, "get_tracking_uri", lambda uri=uri: uri)
        monkeypatch.setattr(utils, "my_teams", lambda: [])
        shown = utils.whoami()
        assert "secret" not in repr(shown) and shown["database"] in ("db:5432/mlflow", "/mlflow")
    assert not [name for name in utils.__all__ if "uri" in name.lower()]  # no public helper hands a URI out


def test_team_members_only_for_a_team_you_are_in(monkeypatch) -> None:
    monkeypatch.setenv("ENERTEF_TEAMS", "vision")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg://u_alice:secret@127.0.0.1:1/mlflow")
    utils = load_script("mlflow_group_utils")  # no database there: my_teams() falls back to ENERTEF_TEAMS
    with pytest.raises(ValueError, match="only its members see who is in it"):
        utils.team_members("audio")
    with pytest.raises(RuntimeError, match="Could not ask the database who is in team 'vision'") as failed:
        utils.team_members("vision")
    assert "secret" not in str(failed.value)
