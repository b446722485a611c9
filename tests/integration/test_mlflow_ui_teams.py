"""Team stores in a user's MLflow UI, on real PostgreSQL, MinIO and MLflow UI processes.

alice and bob are in team A, carol in team B. bob and carol each log a run to their
team. alice's MLflow UI (the process the launcher starts, on its unix socket) lists
her own store and team A; ``<prefix>/team/<A>/`` is a real MLflow UI process of team
A's store, where bob's run and its artifact are; team B's store is refused and no
process starts for it. Members see who is in their team (``team_members``), others
do not. When alice is removed from team A her UI for it stops working
(and its process ends) within seconds; when she is added to team B, its store opens,
without restarting anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import psutil
import pytest

from enertef_hub.notebook.proxies import setup_mlflow_ui
from enertef_hub.notebook.team_stores import MEMBERSHIP_TTL
from tests.harness import REPO
from tests.harness.names import unique_name
from tests.harness.notebooks import unix_request
from tests.harness.services import run_as_user
from tests.harness.wait import wait_for
from tests.harness.workbench import open_workbench, purge

SCRIPTS = str(REPO / "notebook-scripts")
HOST = "hub.example.org"  # what jupyter-server-proxy forwards as Host

TEAM_RUN = """
    import json, pathlib, tempfile
    import mlflow
    from mlflow_group_utils import use_team
    use_team({team!r})
    mlflow.set_experiment({experiment!r})
    path = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    path.write_text({text!r})
    with mlflow.start_run(run_name={run_name!r}) as run:
        mlflow.log_metric("acc", 0.9)
        mlflow.log_artifact(str(path))
    print(json.dumps({{"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}}))
"""


def team_run(env: dict, team: str, experiment: str, run_name: str, text: str) -> dict:
    code = TEAM_RUN.format(team=team, experiment=experiment, run_name=run_name, text=text)
    proc = run_as_user({**env, "PYTHONPATH": SCRIPTS}, code, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def request(sock: str, method: str, path: str, body: dict | None = None, accept: str | None = None):
    return unix_request(sock, method, path, body, host=HOST, headers={"Accept": accept} if accept else None,
                        timeout=120)


def team_processes(ui: subprocess.Popen, team: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(ui.pid).children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--team" in cmdline and cmdline[cmdline.index("--team") + 1] == team:
            found.append(child)
    return found


@pytest.fixture(scope="module")
def lab(services, tmp_path_factory):
    """alice and bob in team A, carol in team B, a run of bob's in A and one of carol's in B."""
    team_a, team_b = unique_name("uiteam"), unique_name("uiother")
    names = {who: unique_name(who) for who in ("alice", "bob", "carol")}

    async def provision():
        async with open_workbench() as wb:
            out = {}
            for who, teams in (("alice", [team_a]), ("bob", [team_a]), ("carol", [team_b])):
                out[who] = await wb.provision(names[who], teams=teams)
            await wb.mlflow.ensure(out["alice"])
            return out

    results = asyncio.run(provision())
    envs = {who: r.environment for who, r in results.items()}
    bob_run = team_run(envs["bob"], team_a, "team-a-experiment", "bob-run", "from bob")
    carol_run = team_run(envs["carol"], team_b, "team-b-experiment", "carol-run", "from carol")
    yield {"team_a": team_a, "team_b": team_b, "names": names, "envs": envs, "bob_run": bob_run,
           "carol_run": carol_run}

    async def clean():
        for name in names.values():
            await purge(name)

    asyncio.run(clean())


@pytest.fixture(scope="module")
def alice_ui(lab, tmp_path_factory):
    """alice's MLflow UI as the launcher starts it: its unix socket and prefix."""
    sock = str(tmp_path_factory.mktemp("ui-sock") / "mlflow.sock")
    name = lab["names"]["alice"]
    cmd = setup_mlflow_ui()["command"](base_url=f"/user/{name}/", unix_socket=sock)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path_factory.mktemp("home")), "LANG": "C.UTF-8",
           "JUPYTERHUB_USER": name, **lab["envs"]["alice"]}  # fmt: skip
    log = Path(sock).with_suffix(".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    prefix = f"/user/{name}/mlflow"

    def listening():
        try:
            return request(sock, "GET", prefix + "/enertef-ui-status")[0] == 200
        except OSError:
            return proc.poll() is not None

    wait_for(listening, 60, "the MLflow UI listening")
    assert proc.poll() is None, log.read_text()[-3000:]
    yield {"sock": sock, "prefix": prefix, "proc": proc, "log": log}
    proc.terminate()
    proc.wait(timeout=30)


def search_runs(sock: str, base: str, experiment_name: str) -> list[str]:
    status, body = request(sock, "POST", base + "/ajax-api/2.0/mlflow/experiments/search", {"max_results": 100})
    assert status == 200, body[:500]
    experiments = {e["name"]: e["experiment_id"] for e in json.loads(body)["experiments"]}
    if experiment_name not in experiments:
        return []
    status, body = request(sock, "POST", base + "/ajax-api/2.0/mlflow/runs/search",
                           {"experiment_ids": [experiments[experiment_name]]})  # fmt: skip
    assert status == 200, body[:500]
    return [r["info"]["run_id"] for r in json.loads(body).get("runs", [])]


def test_a_member_sees_her_team_store_and_nothing_of_another_team(lab, alice_ui) -> None:
    sock, prefix, proc = alice_ui["sock"], alice_ui["prefix"], alice_ui["proc"]
    team_a, team_b = lab["team_a"], lab["team_b"]

    status, body = request(sock, "GET", prefix + "/enertef-stores")
    assert status == 200
    stores = json.loads(body)["stores"]
    assert [s["url"] for s in stores] == [f"{prefix}/", f"{prefix}/team/{team_a}/"]

    # Team A's store, through a process of its own: bob's run and its artifact in the team bucket.
    team = f"{prefix}/team/{team_a}"
    status, page = request(sock, "GET", team + "/", accept="text/html")
    assert status == 200 and (b'id="root"' in page or b"Starting your MLflow UI of team" in page), page[:300]
    assert len(team_processes(proc, team_a)) == 1
    assert lab["bob_run"]["run_id"] in search_runs(sock, team, "team-a-experiment")
    status, body = request(sock, "GET", f"{team}/get-artifact?path=notes.txt&run_uuid={lab['bob_run']['run_id']}")
    assert (status, body) == (200, b"from bob")
    # MLflow's page of a team store loads the switcher from the user's own UI.
    status, page = request(sock, "GET", team + "/", accept="text/html")
    assert f'<script src="{prefix}/enertef-stores.js" defer></script>'.encode() in page
    status, script = request(sock, "GET", prefix + "/enertef-stores.js")
    assert status == 200 and f"{prefix}/enertef-stores".encode() in script

    # Her own store does not hold the team's runs; team B's store is refused, and nothing starts for it.
    assert search_runs(sock, prefix, "team-a-experiment") == []
    status, body = request(sock, "POST", f"{prefix}/team/{team_b}/ajax-api/2.0/mlflow/experiments/search",
                           {"max_results": 100})  # fmt: skip
    assert status == 403 and json.loads(body)["error_code"] == "PERMISSION_DENIED"
    assert f"not a member of team {team_b}" in json.loads(body)["message"]
    status, page = request(sock, "GET", f"{prefix}/team/{team_b}/", accept="text/html")
    assert status == 403 and b"Ask an admin" in page
    assert not team_processes(proc, team_b)
    # The credentials stay out of every command line (another account can read those).
    password = lab["envs"]["alice"]["ENERTEF_MLFLOW_BACKEND_STORE_URI"].split(":")[2].split("@")[0]
    for child in psutil.Process(proc.pid).children(recursive=True):
        assert password not in " ".join(child.cmdline())


MEMBERS = """
    import json
    from mlflow_group_utils import team_members
    try:
        print(json.dumps(team_members({team!r})))
    except ValueError as exc:
        print(json.dumps(str(exc)))
"""


def test_members_see_who_is_in_their_team_and_nobody_else_does(lab) -> None:
    """team_members() reads the catalogue through the member's own login; a non-member is refused."""
    names = lab["names"]

    def members(who: str, team: str):
        proc = run_as_user({**lab["envs"][who], "PYTHONPATH": SCRIPTS}, MEMBERS.format(team=team))
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert members("alice", lab["team_a"]) == sorted([names["alice"], names["bob"]])
    assert members("carol", lab["team_b"]) == [names["carol"]]
    assert "only its members see who is in it" in members("carol", lab["team_a"])


def test_removal_closes_the_team_store_and_a_new_team_opens_without_restart(lab, alice_ui) -> None:
    sock, prefix, proc = alice_ui["sock"], alice_ui["prefix"], alice_ui["proc"]
    team_a, team_b = lab["team_a"], lab["team_b"]
    team = f"{prefix}/team/{team_a}"
    assert lab["bob_run"]["run_id"] in search_runs(sock, team, "team-a-experiment")
    assert team_processes(proc, team_a)

    async def move_alice():  # what her next spawn, or the hub's team sync, does
        async with open_workbench() as wb:
            await wb.provision(lab["names"]["alice"], teams=[team_b])

    asyncio.run(move_alice())

    def refused():
        status, body = request(sock, "POST", team + "/ajax-api/2.0/mlflow/experiments/search", {"max_results": 10})
        return status == 403 and f"not a member of team {team_a}" in json.loads(body)["message"]

    wait_for(refused, MEMBERSHIP_TTL + 10, "the removed member refused by the team's store")
    wait_for(lambda: not team_processes(proc, team_a), 30, "the team's UI process to end with the membership")

    # Team B now opens for her: its store shows carol's run, with no restart of anything.
    wait_for(lambda: team_b in request(sock, "GET", prefix + "/enertef-stores")[1].decode(), MEMBERSHIP_TTL + 10,
             "the new team listed")  # fmt: skip
    assert lab["carol_run"]["run_id"] in search_runs(sock, f"{prefix}/team/{team_b}", "team-b-experiment")


def test_the_team_processes_end_with_the_users_ui(lab, tmp_path) -> None:
    """jupyter-server-proxy stops the UI with SIGTERM when the server stops: its team processes go too."""
    sock = str(tmp_path / "mlflow.sock")
    name = lab["names"]["bob"]
    cmd = setup_mlflow_ui()["command"](base_url=f"/user/{name}/", unix_socket=sock)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", **lab["envs"]["bob"]}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        prefix = f"/user/{name}/mlflow"

        def answers():
            try:
                return request(sock, "GET", f"{prefix}/team/{lab['team_a']}/", accept="text/html")[0] == 200
            except OSError:
                return False

        wait_for(answers, 60, "bob's team UI answering")
        (child,) = team_processes(proc, lab["team_a"])
    finally:
        proc.terminate()
        proc.wait(30)
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 15,
             "the team's UI process to end with the user's UI")  # fmt: skip
