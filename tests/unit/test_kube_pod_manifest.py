"""The pod and volume claim EnerTEFKubeSpawner builds from our chart values, without a cluster.

The spawner gets the config z2jh would give it (tests/z2jh_emulation.py applies
chart-values/jupyterhub.yaml and jupyterhub_config.d/ as the chart does) and the
environment a provisioning would produce; KubeSpawner's cluster client is patched
out (DESIGN.md "Facts": manifests build with no cluster inside a running loop).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from unittest import mock

import kubernetes_validate
import pytest
import yaml
from jupyterhub.traitlets import ByteSpecification
from kubernetes_asyncio.client import ApiClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import z2jh_emulation  # noqa: E402

from enertef_hub.environment import make_user_environment  # noqa: E402

K8S_VERSION = z2jh_emulation.pinned_k8s_version()  # the k3s that scripts/start.sh pins

# Hub-side secrets, present in the hub's own environment (as hub.extraEnv puts them).
ADMIN_ENV = {
    "ENERTEF_POSTGRES_ADMIN_URL": "postgresql://enertef_admin:ADMINPGSECRET4711@enertef-postgresql:5432/mlflow",
    "ENERTEF_MINIO_ENDPOINT": "http://enertef-minio:9000",
    "ENERTEF_MINIO_ACCESS_KEY": "enertefadmin",
    "ENERTEF_MINIO_SECRET_KEY": "ADMINMINIOSECRET4711",
    "ENERTEF_SECRET_KEY": "ADMINDERIVATIONKEY4711",
}
ADMIN_SECRET_VALUES = ("ADMINPGSECRET4711", "ADMINMINIOSECRET4711", "ADMINDERIVATIONKEY4711")

USER_ENV = make_user_environment(
    tracking_uri="postgresql+psycopg://u_alice:userpw123@enertef-postgresql:5432/mlflow",
    bucket="user-alice",
    access_key="user-alice",
    secret_key="usersecret123",
    s3_endpoint="http://enertef-minio:9000",
    region="us-east-1",
    teams=["gridops"],
)
CONTRACT_ENV = ("MLFLOW_TRACKING_URI", "ENERTEF_MLFLOW_BACKEND_STORE_URI", "ENERTEF_MLFLOW_ARTIFACT_ROOT",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL",
                "AWS_DEFAULT_REGION", "ENERTEF_BUCKET", "ENERTEF_TEAMS")


def to_bytes(spec: str) -> int:
    """JupyterHub's own reading of a memory value such as "4G" (what KubeSpawner uses)."""
    return ByteSpecification().validate(None, spec)


def _user(name: str):
    user = mock.Mock()
    user.name = name
    user.escaped_name = name
    user.id = 7
    user.url = f"/user/{name}/"
    user.groups = []
    return user


async def build_manifests(values: dict, extra_config=None, incarnation: int | None = None) -> tuple[dict, dict]:
    """(pod, pvc) as plain dicts, from z2jh-emulated config built over ``values``.

    With ``incarnation``, the spawner's ``prepare_home`` runs first, as at a spawn
    of that incarnation of alice's account.
    """
    from enertef_hub.kubespawner import EnerTEFKubeSpawner
    from enertef_hub.naming import make_user_resources
    from enertef_hub.workbench import ProvisionResult

    config = z2jh_emulation.build_config(values=values)
    if extra_config:
        extra_config(config)
    # What the chart wired us to must be our class, or nothing below tests ours.
    assert config.JupyterHub.spawner_class == "enertef-kube"
    with mock.patch.dict(os.environ, ADMIN_ENV), \
            mock.patch("kubespawner.spawner.load_config"), \
            mock.patch("kubespawner.spawner.shared_client"):
        spawner = EnerTEFKubeSpawner(config=config, _mock=True, user=_user("alice"))
        spawner.api_token = "hub-api-token-of-alice"
        # What EnerTEFSpawnerMixin.start keeps from Workbench.provision().
        spawner._enertef_env = dict(USER_ENV)
        if incarnation is not None:
            result = ProvisionResult(make_user_resources("alice", incarnation), dict(USER_ENV), True, 0.0)
            await spawner.prepare_home(result)
        pod = await spawner.get_pod_manifest()
        pvc = spawner.get_pvc_manifest()
    async with ApiClient() as api:
        return api.sanitize_for_serialization(pod), api.sanitize_for_serialization(pvc)


@pytest.fixture(scope="module")
def values() -> dict:
    return z2jh_emulation.load_values()


@pytest.fixture()
async def manifests(values):
    return await build_manifests(values)


def _notebook(pod: dict) -> dict:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return container


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


async def test_manifests_are_valid_kubernetes(manifests):
    pod, pvc = manifests
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    kubernetes_validate.validate(pvc, K8S_VERSION, strict=True)


async def test_pod_carries_the_users_environment(manifests):
    env = _env(_notebook(manifests[0]))
    for name in CONTRACT_ENV:
        assert env.get(name) == USER_ENV[name], name
    assert env["ENERTEF_TEAMS"] == "gridops"


async def test_no_admin_secret_anywhere_in_the_pod(manifests):
    text = json.dumps(manifests)
    for secret in ADMIN_SECRET_VALUES:
        assert secret not in text
    env = _env(_notebook(manifests[0]))
    assert not {name for name in env if name in ADMIN_ENV and name != "ENERTEF_MINIO_ENDPOINT"}


async def test_admin_secrets_stay_out_even_if_an_operator_passes_them(values):
    """singleuser.extraEnv / env_keep naming hub secrets must not leak them to users."""
    leaky = z2jh_emulation.deep_merge(values, {"singleuser": {"extraEnv": {
        "ENERTEF_MINIO_SECRET_KEY": ADMIN_ENV["ENERTEF_MINIO_SECRET_KEY"]}}})

    def keep_admin_env(c):
        c.KubeSpawner.env_keep = ["ENERTEF_POSTGRES_ADMIN_URL", "ENERTEF_SECRET_KEY"]

    pod, _pvc = await build_manifests(leaky, keep_admin_env)
    text = json.dumps(pod)
    for secret in ADMIN_SECRET_VALUES:
        assert secret not in text


async def test_home_volume_is_the_users_claim_of_the_configured_size(manifests, values):
    pod, pvc = manifests
    mounts = {m["mountPath"]: m["name"] for m in _notebook(pod)["volumeMounts"]}
    home = mounts[values["singleuser"]["storage"]["homeMountPath"]]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == home]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] == "claim-alice"
    assert pvc["spec"]["resources"]["requests"]["storage"] == values["singleuser"]["storage"]["capacity"] == "10Gi"


async def test_resources_come_from_the_values(manifests, values):
    resources = _notebook(manifests[0])["resources"]
    single = values["singleuser"]
    assert float(resources["limits"]["cpu"]) == float(single["cpu"]["limit"])
    assert float(resources["requests"]["cpu"]) == float(single["cpu"]["guarantee"])
    assert int(resources["limits"]["memory"]) == to_bytes(single["memory"]["limit"])
    assert int(resources["requests"]["memory"]) == to_bytes(single["memory"]["guarantee"])


async def test_pod_runs_our_notebook_image_through_its_seeding_start_hook(manifests, values):
    """Seeding happens in the image's start hook, so the pod must keep the image's entrypoint."""
    container = _notebook(manifests[0])
    image = values["singleuser"]["image"]
    assert container["image"] == f"{image['name']}:{image['tag']}"
    # Overriding `command` would bypass docker-stacks' start.sh and with it before-notebook.d.
    assert "command" not in container
    assert container["args"][0] == "jupyterhub-singleuser"
    hook = z2jh_emulation.REPO / "jn-tb" / "notebook" / "before-notebook.d" / "50-enertef-seed.sh"
    assert "python -m enertef_hub.provisioners.seeding" in hook.read_text()
    assert "COPY jn-tb/notebook/before-notebook.d/ /usr/local/bin/before-notebook.d/" in (
        z2jh_emulation.REPO / "jn-tb" / "notebook" / "Dockerfile").read_text()


async def test_user_pod_can_reach_the_hub_api_through_the_network_policy(manifests):
    # z2jh's hub NetworkPolicy admits only pods with this label.
    assert manifests[0]["metadata"]["labels"].get("hub.jupyter.org/network-access-hub") == "true"


async def test_pod_is_selected_by_the_singleuser_network_policy(manifests):
    """The egress rules of chart-values apply to pods labelled component=singleuser-server."""
    labels = manifests[0]["metadata"]["labels"]
    assert labels.get("component") == "singleuser-server"
    assert labels.get("release") == "enertef"


async def test_the_values_file_is_what_the_manifest_follows(values):
    """Changing a value changes the pod: the emulation really reads chart-values."""
    bigger = z2jh_emulation.deep_merge(values, {"singleuser": {"memory": {"limit": "8G"}}})
    pod, _ = await build_manifests(bigger)
    assert int(_notebook(pod)["resources"]["limits"]["memory"]) == to_bytes("8G")
    raw = yaml.safe_load(z2jh_emulation.VALUES_FILE.read_text())
    assert raw["singleuser"]["memory"]["limit"] == values["singleuser"]["memory"]["limit"]


async def test_recreated_account_gets_a_home_volume_of_its_own(values):
    """A deleted alice's kept home must not be mounted by the next account named alice."""
    claims = {}
    for incarnation in (1, 2):
        pod, pvc = await build_manifests(values, incarnation=incarnation)
        mounted = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                   if "persistentVolumeClaim" in v]
        assert mounted == [pvc["metadata"]["name"]]
        claims[incarnation] = pvc["metadata"]["name"]
    assert claims[2] == claims[1] + "-i2"
