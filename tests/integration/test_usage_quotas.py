"""``enertef-hub usage`` reports what was written; MinIO's bucket quota stops an upload."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError
from psycopg import sql

from tests.harness import REPO
from tests.harness.names import unique_name
from tests.harness.postgres import acting_as
from tests.harness.s3 import s3_client
from tests.harness.workbench import open_workbench

MiB = 1024 * 1024


def schema_bytes(admin_conn, schema: str) -> int:
    """Size of a schema's tables, from pg_tables (independently of the code under test)."""
    with acting_as(admin_conn, schema):  # ::regclass of a name needs USAGE on the schema (its role's)
        return admin_conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(format('%%I.%%I', schemaname, tablename)::regclass)), 0)"
            " FROM pg_tables WHERE schemaname = %s", (schema,)).fetchone()[0]


def usage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enertef_hub.cli", "usage", *args], capture_output=True,
                          text=True, timeout=600, cwd=REPO)


async def test_usage_reports_the_bytes_and_objects_written(workbench, admin_conn):
    team = unique_name("usageteam")
    alice = await workbench.provision(unique_name("usagealice"), teams=[team])
    gone = await workbench.provision(unique_name("usagegone"), teams=[])
    s3 = s3_client(alice.environment)
    for i, size in enumerate((1000, 20_000, 300_000)):
        s3.put_object(Bucket=alice.resources.bucket, Key=f"data/{i}.bin", Body=b"x" * size)
    s3.put_object(Bucket=f"team-{team}", Key="shared.bin", Body=b"y" * 4321)
    s3_client(gone.environment).put_object(Bucket=gone.resources.bucket, Key="kept.bin", Body=b"z" * 777)
    # 2 MiB of rows in alice's schema, written as alice (she owns it).
    schema = alice.resources.schema
    with acting_as(admin_conn, alice.resources.role):
        admin_conn.execute(sql.SQL("CREATE TABLE {} AS SELECT repeat('a', 1000) AS pad FROM generate_series(1, 2048)")
                           .format(sql.Identifier(schema, "mydata")))
    await workbench.deprovision(gone.resources.username, purge=False)

    proc = usage("--json")

    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {(r["kind"], r["name"], r["incarnation"]): r for r in json.loads(proc.stdout)}
    mine = rows[("user", alice.resources.username, 1)]
    assert (mine["minio_bytes"], mine["objects"], mine["state"]) == (321_000, 3, "active")
    assert mine["postgres_bytes"] == schema_bytes(admin_conn, schema) >= 2048 * 1000
    assert mine["last_activity"] and mine["bucket_quota"] == 2 * 1024 * MiB  # the default quota
    kept = rows[("user", gone.resources.username, 1)]
    assert (kept["state"], kept["minio_bytes"], kept["objects"]) == ("deleted", 777, 1)
    shared = rows[("team", team, None)]
    assert (shared["minio_bytes"], shared["objects"], shared["members"]) == (4321, 1, [alice.resources.username])
    assert shared["bucket_quota"] == 10 * 1024 * MiB

    text = usage()
    assert text.returncode == 0 and alice.resources.username in text.stdout and "313.5 KiB" in text.stdout


async def test_a_team_whose_last_member_left_still_shows_the_data_it_holds(workbench):
    # Its store and bucket are kept (nothing a user made is deleted unless an admin purges),
    # so the admin's report must still count them.
    team = unique_name("usageleft")
    bob = await workbench.provision(unique_name("usagebob"), teams=[team])
    s3_client(bob.environment).put_object(Bucket=f"team-{team}", Key="left.bin", Body=b"w" * 2345)
    await workbench.provision(bob.resources.username, teams=[])  # removed from the group: no member left

    proc = usage("--json")

    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {(r["kind"], r["name"]): r for r in json.loads(proc.stdout)}
    left = rows[("team", team)]
    assert (left["minio_bytes"], left["objects"], left["members"]) == (2345, 1, [])


@pytest.fixture
async def tight_workbench(services):
    """A workbench of its own, whose quota overrides a test may change."""
    async with open_workbench() as wb:
        yield wb


async def test_a_bucket_quota_stops_an_upload_with_minios_own_error(tight_workbench):
    name, group = unique_name("quotauser"), unique_name("tightgroup")
    tight_workbench.quotas.user_bucket_quota_overrides = {name: "1MiB", f"group:{group}": "3MiB"}
    result = await tight_workbench.provision(name, teams=[])
    s3 = s3_client(result.environment)
    s3.put_object(Bucket=result.resources.bucket, Key="small.bin", Body=b"s" * (MiB // 2))

    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=result.resources.bucket, Key="big.bin", Body=b"b" * (2 * MiB))

    assert refused.value.response["Error"]["Code"] == "XMinioAdminBucketQuotaExceeded"
    assert "quota" in refused.value.response["Error"]["Message"].lower()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=result.resources.bucket).get("Contents", [])]
    assert keys == ["small.bin"]

    # A group's override applies to its members at their next spawn.
    tight_workbench.quotas.user_bucket_quota_overrides = {f"group:{group}": "3MiB"}
    await tight_workbench.provision(name, teams=[group])
    s3.put_object(Bucket=result.resources.bucket, Key="big.bin", Body=b"b" * (2 * MiB))


def quota_refused(upload) -> bool:
    """Whether ``upload()`` was refused for the bucket's quota (any other error is raised)."""
    try:
        upload()
    except ClientError as error:
        if error.response["Error"]["Code"] == "XMinioAdminBucketQuotaExceeded":
            return True
        raise
    return False


def bucket_bytes(s3, bucket: str) -> int:
    return sum(o["Size"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


async def test_a_bucket_quota_checks_each_request_and_the_last_scan_not_a_burst(tight_workbench):
    """What MinIO's hard quota measures (docs/administration.md, "Quotas"; the figures there are this test's).

    MinIO checks each request on its own: a PutObject, or each part of a multipart
    upload, is refused if it alone reaches the quota, or if it plus the bucket's size
    as of MinIO's last scan does. Completing a multipart upload is not checked, and a
    new bucket's size is counted only by the scanner, about a minute later.
    """
    name = unique_name("quotaburst")
    tight_workbench.quotas.user_bucket_quota_overrides = {name: "20MiB"}
    result = await tight_workbench.provision(name, teams=[])
    s3, bucket = s3_client(result.environment), result.resources.bucket
    started = time.monotonic()

    def put(key: str, size: int):
        return lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)

    # One request of the quota's size, or more: refused.
    assert quota_refused(put("fifty.bin", 50 * MiB))
    assert quota_refused(put("twenty.bin", 20 * MiB))
    assert not quota_refused(put("nineteen.bin", 19 * MiB))
    # 50 MiB in one multipart upload (boto3 splits above 8 MiB into 8 MiB parts, as
    # mlflow.log_artifact and the MinIO client do): each part is checked alone.
    assert not quota_refused(lambda: s3.upload_fileobj(io.BytesIO(b"m" * (50 * MiB)), bucket, "multipart.bin"))
    # Small uploads right after: checked against the last scan, which has not counted
    # this bucket yet.
    for i in range(4):
        assert not quota_refused(put(f"five-{i}.bin", 5 * MiB))
    assert bucket_bytes(s3, bucket) == (19 + 50 + 20) * MiB  # 89 MiB in a bucket of 20 MiB

    # Once MinIO's scanner has counted the bucket, every further upload is refused.
    while not quota_refused(put(f"probe-{time.monotonic_ns()}.bin", 1024)):
        assert time.monotonic() - started < 300, "MinIO never refused an upload to a bucket 4x over its quota"
        await asyncio.sleep(5)
    assert quota_refused(put("one-more.bin", 1))
