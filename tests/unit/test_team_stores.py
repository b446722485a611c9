"""Team stores in the MLflow UI, in pieces: team URIs, paths, the stores' list, refusals, the switcher.

The real processes (a user's UI and a team UI per store, on PostgreSQL and MinIO) are
tested in tests/integration/test_mlflow_ui_teams.py.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.test import Client

from enertef_hub.naming import InvalidNameError
from enertef_hub.notebook.mlflow_ui import add_ui_defaults
from enertef_hub.notebook.mlflow_store import make_default_artifact_root
from enertef_hub.notebook.team_stores import (
    Membership,
    TeamStores,
    make_store_list,
    make_switcher_js,
    make_team_store_uri,
    make_team_ui_command,
    make_team_ui_environment,
    split_team_path,
)

URI = "postgresql+psycopg://u_alice:s3cret@db:5432/mlflow?sslmode=require"
PREFIX = "/user/alice/mlflow"


def test_a_team_store_is_reached_with_the_members_team_login_as_the_team() -> None:
    uri = make_team_store_uri(URI, "Vision")
    parts = urlsplit(uri)
    assert (parts.username, parts.password, parts.hostname, parts.path) == ("m_vision_alice", "s3cret", "db", "/mlflow")
    assert parse_qs(parts.query) == {"sslmode": ["require"], "options": ["-c role=t_vision -c search_path=t_vision"]}
    # The workbench's tracking store sees the team: artifacts default to its bucket.
    assert make_default_artifact_root(uri, {}) == "s3://team-vision/mlflow"


@pytest.mark.parametrize("bad", ["", "a b", "t_x", "team-1", "../x", "root"])
def test_team_names_follow_the_naming_rules(bad) -> None:
    with pytest.raises(InvalidNameError):
        make_team_store_uri(URI, bad)


def test_a_non_workbench_uri_is_refused() -> None:
    with pytest.raises(ValueError, match="restart your server"):
        make_team_store_uri("sqlite:///x.db", "vision")
    with pytest.raises(ValueError):
        make_team_store_uri("postgresql://postgres:pw@db/mlflow", "vision")


def test_a_team_ui_gets_the_team_store_and_bucket_and_none_of_the_parents_mlflow_settings() -> None:
    env = make_team_ui_environment({"ENERTEF_MLFLOW_BACKEND_STORE_URI": URI, "MLFLOW_TRACKING_URI": URI,
                                    "ENERTEF_MLFLOW_ARTIFACT_ROOT": "s3://user-alice/mlflow",
                                    "_MLFLOW_SERVER_FILE_STORE": URI, "AWS_SECRET_ACCESS_KEY": "k"}, "vision")
    assert env["ENERTEF_MLFLOW_BACKEND_STORE_URI"] == env["MLFLOW_TRACKING_URI"] == make_team_store_uri(URI, "vision")
    assert env["ENERTEF_MLFLOW_ARTIFACT_ROOT"] == "s3://team-vision/mlflow"
    assert "_MLFLOW_SERVER_FILE_STORE" not in env and env["AWS_SECRET_ACCESS_KEY"] == "k"


def test_no_secret_on_a_team_ui_command_line() -> None:
    cmd = make_team_ui_command("vision", f"{PREFIX}/team/vision", "/tmp/d/vision.sock")
    assert cmd[cmd.index("--team") + 1] == "vision" and cmd[cmd.index("--prefix") + 1] == f"{PREFIX}/team/vision"
    assert not any("s3cret" in part or "postgresql" in part for part in cmd)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{PREFIX}/", None),
        (f"{PREFIX}/ajax-api/2.0/mlflow/experiments/search", None),
        (f"{PREFIX}/teams", None),
        (f"{PREFIX}/team", ("", "")),
        (f"{PREFIX}/team/", ("", "")),
        (f"{PREFIX}/team/vision", ("vision", "")),
        (f"{PREFIX}/team/vision/", ("vision", "")),
        (f"{PREFIX}/team/vision/ajax-api/2.0/x", ("vision", "ajax-api/2.0/x")),
    ],
)
def test_team_paths(path, expected) -> None:
    assert split_team_path(PREFIX, path) == expected


def test_store_list() -> None:
    assert make_store_list(PREFIX + "/", ["nlp", "vision"]) == [
        {"name": "personal", "title": "My own store", "url": f"{PREFIX}/"},
        {"name": "team nlp", "title": "Team nlp", "url": f"{PREFIX}/team/nlp/"},
        {"name": "team vision", "title": "Team vision", "url": f"{PREFIX}/team/vision/"},
    ]


def test_mlflow_pages_load_the_switcher_from_the_users_own_ui() -> None:
    page = add_ui_defaults(b"<html><head><title>MLflow</title></head></html>", f"{PREFIX}/enertef-stores.js")
    assert page.count(b"<script") == 2 and f'src="{PREFIX}/enertef-stores.js" defer'.encode() in page
    assert add_ui_defaults(page, f"{PREFIX}/enertef-stores.js") == page  # once
    assert b"enertef-stores" not in add_ui_defaults(b"<html><head></head></html>")
    script = make_switcher_js(PREFIX).decode()
    assert json.dumps(f"{PREFIX}/enertef-stores") in script and "stores.length < 2" in script


class Stores:
    """A TeamStores whose team UI processes are never started (the user's teams are given)."""

    def __init__(self, teams):
        self.teams = teams
        self.started = []
        membership = Membership(URI, ttl=0, ask=self._ask)
        self.stores = TeamStores(PREFIX, membership, environ={}, idle=3600)
        self.stores.ensure = self._ensure  # the routing is what is tested here
        self.client = Client(self.stores.wrap(self._own_ui))

    def _ask(self, uri):
        if self.teams is None:
            raise OSError("database down")
        return list(self.teams)

    def _ensure(self, team):
        self.started.append(team)
        raise RuntimeError("not started in unit tests")

    @staticmethod
    def _own_ui(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"own store"]


def test_routing_and_refusals_follow_the_membership_asked_of_the_database() -> None:
    s = Stores(["vision"])
    assert s.client.get(f"{PREFIX}/").get_data() == b"own store"
    stores = s.client.get(f"{PREFIX}/enertef-stores").get_json()
    assert [x["url"] for x in stores["stores"]] == [f"{PREFIX}/", f"{PREFIX}/team/vision/"]
    # A team she is not in: refused, nothing started; MLflow's page reads the JSON message.
    answer = s.client.post(f"{PREFIX}/team/nlp/ajax-api/2.0/mlflow/experiments/search")
    assert answer.status_code == 403 and answer.get_json()["error_code"] == "PERMISSION_DENIED"
    assert "not a member of team nlp" in answer.get_json()["message"]
    page = s.client.get(f"{PREFIX}/team/nlp/", headers={"Accept": "text/html"})
    assert page.status_code == 403 and b"Ask an admin" in page.get_data() and f'href="{PREFIX}/"'.encode() in page.get_data()
    # Names that are no team: 404, nothing started.
    assert s.client.get(f"{PREFIX}/team/t_vision/").status_code == 404
    assert s.client.get(f"{PREFIX}/team/Vision/").status_code == 404
    assert s.started == []
    # Her team: started (here: the unit test's stand-in refuses), bare path redirected to the slash.
    assert s.client.get(f"{PREFIX}/team/vision").headers["Location"] == f"{PREFIX}/team/vision/"
    assert s.client.get(f"{PREFIX}/team/vision/").status_code == 502 and s.started == ["vision"]
    # The list page names every store she can open.
    listing = s.client.get(f"{PREFIX}/team/").get_data()
    assert f'href="{PREFIX}/team/vision/"'.encode() in listing and b"Team vision" in listing
    # Removed: refused at the next request.
    s.teams = []
    assert s.client.get(f"{PREFIX}/team/vision/", headers={"Accept": "text/html"}).status_code == 403
    assert b"You are in no team yet" in s.client.get(f"{PREFIX}/team/").get_data()
    # The database cannot be asked: a clear 503, never a team store.
    s.teams = None
    answer = s.client.post(f"{PREFIX}/team/vision/ajax-api/2.0/mlflow/runs/search")
    assert answer.status_code == 503 and "try again" in answer.get_json()["message"]
    assert s.client.get(f"{PREFIX}/enertef-stores").get_json()["teams_known"] is False
    s.stores.stop_all()


def test_a_page_opened_right_after_a_removal_is_refused_though_api_calls_use_a_recent_answer() -> None:
    asked = []
    teams = ["vision"]

    def ask(uri):
        asked.append(list(teams))
        return list(teams)

    stores = TeamStores(PREFIX, Membership(URI, ttl=3600, ask=ask), environ={}, idle=3600)
    stores.ensure = lambda team: (_ for _ in ()).throw(RuntimeError("not started in unit tests"))
    client = Client(stores.wrap(lambda environ, start_response: []))
    assert client.post(f"{PREFIX}/team/vision/ajax-api/2.0/mlflow/runs/search").status_code == 502  # forwarded
    assert client.post(f"{PREFIX}/team/vision/ajax-api/2.0/mlflow/runs/search").status_code == 502
    assert len(asked) == 1  # the page's API calls share one answer
    teams.clear()  # the admin removes her, within the answer's lifetime
    page = client.get(f"{PREFIX}/team/vision/", headers={"Accept": "text/html"})
    assert page.status_code == 403 and b"You are not a member of team vision" in page.get_data()
    stores.stop_all()


#: A stand-in team UI: answers every request with what it received (method, URI, headers, body).
ECHO_UI = """
import json, sys
from werkzeug import serving

def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    seen = {"method": environ["REQUEST_METHOD"], "uri": environ.get("RAW_URI"),
            "headers": {k[5:]: v for k, v in environ.items() if k.startswith("HTTP_")},
            "body": environ["wsgi.input"].read(length).decode()}
    body = json.dumps(seen).encode()
    start_response("201 Created", [("Content-Type", "application/json"), ("X-Echo", "yes")])
    return [body]

serving.make_server("unix://" + sys.argv[1], 0, app).serve_forever()
"""


def test_requests_reach_the_team_ui_as_sent_without_credentials() -> None:
    import sys

    stores = TeamStores(PREFIX, Membership(URI, ask=lambda uri: ["vision"]), environ={},
                        command=lambda team, prefix, sock: [sys.executable, "-c", ECHO_UI, sock])  # fmt: skip
    client = Client(stores.wrap(lambda environ, start_response: []))
    try:
        answer = client.post(f"{PREFIX}/team/vision/ajax-api/2.0/x?a=1&b=%2F", data=b'{"q": 1}',
                             headers={"Cookie": "jupyterhub-session-id=abc", "Authorization": "token t0ken",
                                      "Content-Type": "application/json", "X-Custom": "kept"})  # fmt: skip
        assert answer.status_code == 201 and answer.headers["X-Echo"] == "yes"
        seen = answer.get_json()
        assert (seen["method"], seen["uri"], seen["body"]) == ("POST", f"{PREFIX}/team/vision/ajax-api/2.0/x?a=1&b=%2F",
                                                               '{"q": 1}')
        assert seen["headers"]["X_CUSTOM"] == "kept"
        assert "COOKIE" not in seen["headers"] and "AUTHORIZATION" not in seen["headers"]
        assert stores.running() == ["vision"]
        # Removed from the team: refused, and the process is stopped.
        stores.membership = Membership(URI, ask=lambda uri: [])
        assert client.get(f"{PREFIX}/team/vision/").status_code == 403
        assert stores.running() == []
    finally:
        stores.stop_all()
