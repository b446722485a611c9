"""The pod and volume claim EnerTEFKubeSpawner builds on the released z2jh 4.4.0 chart.

The chart is rendered by a real ``helm template`` with chart-values/jupyterhub.yaml, and
the chart's own jupyterhub_config.py configures our spawner in the hub image's Python
environment, with the files and environment of the hub pod (tests.harness.z2jh). Only
KubeSpawner's cluster client is absent; tests/e2e runs the same on a real control plane.
"""

from __future__ import annotations

import base64
import json

import kubernetes_validate
import pytest
from jupyterhub.traitlets import ByteSpecification

from enertef_hub.environment import make_user_environment
from tests.harness import z2jh

K8S_VERSION = z2jh.pinned_k8s_version()  # the k3s that scripts/start.sh pins
REPO = z2jh.REPO

# Hub-side secrets: the Secret "enertef-hub" scripts/start.sh creates, which hub.extraEnv reads.
ADMIN_SECRET = {
    "ENERTEF_POSTGRES_ADMIN_URL": "postgresql://enertef_admin:ADMINPGSECRET4711@enertef-postgresql:5432/mlflow",
    "ENERTEF_MINIO_ACCESS_KEY": "enertefadmin",
    "ENERTEF_MINIO_SECRET_KEY": "ADMINMINIOSECRET4711",
    "ENERTEF_SECRET_KEY": "ADMINDERIVATIONKEY4711",
}
ADMIN_ENV_NAMES = (*ADMIN_SECRET, "ENERTEF_MINIO_ENDPOINT")
ADMIN_SECRET_VALUES = ("ADMINPGSECRET4711", "ADMINMINIOSECRET4711", "ADMINDERIVATIONKEY4711")
SECRETS = z2jh.example_secrets(**ADMIN_SECRET)

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


def build_answer(*overrides: dict, incarnation: int | None = None) -> dict:
    """What our spawner builds for alice on the chart rendered with our values and ``overrides``:
    ``pod``, ``pvc`` and the ``secrets`` it created first.

    The spawner's ``prepare_home`` runs first, as at a spawn of ``incarnation`` (default 1)
    of alice's account.
    """
    objects = z2jh.render(*overrides)
    answer = z2jh.run_in_hub_pod(
        objects, {"mode": "pod", "user": "alice", "user_env": dict(USER_ENV), "incarnation": incarnation},
        SECRETS)
    # What the chart wired us to must be our class, or nothing below tests ours.
    assert answer["config"]["JupyterHub"]["spawner_class"] == "enertef-kube"
    return answer


def build_manifests(*overrides: dict, incarnation: int | None = None) -> tuple[dict, dict]:
    """(pod, pvc) of :func:`build_answer`."""
    answer = build_answer(*overrides, incarnation=incarnation)
    return answer["pod"], answer["pvc"]


@pytest.fixture(scope="module")
def values() -> dict:
    """Our values file, as the deployer wrote it."""
    import yaml

    return yaml.safe_load(z2jh.VALUES_FILE.read_text())


@pytest.fixture(scope="module")
def answer():
    return build_answer()


@pytest.fixture(scope="module")
def manifests(answer):
    return answer["pod"], answer["pvc"]


def _notebook(pod: dict) -> dict:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return container


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _resolved_env(container: dict, secrets: list[dict]) -> dict:
    """The container's env as the kubelet resolves it, ``secretKeyRef`` from ``secrets``."""
    data = {(s["metadata"]["name"], k): base64.b64decode(v).decode() for s in secrets for k, v in s["data"].items()}
    env = {}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[item["name"]] = data[(ref["name"], ref["key"])] if ref else item.get("value")
    return env


def test_manifests_are_valid_kubernetes(manifests):
    pod, pvc = manifests
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    kubernetes_validate.validate(pvc, K8S_VERSION, strict=True)


def test_pod_carries_the_users_environment(answer):
    env = _resolved_env(_notebook(answer["pod"]), answer["secrets"])
    for name in CONTRACT_ENV:
        assert env.get(name) == USER_ENV[name], name
    assert env["ENERTEF_TEAMS"] == "gridops"


def test_no_admin_secret_anywhere_in_the_pod(manifests):
    text = json.dumps(manifests)
    for secret in ADMIN_SECRET_VALUES:
        assert secret not in text
    env = _env(_notebook(manifests[0]))
    assert not {name for name in env if name in ADMIN_ENV_NAMES and name != "ENERTEF_MINIO_ENDPOINT"}


def test_admin_secrets_stay_out_even_if_an_operator_passes_them():
    """singleuser.extraEnv / env_keep naming hub secrets must not leak them to users."""
    leaky = {
        "singleuser": {"extraEnv": {"ENERTEF_MINIO_SECRET_KEY": ADMIN_SECRET["ENERTEF_MINIO_SECRET_KEY"]}},
        "hub": {"extraConfig": {
            "keep-admin-env": 'c.KubeSpawner.env_keep = ["ENERTEF_POSTGRES_ADMIN_URL", "ENERTEF_SECRET_KEY"]'}},
    }
    pod, _pvc = build_manifests(leaky)
    text = json.dumps(pod)
    for secret in ADMIN_SECRET_VALUES:
        assert secret not in text


def test_home_volume_is_the_users_claim_of_the_configured_size(manifests, values):
    pod, pvc = manifests
    mounts = {m["mountPath"]: m["name"] for m in _notebook(pod)["volumeMounts"]}
    home = mounts[values["singleuser"]["storage"]["homeMountPath"]]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == home]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] == "claim-alice"
    assert pvc["spec"]["resources"]["requests"]["storage"] == values["singleuser"]["storage"]["capacity"] == "10Gi"


def test_resources_come_from_the_values(manifests, values):
    resources = _notebook(manifests[0])["resources"]
    single = values["singleuser"]
    assert float(resources["limits"]["cpu"]) == float(single["cpu"]["limit"])
    assert float(resources["requests"]["cpu"]) == float(single["cpu"]["guarantee"])
    assert int(resources["limits"]["memory"]) == to_bytes(single["memory"]["limit"])
    assert int(resources["requests"]["memory"]) == to_bytes(single["memory"]["guarantee"])


def test_pod_runs_our_notebook_image_through_its_seeding_start_hook(manifests, values):
    """Seeding happens in the image's start hook, so the pod must keep the image's entrypoint."""
    container = _notebook(manifests[0])
    image = values["singleuser"]["image"]
    assert container["image"] == f"{image['name']}:{image['tag']}"
    # Overriding `command` would bypass docker-stacks' start.sh and with it before-notebook.d.
    assert "command" not in container
    assert container["args"][0] == "jupyterhub-singleuser"
    hook = REPO / "jn-tb" / "notebook" / "before-notebook.d" / "50-enertef-seed.sh"
    assert "python -m enertef_hub.provisioners.seeding" in hook.read_text()
    assert "COPY jn-tb/notebook/before-notebook.d/ /usr/local/bin/before-notebook.d/" in (
        REPO / "jn-tb" / "notebook" / "Dockerfile").read_text()


def test_user_pod_can_reach_the_hub_api_through_the_network_policy(manifests):
    # z2jh's hub NetworkPolicy admits only pods with this label.
    assert manifests[0]["metadata"]["labels"].get("hub.jupyter.org/network-access-hub") == "true"


def test_pod_is_selected_by_the_singleuser_network_policy(manifests):
    """The egress rules of chart-values apply to pods labelled component=singleuser-server."""
    labels = manifests[0]["metadata"]["labels"]
    assert labels.get("component") == "singleuser-server"
    assert labels.get("release") == "enertef"


def test_the_values_file_is_what_the_manifest_follows(values):
    """Changing a value changes the pod: the chart really reads our values."""
    pod, _ = build_manifests({"singleuser": {"memory": {"limit": "8G"}}})
    assert int(_notebook(pod)["resources"]["limits"]["memory"]) == to_bytes("8G")
    assert values["singleuser"]["memory"]["limit"] != "8G"


def test_recreated_account_gets_a_home_volume_of_its_own():
    """A deleted alice's kept home must not be mounted by the next account named alice.

    The chart sets KubeSpawner.volumes as a dict keyed by volume name with the claim
    "{pvc_name}" (the shape that once made every spawn fail): prepare_home must take it.
    """
    claims = {}
    for incarnation in (1, 2):
        pod, pvc = build_manifests(incarnation=incarnation)
        mounted = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                   if "persistentVolumeClaim" in v]
        assert mounted == [pvc["metadata"]["name"]]
        claims[incarnation] = pvc["metadata"]["name"]
    assert claims == {1: "claim-alice", 2: "claim-alice-i2"}


def test_a_claim_spelt_out_in_a_list_of_volumes_is_renamed_too():
    """Deployers may list volumes (KubeSpawner's list form) and spell the claim out."""
    overrides = {"hub": {"extraConfig": {"list-volumes": """
c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-{username}"}}]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
"""}}}
    pod, pvc = build_manifests(overrides, incarnation=3)
    (volume,) = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] == "claim-alice-i3"


# --- the user's credentials: a Secret of their own, never the pod's spec ------------

USER_SECRET_VALUES = ("userpw123", "usersecret123", "hub-api-token-of-alice")


def test_no_user_credential_in_the_pod_spec(answer):
    """Whoever may read pods (kubectl describe, the hub's Role, backups of etcd's pods) sees no key."""
    text = json.dumps(answer["pod"])
    for secret in USER_SECRET_VALUES:
        assert secret not in text, secret


def test_credentials_come_from_the_users_own_secret(answer):
    (secret,) = answer["secrets"]
    assert secret["metadata"]["name"] == "jupyter-alice-env"
    assert secret["metadata"]["labels"]["hub.jupyter.org/username"] == "alice"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _notebook(answer["pod"])["env"] if "valueFrom" in e}
    for name in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_URI", "ENERTEF_MLFLOW_BACKEND_STORE_URI",
                 "JUPYTERHUB_API_TOKEN"):
        assert refs[name] == {"name": "jupyter-alice-env", "key": name}, name
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert values["AWS_SECRET_ACCESS_KEY"] == "usersecret123"
    assert values["JUPYTERHUB_API_TOKEN"] == "hub-api-token-of-alice"
    kubernetes_validate.validate(secret | {"metadata": {**secret["metadata"], "namespace": "enertef"}},
                                 K8S_VERSION, strict=True)


def test_pod_and_secret_are_owned_by_the_release(answer):
    """helm uninstall deletes Secret hub; the garbage collector then deletes the pod and its Secret."""
    from tests.harness.z2jh.hubpod_probe import HUB_SECRET_UID

    owner = {"apiVersion": "v1", "kind": "Secret", "name": "hub", "uid": HUB_SECRET_UID}
    assert owner in answer["pod"]["metadata"]["ownerReferences"]
    assert answer["secrets"][0]["metadata"]["ownerReferences"] == [owner]


def test_user_pod_meets_the_restricted_pod_security_standard(manifests):
    """What the "restricted" profile checks of a pod (the journey has the API server enforce it)."""
    pod = manifests[0]
    spec = pod["spec"]
    assert not spec.get("initContainers"), "an init container (e.g. the chart's iptables one) runs as root"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert not context.get("privileged") and context.get("runAsUser", 1000) != 0
    assert not [v for v in spec["volumes"] if "hostPath" in v]


def test_split_secret_env_is_pure_and_leaves_other_values():
    from enertef_hub.kubespawner import make_user_secret, split_secret_env

    env = {"AWS_SECRET_ACCESS_KEY": "k", "LANG": "C", "OPERATOR": {"name": "OPERATOR", "value": "x"}}
    pod_env, data = split_secret_env(env, ["AWS_SECRET_ACCESS_KEY", "MISSING", "OPERATOR"], "jupyter-bob-env")
    assert data == {"AWS_SECRET_ACCESS_KEY": "k"}
    assert pod_env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "jupyter-bob-env", "key": "AWS_SECRET_ACCESS_KEY"}}}
    assert pod_env["LANG"] == "C" and pod_env["OPERATOR"] == env["OPERATOR"]
    assert env["AWS_SECRET_ACCESS_KEY"] == "k"  # the input is not changed
    secret = make_user_secret("jupyter-bob-env", data, {"a": "b"})
    assert secret["data"] == {"AWS_SECRET_ACCESS_KEY": "aw=="} and "ownerReferences" not in secret["metadata"]
