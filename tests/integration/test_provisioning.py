"""Provisioning against real PostgreSQL, MinIO and MLflow: what a user and an admin rely on."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg import sql

from enertef_hub.accounts import AccountRegistry
from enertef_hub.errors import ProvisioningError
from enertef_hub.naming import InvalidNameError
from enertef_hub.workbench import Workbench

from tests.harness.names import unique_name
from tests.harness.postgres import acting_as
from tests.harness.s3 import admin_s3, minio_admin, s3_client
from tests.harness.services import run_as_user

MLFLOW_RUN = """
    import json, mlflow, pathlib, tempfile
    path = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    path.write_text("hello from the test")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("loss", 0.25)
        mlflow.log_artifact(str(path))
    print(json.dumps({"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri}))
"""


def count_roles(conn, role: str) -> int:
    return conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]


async def test_mlflow_run_lands_in_own_schema_and_bucket(workbench, admin_conn, services):
    alice = await workbench.provision(unique_name("alice"))
    await workbench.mlflow.ensure(alice)
    proc = run_as_user(alice.environment, MLFLOW_RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(proc.stdout.strip().splitlines()[-1])

    schema = alice.resources.schema
    with acting_as(admin_conn, alice.resources.role):
        row = admin_conn.execute(
            sql.SQL("SELECT r.status, p.value FROM {}.runs r JOIN {}.params p ON p.run_uuid = r.run_uuid"
                    " WHERE r.run_uuid = %s AND p.key = 'alpha'").format(sql.Identifier(schema), sql.Identifier(schema)),
            (run["run_id"],),
        ).fetchone()
    assert row == ("FINISHED", "0.5")
    assert run["artifact_uri"].startswith(f"s3://{alice.resources.bucket}/")
    key = run["artifact_uri"].split(f"s3://{alice.resources.bucket}/", 1)[1] + "/notes.txt"
    body = admin_s3(services).get_object(Bucket=alice.resources.bucket, Key=key)["Body"].read()
    assert body == b"hello from the test"
    # Nothing of alice's run is in any other schema.
    assert admin_conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0


async def test_other_user_is_denied_at_database_and_storage(workbench):
    alice = await workbench.provision(unique_name("alice"))
    await workbench.mlflow.ensure(alice)
    bob = await workbench.provision(unique_name("bob"))
    bob_url = bob.environment["ENERTEF_MLFLOW_BACKEND_STORE_URI"].replace("postgresql+psycopg://", "postgresql://")

    with psycopg.connect(bob_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema"):
            conn.execute(sql.SQL("SELECT * FROM {}.runs").format(sql.Identifier(alice.resources.schema)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.sneaky (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(alice.resources.role)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM enertef.accounts")

    s3 = s3_client(bob.environment)
    own = s3_client(alice.environment)
    own.put_object(Bucket=alice.resources.bucket, Key="secret.txt", Body=b"alice only")
    for call in (
        lambda: s3.list_objects_v2(Bucket=alice.resources.bucket),
        lambda: s3.get_object(Bucket=alice.resources.bucket, Key="secret.txt"),
        lambda: s3.put_object(Bucket=alice.resources.bucket, Key="planted.txt", Body=b"x"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "AccessDenied"
    # ...while bob's own bucket works for him.
    s3.put_object(Bucket=bob.resources.bucket, Key="mine.txt", Body=b"bob")
    assert s3.get_object(Bucket=bob.resources.bucket, Key="mine.txt")["Body"].read() == b"bob"


async def test_server_environment_has_the_contract_and_no_admin_secret(workbench, services):
    result = await workbench.provision(unique_name("carol"))
    env = result.environment
    for name in ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                 "MLFLOW_S3_ENDPOINT_URL", "ENERTEF_BUCKET", "ENERTEF_MLFLOW_BACKEND_STORE_URI"):
        assert env[name], name
    everything = json.dumps(env)
    for secret_name in ("ENERTEF_MINIO_SECRET_KEY", "ENERTEF_SECRET_KEY"):
        assert services[secret_name] not in everything
    admin_password = services["ENERTEF_POSTGRES_ADMIN_URL"].split(":")[2].split("@")[0]
    assert admin_password not in everything


async def test_provisioning_twice_changes_nothing(workbench, admin_conn):
    name = unique_name("dave")
    first = await workbench.provision(name)
    status_before = await workbench.status(name)
    second = await workbench.provision(name)
    assert first.created and not second.created
    assert second.environment == first.environment
    assert await workbench.status(name) == status_before
    assert count_roles(admin_conn, first.resources.role) == 1


async def test_fifty_users_at_once_all_succeed(workbench, admin_conn, services):
    names = [unique_name("crowd") for _ in range(50)]
    results = await asyncio.gather(*(workbench.provision(n) for n in names), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    roles = [r.resources.role for r in results]
    assert admin_conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (roles,)).fetchone()[0] == 50
    buckets = {b["Name"] for b in admin_s3(services).list_buckets()["Buckets"]}
    assert {r.resources.bucket for r in results} <= buckets


async def test_same_user_provisioned_twice_concurrently_succeeds_once_cleanly(workbench, admin_conn):
    name = unique_name("erin")
    first, second = await asyncio.gather(workbench.provision(name), workbench.provision(name))
    assert first.environment == second.environment
    assert sorted([first.created, second.created]) in ([False, True], [True, True])
    status = await workbench.status(name)
    assert [i["incarnation"] for i in status["incarnations"]] == [1]
    assert count_roles(admin_conn, first.resources.role) == 1


async def test_refused_names_make_no_sql_or_http_call(workbench, admin_conn):
    before = admin_conn.execute("SELECT count(*) FROM pg_roles").fetchone()[0]
    # "l" * 25: one more than the system account limit allows (jupyter-<name> <= 32)
    for bad in ["Robert'); DROP TABLE students;--", "аlice", "", "x" * 200, "postgres", "a b", "l" * 25]:
        with pytest.raises(InvalidNameError):
            await workbench.provision(bad)
    assert admin_conn.execute("SELECT count(*) FROM pg_roles").fetchone()[0] == before


async def test_deprovision_revokes_at_once_and_keeps_data(workbench, admin_conn, services):
    name = unique_name("frank")
    result = await workbench.provision(name)
    s3_client(result.environment).put_object(Bucket=result.resources.bucket, Key="keep.txt", Body=b"k")
    url = result.environment["ENERTEF_MLFLOW_BACKEND_STORE_URI"].replace("postgresql+psycopg://", "postgresql://")
    session = psycopg.connect(url, autocommit=True)

    await workbench.deprovision(name)

    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # the open session was ended
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
    with pytest.raises(ClientError) as err:
        s3_client(result.environment).list_objects_v2(Bucket=result.resources.bucket)
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert admin_s3(services).get_object(Bucket=result.resources.bucket, Key="keep.txt")["Body"].read() == b"k"
    assert admin_conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                              (result.resources.schema,)).fetchone()[0] == 1

    # A new account with the same name starts empty; an admin can restore the old data.
    again = await workbench.provision(name)
    assert again.resources.incarnation == 2 and again.resources.bucket != result.resources.bucket
    assert s3_client(again.environment).list_objects_v2(Bucket=again.resources.bucket).get("KeyCount") == 0
    restored = await workbench.restore(name, 1)
    assert restored.resources.bucket == result.resources.bucket
    assert restored.environment["AWS_SECRET_ACCESS_KEY"] != result.environment["AWS_SECRET_ACCESS_KEY"]
    data = s3_client(restored.environment).get_object(Bucket=restored.resources.bucket, Key="keep.txt")
    assert data["Body"].read() == b"k"


async def test_purge_deletes_schema_bucket_and_role(workbench, admin_conn, services):
    name = unique_name("gina")
    result = await workbench.provision(name)
    s3_client(result.environment).put_object(Bucket=result.resources.bucket, Key="gone.txt", Body=b"g")
    await workbench.deprovision(name, purge=True)
    assert count_roles(admin_conn, result.resources.role) == 0
    assert admin_conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                              (result.resources.schema,)).fetchone()[0] == 0
    buckets = {b["Name"] for b in admin_s3(services).list_buckets()["Buckets"]}
    assert result.resources.bucket not in buckets
    with pytest.raises(ProvisioningError, match="no kept data"):
        await workbench.restore(name, 1)


async def test_rotation_gives_new_credentials_and_old_ones_stop_working(workbench):
    name = unique_name("hank")
    old = await workbench.provision(name)
    new = await workbench.rotate(name)
    assert new.environment["AWS_SECRET_ACCESS_KEY"] != old.environment["AWS_SECRET_ACCESS_KEY"]
    old_url = old.environment["ENERTEF_MLFLOW_BACKEND_STORE_URI"].replace("postgresql+psycopg://", "postgresql://")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(old_url, connect_timeout=5)
    s3_client(new.environment).list_objects_v2(Bucket=new.resources.bucket)
    with pytest.raises(ClientError):
        s3_client(old.environment).list_objects_v2(Bucket=old.resources.bucket)


async def test_failure_after_storage_was_made_takes_everything_back(workbench, admin_conn, services, monkeypatch):
    """A failure late in provisioning (here: the final registry write) leaves nothing behind."""
    name = unique_name("ivan")

    async def crash(*args, **kwargs):
        raise RuntimeError("the hub died here")

    monkeypatch.setattr(AccountRegistry, "mark_ready", crash)
    with pytest.raises(RuntimeError):
        await workbench.provision(name)
    assert count_roles(admin_conn, f"u_{name}") == 0
    assert admin_conn.execute("SELECT count(*) FROM enertef.accounts WHERE username = %s", (name,)).fetchone()[0] == 0
    assert f"user-{name}" not in {b["Name"] for b in admin_s3(services).list_buckets()["Buckets"]}
    monkeypatch.undo()
    assert (await workbench.provision(name)).created  # and the next attempt completes


async def test_returning_user_whose_storage_secret_changed_gets_working_credentials(workbench, services):
    # MinIO restored from an older backup, or its user's key changed by hand: the
    # returning user's spawn must notice that the key it hands out no longer works
    # (a check of the user's existence and policy alone would not) and repair it.
    name = unique_name("erin")
    first = await workbench.provision(name)
    admin = minio_admin(services)
    admin.user_add(first.resources.minio_user, "not-the-derived-secret-1234")
    with pytest.raises(ClientError):
        s3_client(first.environment).head_bucket(Bucket=first.resources.bucket)

    again = await workbench.provision(name)
    assert again.environment["AWS_SECRET_ACCESS_KEY"] == first.environment["AWS_SECRET_ACCESS_KEY"]
    s3_client(again.environment).head_bucket(Bucket=again.resources.bucket)


async def test_policy_of_an_older_release_is_replaced_at_the_next_hub_s_first_spawn(workbench, services):
    # A policy an older release made (other statement ids, e.g. one allowing bucket
    # policies) is found by the next hub process and replaced at the user's spawn.
    name = unique_name("fred")
    first = await workbench.provision(name)
    bucket = first.resources.bucket
    admin = minio_admin(services)
    admin.policy_add(first.resources.policy, policy={"Version": "2012-10-17", "Statement": [
        {"Sid": "v0all", "Effect": "Allow", "Action": ["s3:*"],
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]})
    public = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]}]})
    s3_client(first.environment).put_bucket_policy(Bucket=bucket, Policy=public)  # the old policy allowed it
    s3_client(first.environment).delete_bucket_policy(Bucket=bucket)

    next_hub = Workbench(config=workbench.config)  # a new hub process: nothing remembered
    try:
        again = await next_hub.provision(name)
    finally:
        await next_hub.close()
    with pytest.raises(ClientError) as err:
        s3_client(again.environment).put_bucket_policy(Bucket=bucket, Policy=public)
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    s3_client(again.environment).put_object(Bucket=bucket, Key="still-works.txt", Body=b"ok")


async def test_a_sign_up_ends_a_leftover_account_but_keeps_one_an_admin_restored(workbench):
    # A sign-up of a name the hub does not know (a reinstall on the same data) is someone new.
    name = unique_name("lefty")
    await workbench.provision(name)
    assert await workbench.end_leftover_account(name, actor="test") == [1]
    assert (await workbench.status(name))["state"] == "deleted"  # ended, data kept
    # An admin restores it for its person, who then signs up again: it is theirs.
    await workbench.restore(name, 1, actor="test")
    assert await workbench.end_leftover_account(name, actor="test") == []
    assert (await workbench.status(name))["state"] == "active"
    # The restore was for that one sign-up.
    assert await workbench.end_leftover_account(name, actor="test") == [1]
    await workbench.deprovision(name, purge=True)
