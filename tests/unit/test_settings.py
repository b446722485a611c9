"""Settings: defaults from the documented environment variables, every trait documented."""

import pytest
from traitlets.config import Config

from enertef_hub.environment import ADMIN_ENV_NAMES, make_user_environment, without_admin_secrets
from enertef_hub.mlflow_stores import MOVED_FROM_WORKBENCH, MlflowStores
from enertef_hub.credentials import derive_secret
from enertef_hub.cli import mask_environment
from enertef_hub.naming import make_user_resources
from enertef_hub.provisioners.minio import MinioProvisioner, make_bucket_policy
from enertef_hub.provisioners.postgres import PostgresProvisioner, make_user_uri
from enertef_hub.workbench import Workbench

ENV = {
    "ENERTEF_POSTGRES_ADMIN_URL": "postgresql://adm:pw@db.example:5433/mlflow",
    "ENERTEF_MINIO_ENDPOINT": "http://minio.example:9000",
    "ENERTEF_MINIO_ACCESS_KEY": "rootkey",
    "ENERTEF_MINIO_SECRET_KEY": "rootsecret",
    "ENERTEF_SECRET_KEY": "k" * 40,
}


@pytest.fixture
def env(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    Workbench.clear_instance()
    yield
    Workbench.clear_instance()


def test_defaults_come_from_environment(env):
    wb = Workbench()
    assert wb.postgres.admin_url == ENV["ENERTEF_POSTGRES_ADMIN_URL"]
    assert wb.minio.endpoint == ENV["ENERTEF_MINIO_ENDPOINT"]
    assert wb.minio.access_key == "rootkey" and wb.minio.secret_key == "rootsecret"
    assert wb.secret_key == "k" * 40
    assert wb.purge_on_delete is False


def test_config_overrides_environment(env):
    config = Config()
    config.PostgresProvisioner.admin_url = "postgresql://other/db"
    config.MinioProvisioner.user_endpoint = "https://s3.example"
    config.Workbench.purge_on_delete = True
    wb = Workbench(config=config)
    assert wb.postgres.admin_url == "postgresql://other/db"
    assert wb.minio.public_endpoint == "https://s3.example"
    assert wb.purge_on_delete is True


def test_mlflow_store_settings_are_mlflow_stores_own(env):
    config = Config()
    config.MlflowStores.mlflow_python = "/opt/mlflow/bin/python"
    config.MlflowStores.mlflow_tables_timeout = 60
    wb = Workbench(config=config)
    assert wb.mlflow.mlflow_python == "/opt/mlflow/bin/python"
    assert (wb.mlflow.upgrader.python, wb.mlflow.upgrader.timeout) == ("/opt/mlflow/bin/python", 60)
    assert wb.mlflow.prepare_mlflow_tables is True and wb.mlflow.mlflow_lock_wait == 10.0


@pytest.mark.parametrize("name, value", [
    ("prepare_mlflow_tables", False), ("replay_mlflow_snapshot", False), ("mlflow_python", "/old/python"),
    ("mlflow_tables_timeout", 42), ("mlflow_lock_wait", 2.5),
])
def test_old_workbench_names_of_mlflow_store_settings_still_work_and_warn(env, caplog, name, value):
    assert name in MOVED_FROM_WORKBENCH
    config = Config()
    config.Workbench[name] = value
    with caplog.at_level("WARNING"):
        wb = Workbench(config=config)
    assert getattr(wb.mlflow, name) == value
    # The upgrader runs that MLflow, for that long.
    upgrader = {"mlflow_python": wb.mlflow.upgrader.python, "mlflow_tables_timeout": wb.mlflow.upgrader.timeout}
    assert upgrader.get(name, value) == value
    assert f"Workbench.{name} is deprecated: set MlflowStores.{name} instead" in caplog.text


def test_the_new_name_wins_over_the_old_one(env, caplog):
    config = Config()
    config.Workbench.mlflow_lock_wait = 1.0
    config.MlflowStores.mlflow_lock_wait = 3.0
    with caplog.at_level("WARNING"):
        wb = Workbench(config=config)
    assert wb.mlflow.mlflow_lock_wait == 3.0
    assert "Workbench.mlflow_lock_wait is deprecated and ignored" in caplog.text


def test_display_address_hides_credentials(env):
    assert PostgresProvisioner().display_address == "db.example:5433/mlflow"


@pytest.mark.parametrize("cls", [Workbench, MlflowStores, PostgresProvisioner, MinioProvisioner])
def test_every_setting_has_help(cls):
    for name, trait in cls.class_traits(config=True).items():
        assert len(trait.help.split()) >= 6, f"{cls.__name__}.{name} needs real help text"


def test_server_environment_contract():
    env = make_user_environment(
        tracking_uri=make_user_uri("u_alice", "pw", "db:5432", "mlflow"), bucket="user-alice",
        access_key="user-alice", secret_key="s", s3_endpoint="http://minio:9000", region="us-east-1",
        teams=["team2", "team1"],
    )
    assert env["MLFLOW_TRACKING_URI"] == "postgresql+psycopg://u_alice:pw@db:5432/mlflow"
    assert env["ENERTEF_MLFLOW_BACKEND_STORE_URI"] == env["MLFLOW_TRACKING_URI"]
    assert env["ENERTEF_BUCKET"] == "user-alice"
    assert env["ENERTEF_MLFLOW_ARTIFACT_ROOT"] == "s3://user-alice/mlflow"
    assert env["AWS_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["ENERTEF_TEAMS"] == "team1,team2"
    assert not set(env) & ADMIN_ENV_NAMES


def test_admin_secrets_are_filtered_from_any_environment():
    env = {name: "x" for name in ADMIN_ENV_NAMES} | {"PATH": "/usr/bin"}
    assert without_admin_secrets(env) == {"PATH": "/usr/bin"}


def test_derived_secrets_are_stable_and_separate():
    alice = make_user_resources("alice")
    first = derive_secret("key" * 10, "postgres", alice, 1)
    assert first == derive_secret("key" * 10, "postgres", alice, 1)
    assert first.isalnum() and len(first) == 40
    others = {
        derive_secret("key" * 10, "minio", alice, 1),
        derive_secret("key" * 10, "postgres", alice, 2),
        derive_secret("key" * 10, "postgres", make_user_resources("alice", 2), 1),
        derive_secret("key" * 10, "postgres", make_user_resources("bob"), 1),
        derive_secret("other" * 6, "postgres", alice, 1),
    }
    assert first not in others and len(others) == 5


def test_bucket_policy_reaches_only_the_bucket():
    policy = make_bucket_policy(["user-alice"])
    allow, *denies = policy["Statement"]
    assert allow["Effect"] == "Allow" and "s3:*" not in allow["Action"]
    assert allow["Resource"] == ["arn:aws:s3:::user-alice", "arn:aws:s3:::user-alice/*"]
    denied = {action for statement in denies for action in statement["Action"]}
    assert {"s3:PutBucketPolicy", "s3:PutLifecycleConfiguration", "admin:CreateServiceAccount"} <= denied
    assert all(statement["Effect"] == "Deny" for statement in denies)


def test_bucket_policy_settings_only_when_allowed():
    policy = make_bucket_policy(["user-alice"], allow_bucket_settings=True, allow_service_accounts=True)
    (statement,) = policy["Statement"]
    assert statement["Action"] == ["s3:*"]


def test_cli_masks_secrets_in_human_output():
    masked = mask_environment({"MLFLOW_TRACKING_URI": "postgresql+psycopg://u_a:secretpw@db/mlflow",
                               "AWS_SECRET_ACCESS_KEY": "secretkey", "ENERTEF_BUCKET": "user-a"})
    assert "secret" not in str(masked)
    assert masked["ENERTEF_BUCKET"] == "user-a"
