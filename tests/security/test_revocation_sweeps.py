"""Issue 11 on the real PostgreSQL and MinIO: what a user opens is closed by every revocation.

Each test first does what a hostile user could do with what they held, then the
revocation (team removal, deletion, withdrawn approval, rotation), then tries every
path again. On the code before issue 11 each of these paths stayed open.
"""

from __future__ import annotations

import json
import secrets
import string
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest
import requests
from botocore.exceptions import ClientError
from minio import MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException

from enertef_hub import reports

from tests.harness.names import unique_name
from tests.harness.postgres import connect_as, connect_as_team
from tests.harness.s3 import admin_s3, s3_client

DENIED = (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable)


def anonymous_policy(bucket: str) -> str:
    """A bucket policy that lets anyone, without credentials, read and write ``bucket``."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": ["*"]},
        "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]})


def anonymous_get(services, bucket: str, key: str) -> int:
    return requests.get(f"{services['ENERTEF_MINIO_ENDPOINT']}/{bucket}/{key}", timeout=10).status_code


def user_admin(environment: dict[str, str]) -> MinioAdmin:
    """MinIO's admin API as the user (what `mc admin user svcacct add` would use)."""
    parts = urlsplit(environment["AWS_ENDPOINT_URL"])
    return MinioAdmin(endpoint=parts.netloc, credentials=StaticProvider(environment["AWS_ACCESS_KEY_ID"],
                                                               environment["AWS_SECRET_ACCESS_KEY"]),
                      secure=parts.scheme == "https")


def key_client(environment: dict[str, str], access_key: str, secret_key: str, token: str | None = None):
    """An S3 client on the user's endpoint with other keys (a service account's, STS's)."""
    keys = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    return s3_client({**environment, **keys}, session_token=token)


def assume_role(environment: dict[str, str]) -> dict:
    """STS credentials the user makes for themselves from their own key (MinIO allows it to every user)."""
    sts = boto3.client("sts", endpoint_url=environment["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"])
    creds = sts.assume_role(RoleArn="arn:xxx:xxx:xxx:xxxx", RoleSessionName="mine", DurationSeconds=3600)
    return creds["Credentials"]


def works(call) -> bool:
    try:
        call()
    except (ClientError, psycopg.Error):
        return False
    return True


# -- least privilege up front -------------------------------------------------------------


async def test_user_may_not_open_their_bucket_or_make_keys(workbench, services):
    env = (await workbench.provision(unique_name("mallory"))).environment
    bucket = env["ENERTEF_BUCKET"]
    s3 = s3_client(env)
    s3.put_object(Bucket=bucket, Key="data.txt", Body=b"mine")  # objects: allowed
    assert s3.get_object(Bucket=bucket, Key="data.txt")["Body"].read() == b"mine"
    for attempt in (
        lambda: s3.put_bucket_policy(Bucket=bucket, Policy=anonymous_policy(bucket)),
        lambda: s3.delete_bucket_policy(Bucket=bucket),
        lambda: s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
            {"ID": "gone", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]}),
        lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}),
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            attempt()
    assert anonymous_get(services, bucket, "data.txt") == 403
    with pytest.raises(MinioAdminException):
        user_admin(env).add_service_account(access_key=unique_name("svc"), secret_key=secrets.token_hex(20))


async def test_user_may_connect_only_to_the_mlflow_database(workbench):
    env = (await workbench.provision(unique_name("mallory"))).environment
    connect_as(env).close()
    for dbname in ("postgres", "template1"):
        with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):
            connect_as(env, dbname=dbname)


# -- team removal -------------------------------------------------------------------------------


async def test_removed_member_keeps_nothing_she_opened_as_the_team(workbench, admin_conn, services):
    team = unique_name("team")
    alice = await workbench.provision(unique_name("alice"), teams=[team])
    bob = await workbench.provision(unique_name("bob"), teams=[team])
    carol = await workbench.provision(unique_name("carol"), teams=[])
    t_role, a_role, a_schema = f"t_{team}", alice.resources.role, alice.resources.schema

    with connect_as(alice.environment) as own:
        # Her own schema lets the team create there: a function owned by the team,
        # outside the team's schema, that reads team data.
        own.execute(f'GRANT USAGE, CREATE ON SCHEMA "{a_schema}" TO "{t_role}"')
    with connect_as_team(alice.environment, team) as conn:
        conn.execute("CREATE TABLE secrets (v text)")
        conn.execute("INSERT INTO secrets VALUES ('team secret')")
        conn.execute(f'GRANT USAGE, CREATE ON SCHEMA "{t_role}" TO PUBLIC, "{a_role}"')
        conn.execute(f'GRANT ALL ON secrets TO PUBLIC, "{a_role}"')
        conn.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{t_role}" GRANT ALL ON TABLES TO "{a_role}"')
        conn.execute("CREATE FUNCTION peek() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER"
                     " AS 'SELECT v FROM secrets'")
        conn.execute(f'CREATE FUNCTION "{a_schema}".backdoor() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER'
                     f' AS $$SELECT v FROM "{t_role}".secrets$$')
    # And, before the fix allowed no such thing, an anonymous policy on the team bucket.
    admin_s3(services).put_bucket_policy(Bucket=f"team-{team}", Policy=anonymous_policy(f"team-{team}"))
    admin_s3(services).put_object(Bucket=f"team-{team}", Key="model.bin", Body=b"weights")
    assert anonymous_get(services, f"team-{team}", "model.bin") == 200
    assert any(f.startswith(f"team {team}:") for f in await reports.audit(workbench))  # check sees it

    await workbench.provision(alice.resources.username, teams=[])  # removed from the team

    with connect_as_team(bob.environment, team) as conn:  # a member keeps everything
        assert conn.execute("SELECT v FROM secrets").fetchall() == [("team secret",)]
        conn.execute("CREATE TABLE later (v text)")  # the default privilege must not reach alice
        assert conn.execute("SELECT * FROM peek()").fetchall() == [("team secret",)]
    for probe in (f'SELECT v FROM "{t_role}".secrets', f'SELECT v FROM "{t_role}".later',
                  f'SELECT "{t_role}".peek()', f'SELECT "{a_schema}".backdoor()',
                  f'CREATE TABLE "{t_role}".mine (v text)'):
        for who in (alice, carol):
            with connect_as(who.environment) as conn, pytest.raises(DENIED):
                conn.execute(probe)
    assert anonymous_get(services, f"team-{team}", "model.bin") == 403
    assert not [f for f in await reports.audit(workbench) if f.startswith(f"team {team}:")]
    # Only the team role holds privileges on the team's tables now. From the catalogue:
    # information_schema shows the admin only grants of roles it is a member of (none).
    grantees = admin_conn.execute(
        "SELECT DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a"
        " WHERE n.nspname = %s", (t_role,)).fetchall()
    assert {g for (g,) in grantees} <= {t_role}
    for who in (alice, bob, carol):  # leave nothing for `enertef-hub check` to report
        await workbench.deprovision(who.resources.username, purge=True)


async def test_removed_member_session_acting_as_team_ends(workbench):
    team = unique_name("team")
    alice = await workbench.provision(unique_name("alice"), teams=[team])
    conn = connect_as_team(alice.environment, team)
    conn.execute("CREATE TABLE kept (v text)")
    await workbench.provision(alice.resources.username, teams=[])
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT * FROM kept")


# -- deletion -------------------------------------------------------------------------------------


async def test_deleted_users_kept_data_is_closed_to_everyone(workbench, services):
    alice = await workbench.provision(unique_name("alice"))
    bob = await workbench.provision(unique_name("bob"))
    a_role, a_schema, b_role = alice.resources.role, alice.resources.schema, bob.resources.role
    with connect_as(alice.environment) as conn:
        conn.execute("CREATE TABLE diary (v text)")
        conn.execute("INSERT INTO diary VALUES ('private')")
        conn.execute(f'GRANT USAGE ON SCHEMA "{a_schema}" TO PUBLIC, "{b_role}"')
        conn.execute(f'GRANT SELECT ON diary TO PUBLIC, "{b_role}"')
        conn.execute(f'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO "{b_role}"')
    bucket = alice.resources.bucket
    admin_s3(services).put_bucket_policy(Bucket=bucket, Policy=anonymous_policy(bucket))
    s3_client(alice.environment).put_object(Bucket=bucket, Key="diary.txt", Body=b"private")
    assert anonymous_get(services, bucket, "diary.txt") == 200
    findings = [f for f in await reports.audit(workbench) if f.startswith(f"user {alice.resources.username}:")]
    assert any("PUBLIC" in f for f in findings) and any("bucket policy" in f for f in findings)
    assert any(f"default privileges of {a_role}" in f for f in findings)

    await workbench.deprovision(alice.resources.username, purge=False)

    with connect_as(bob.environment) as conn:
        for probe in (f'SELECT v FROM "{a_schema}".diary', f'SET ROLE "{a_role}"'):
            with pytest.raises(DENIED):
                conn.execute(probe)
    assert anonymous_get(services, bucket, "diary.txt") == 403
    assert not [f for f in await reports.audit(workbench) if f.startswith(f"user {alice.resources.username}:")]
    # The data is kept: an admin restores it.
    restored = await workbench.restore(alice.resources.username, 1)
    with connect_as(restored.environment) as conn:
        assert conn.execute(f'SELECT v FROM "{a_schema}".diary').fetchall() == [("private",)]


async def test_deletion_ends_service_accounts_and_sts_credentials(workbench):
    name = unique_name("alice")
    workbench.minio.allow_service_accounts = True  # as a deployment that allows them
    try:
        env = (await workbench.provision(name)).environment
    finally:
        workbench.minio.allow_service_accounts = False
    key, secret = "svc" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12)), secrets.token_hex(20)
    user_admin(env).add_service_account(access_key=key, secret_key=secret)
    sts = assume_role(env)
    bucket = env["ENERTEF_BUCKET"]
    keys = [key_client(env, key, secret),
            key_client(env, sts["AccessKeyId"], sts["SecretAccessKey"], sts["SessionToken"])]
    assert all(works(lambda c=c: c.list_objects_v2(Bucket=bucket)) for c in keys)
    assert any(key in f for f in await reports.audit(workbench))

    await workbench.deprovision(name, purge=False)

    assert not any(works(lambda c=c: c.list_objects_v2(Bucket=bucket)) for c in keys)
    # Restoring the kept data re-creates the same MinIO user: what she made before
    # must not come back to life with it (MinIO keeps STS credentials of a removed user).
    await workbench.restore(name, 1)
    assert not any(works(lambda c=c: c.list_objects_v2(Bucket=bucket)) for c in keys)


# -- withdrawn approval ------------------------------------------------------------------------


async def test_suspension_ends_every_credential_and_keeps_the_data(workbench):
    name = unique_name("alice")
    first = await workbench.provision(name)
    env = first.environment
    with connect_as(env) as conn:
        conn.execute("CREATE TABLE notes (v text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")
    s3_client(env).put_object(Bucket=env["ENERTEF_BUCKET"], Key="k.txt", Body=b"kept")
    sts = assume_role(env)
    session = connect_as(env)

    await workbench.suspend(name)

    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        connect_as(env)
    for client in (s3_client(env), key_client(env, sts["AccessKeyId"], sts["SecretAccessKey"], sts["SessionToken"])):
        with pytest.raises(ClientError):
            client.list_objects_v2(Bucket=env["ENERTEF_BUCKET"])
    # Approved again: the next provisioning restores access, with new secrets, to the same data.
    again = (await workbench.provision(name)).environment
    assert again["AWS_SECRET_ACCESS_KEY"] != env["AWS_SECRET_ACCESS_KEY"]
    with connect_as(again) as conn:
        assert conn.execute("SELECT v FROM notes").fetchall() == [("kept",)]
    assert s3_client(again).get_object(Bucket=env["ENERTEF_BUCKET"], Key="k.txt")["Body"].read() == b"kept"


# -- rotation --------------------------------------------------------------------------------------


async def test_rotation_ends_sessions_service_accounts_and_sts(workbench):
    name = unique_name("alice")
    team = unique_name("team")
    workbench.minio.allow_service_accounts = True
    try:
        env = (await workbench.provision(name, teams=[team])).environment
    finally:
        workbench.minio.allow_service_accounts = False
    key, secret = "svc" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12)), secrets.token_hex(20)
    user_admin(env).add_service_account(access_key=key, secret_key=secret)
    sts = assume_role(env)
    session = connect_as(env)
    bucket = env["ENERTEF_BUCKET"]
    stolen = {"service account": key_client(env, key, secret),
              "STS": key_client(env, sts["AccessKeyId"], sts["SecretAccessKey"], sts["SessionToken"])}

    new = (await workbench.rotate(name)).environment

    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    assert [kind for kind, c in stolen.items() if works(lambda c=c: c.list_objects_v2(Bucket=bucket))] == []
    s3_client(new).list_objects_v2(Bucket=bucket)
    s3_client(new).list_objects_v2(Bucket=f"team-{team}")  # still in the team after rotation
