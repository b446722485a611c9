"""Team stores on real PostgreSQL, MinIO and MLflow: shared with members, closed to everyone else."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg import sql

from enertef_hub.naming import InvalidNameError
from tests.harness.names import unique_name
from tests.harness.postgres import team_login_url
from tests.harness.s3 import admin_s3, minio_admin, s3_client
from tests.harness.services import run_as_user

SCRIPTS = str(Path(__file__).resolve().parents[2] / "notebook-scripts")

#: Run as a member, with the notebook helpers importable as in ~/notebook-scripts.
TEAM_RUN = """
    import json, pathlib, tempfile
    import mlflow
    from mlflow_group_utils import use_team, use_personal
    use_team({team!r})
    mlflow.set_experiment("shared-experiment")
    path = pathlib.Path(tempfile.mkdtemp()) / "weights.txt"
    path.write_text({text!r})
    with mlflow.start_run() as run:
        mlflow.log_metric("acc", {acc})
        mlflow.log_artifact(str(path))
    seen = mlflow.search_runs(experiment_names=["shared-experiment"], output_format="list")
    use_personal()
    print(json.dumps({{"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri,
                      "seen": sorted(r.info.run_id for r in seen)}}))
"""


def team_run(env, team, text, acc):
    proc = run_as_user({**env, "PYTHONPATH": SCRIPTS}, TEAM_RUN.format(team=team, text=text, acc=acc))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
async def team1(workbench):
    team = unique_name("team")
    alice = await workbench.provision(unique_name("alice"), teams=[team])
    bob = await workbench.provision(unique_name("bob"), teams=[team])
    carol = await workbench.provision(unique_name("carol"), teams=[])
    for member in (alice, bob):
        assert member.environment["ENERTEF_TEAMS"] == team
    await workbench.mlflow.ensure(alice)
    return team, alice, bob, carol


async def test_members_share_runs_and_artifacts_others_are_denied(team1, admin_conn):
    team, alice, bob, carol = team1
    first = team_run(alice.environment, team, "from alice", 0.9)
    assert first["artifact_uri"].startswith(f"s3://team-{team}/")
    second = team_run(bob.environment, team, "from bob", 0.95)
    assert set(second["seen"]) == {first["run_id"], second["run_id"]}  # bob sees alice's run

    # bob can read alice's artifact in the team bucket.
    key = first["artifact_uri"].split(f"s3://team-{team}/", 1)[1] + "/weights.txt"
    body = s3_client(bob.environment).get_object(Bucket=f"team-{team}", Key=key)["Body"].read()
    assert body == b"from alice"

    # Everything in the team schema belongs to the team role, not to whoever wrote it.
    owners = admin_conn.execute(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s", (f"t_{team}",)).fetchall()
    assert owners == [(f"t_{team}",)]

    # carol: denied at the database and at the storage.
    # She has no team login; her own login cannot act as the team.
    _, options = team_login_url(carol.environment, team)
    url = carol.environment["ENERTEF_MLFLOW_BACKEND_STORE_URI"].replace("postgresql+psycopg://", "postgresql://")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(team_login_url(carol.environment, team)[0])
    with pytest.raises(psycopg.OperationalError, match="permission denied to set role"):
        psycopg.connect(url, options=options)
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema"):
            conn.execute(sql.SQL("SELECT * FROM {}.runs").format(sql.Identifier(f"t_{team}")))
    with pytest.raises(ClientError) as err:
        s3_client(carol.environment).list_objects_v2(Bucket=f"team-{team}")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        s3_client(carol.environment).get_object(Bucket=f"team-{team}", Key=key)

    # Personal stores stay private to their owner, even within a team.
    url, _ = team_login_url(bob.environment, team)
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT * FROM {}.runs").format(sql.Identifier(alice.resources.schema)))


async def test_removed_member_loses_access_at_sync_others_keep_it(team1, workbench, admin_conn):
    team, alice, bob, carol = team1
    first = team_run(alice.environment, team, "kept", 0.5)
    url, options = team_login_url(bob.environment, team)
    open_session = psycopg.connect(url, options=options, autocommit=True)
    open_session.execute("SELECT 1")

    report = await workbench.sync_teams({team: [alice.resources.username]}, actor="test")
    assert f"{team}:{bob.resources.username}" in report["revoked"]

    with pytest.raises(psycopg.OperationalError):
        open_session.execute("SELECT 1")  # sessions already in the team role are ended
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url, options=options)  # her team login is gone
    with pytest.raises(ClientError) as err:
        s3_client(bob.environment).list_objects_v2(Bucket=f"team-{team}")
    assert err.value.response["Error"]["Code"] == "AccessDenied"

    # alice still works in the team store; the data is intact.
    second = team_run(alice.environment, team, "still here", 0.6)
    assert first["run_id"] in second["seen"]
    keys = [o["Key"] for o in s3_client(alice.environment).list_objects_v2(Bucket=f"team-{team}")["Contents"]]
    assert any(k.endswith("weights.txt") for k in keys)


async def test_spawn_sync_follows_group_membership(workbench, services):
    team = unique_name("squad")
    dave = unique_name("dave")
    joined = await workbench.provision(dave, teams=[team])
    s3_client(joined.environment).list_objects_v2(Bucket=f"team-{team}")
    left = await workbench.provision(dave, teams=[])
    assert left.environment["ENERTEF_TEAMS"] == ""
    with pytest.raises(ClientError):
        s3_client(left.environment).list_objects_v2(Bucket=f"team-{team}")
    # The team's bucket and store stay for the other members and for a later return.
    assert f"team-{team}" in {b["Name"] for b in admin_s3(services).list_buckets()["Buckets"]}


async def test_unsafe_team_names_are_refused_before_any_call(workbench, admin_conn):
    # Team logins (m_*) of other tests' teams may go meanwhile: sync_teams below ends
    # every team it is not given.
    count = "SELECT count(*) FROM pg_roles WHERE rolname NOT LIKE 'm\\_%'"
    before = admin_conn.execute(count).fetchone()[0]
    name = unique_name("erin")
    await workbench.provision(name)
    before += 1
    for bad in ["data science", "team-1", "t'; DROP ROLE x;--", "tеam"]:  # Cyrillic е in the last
        with pytest.raises(InvalidNameError, match="Team name"):
            await workbench.provision(name, teams=[bad])
    report = await workbench.sync_teams({"data science": [name], "ok": []})
    assert "letters" in report["refused"]["data science"]
    assert admin_conn.execute(count).fetchone()[0] == before


async def test_returning_member_s_lost_team_access_is_repaired_at_spawn(workbench, admin_conn, services):
    # A returning member's spawn only checks the membership (no rewrite of it all):
    # the check must still see what was lost by hand, in each service, and repair it.
    team = unique_name("crew")
    gina = unique_name("gina")
    first = await workbench.provision(gina, teams=[team])
    s3_client(first.environment).list_objects_v2(Bucket=f"team-{team}")
    url, options = team_login_url(first.environment, team)

    admin = minio_admin(services)
    admin.group_remove(f"team-{team}", [first.resources.minio_user])
    admin_conn.execute(sql.SQL("REVOKE {} FROM {}").format(
        sql.Identifier(f"t_{team}"), sql.Identifier(f"m_{team}_{first.resources.role[2:]}")))
    with pytest.raises(ClientError):
        s3_client(first.environment).list_objects_v2(Bucket=f"team-{team}")
    with pytest.raises(psycopg.OperationalError, match="permission denied to set role"):
        psycopg.connect(url, options=options)

    again = await workbench.provision(gina, teams=[team])
    assert again.environment["ENERTEF_TEAMS"] == team
    s3_client(again.environment).list_objects_v2(Bucket=f"team-{team}")
    psycopg.connect(url, options=options).close()


async def test_a_running_server_reaches_a_team_it_joins_and_loses_one_it_leaves(workbench):
    # Her server started before she was in any team: its environment says so.
    team = unique_name("late")
    alice = await workbench.provision(unique_name("alice"), teams=[])
    started = alice.environment
    assert started["ENERTEF_TEAMS"] == ""

    await workbench.teams.sync_user(alice.resources.username, [team], actor="test")  # what the sync does
    joined = team_run(started, team, "no restart", 0.7)  # the same server environment
    assert joined["artifact_uri"].startswith(f"s3://team-{team}/")

    await workbench.teams.sync_user(alice.resources.username, [], actor="test")
    proc = run_as_user({**started, "PYTHONPATH": SCRIPTS}, f"""
        from mlflow_group_utils import my_teams, use_team
        assert my_teams() == [], my_teams()
        try:
            use_team({team!r})
        except ValueError as exc:
            print("refused:", exc)
        """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"not a member of team '{team}'" in proc.stdout
    await workbench.deprovision(alice.resources.username, purge=True)


async def test_one_broken_member_does_not_stop_everyone_else_s_sync(workbench, services):
    team = unique_name("sturdy")
    broken = await workbench.provision(unique_name("bea"), teams=[])
    fine = await workbench.provision(unique_name("fin"), teams=[])
    admin = minio_admin(services)
    admin.user_remove(broken.resources.minio_user)  # e.g. lost in a MinIO restore

    report = await workbench.sync_teams({team: [broken.resources.username, fine.resources.username]}, actor="test")

    assert f"{team}:{broken.resources.username}" in report["failed"]
    assert f"{team}:{fine.resources.username}" in report["granted"]
    s3_client(fine.environment).list_objects_v2(Bucket=f"team-{team}")  # fin works in the team
    for who in (broken, fine):
        await workbench.deprovision(who.resources.username, purge=True)
