"""The admin command line against the real services: what an admin types and reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.harness.names import unique_name
from tests.harness.postgres import libpq_uri
from tests.harness.services import private_services


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enertef_hub.cli", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **(env or {})})


def test_check_reports_every_service():
    result = cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    for what in ("secret key", "postgresql:", "postgresql privileges", "minio:"):
        assert f"ok  {what}" in result.stdout


def test_check_fails_clearly_when_minio_is_unreachable():
    result = cli("check", env={"ENERTEF_MINIO_ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 1
    assert "FAIL minio" in result.stdout and "unreachable" in result.stdout


def test_provision_shows_secrets_only_with_json_and_is_idempotent(services):
    name = unique_name("olga")
    human = cli("provision", name, "--no-tables")
    assert human.returncode == 0, human.stderr
    assert "AWS_SECRET_ACCESS_KEY=***" in human.stdout and f"ENERTEF_BUCKET=user-{name}" in human.stdout
    machine = json.loads(cli("provision", name, "--json", "--no-tables").stdout)
    secret = machine["environment"]["AWS_SECRET_ACCESS_KEY"]
    assert len(secret) == 40 and secret not in human.stdout
    for admin_secret in ("ENERTEF_MINIO_SECRET_KEY", "ENERTEF_SECRET_KEY"):
        assert services[admin_secret] not in human.stdout + json.dumps(machine)


def test_deprovision_status_and_restore_round_trip():
    name = unique_name("petra")
    assert cli("provision", name, "--no-tables").returncode == 0
    gone = cli("deprovision", name)
    assert gone.returncode == 0 and "revoked" in gone.stdout and "data kept" in gone.stdout
    status = json.loads(cli("status", name, "--json").stdout)
    assert status["state"] == "deleted"
    (inc,) = status["incarnations"]
    assert not inc["can_login"] and inc["schema_exists"] and inc["bucket_exists"]
    assert inc["minio_user_status"] == "absent"
    assert cli("restore", name, "--incarnation", "1", "--no-tables").returncode == 0
    assert "can log in" in cli("status", name).stdout


def test_bad_input_exits_2_with_the_reason():
    result = cli("provision", "Rob'); DROP TABLE x;--")
    assert result.returncode == 2 and "only letters" in result.stderr and "Traceback" not in result.stderr
    result = cli("restore", unique_name("nobodyhere"), "--incarnation", "1")
    assert result.returncode == 1 and "no kept data" in result.stderr


def test_deprovision_all_revokes_every_active_account_before_an_uninstall(tmp_path):
    # A private PostgreSQL and MinIO: --all must not touch the other tests' accounts.
    import psycopg

    with private_services("enertef-all-") as env:
        names = [unique_name("una"), unique_name("uwe")]
        uris = []
        for name in names:
            made = cli("provision", name, "--json", "--no-tables", env=env)
            assert made.returncode == 0, made.stderr
            uris.append(libpq_uri(json.loads(made.stdout)["environment"]["ENERTEF_MLFLOW_BACKEND_STORE_URI"]))
        psycopg.connect(uris[0]).close()
        assert cli("deprovision", env=env).returncode == 2  # neither a name nor --all

        gone = cli("deprovision", "--all", env=env)

        assert gone.returncode == 0, gone.stderr
        assert all(f"{name}: access revoked" in gone.stdout for name in names)
        for uri in uris:
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(uri, connect_timeout=5)
        assert all(json.loads(cli("status", n, "--json", env=env).stdout)["state"] == "deleted" for n in names)
