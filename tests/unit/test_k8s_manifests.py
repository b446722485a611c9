"""Every Kubernetes manifest under chart-values/manifests/ is valid for the cluster we pin.

kubernetes-validate checks each document against the OpenAPI schema of the k3s
version scripts/start.sh creates (strict: unknown fields are errors, as a typo in a
manifest would silently be ignored by an older kubectl).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.harness.z2jh import pinned_k8s_version

REPO = Path(__file__).resolve().parents[2]
MANIFEST_DIR = REPO / "chart-values" / "manifests"
MANIFESTS = sorted(MANIFEST_DIR.glob("*.yaml"))


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_there_are_manifests():
    names = {p.name for p in MANIFESTS}
    assert {"namespace.yaml", "postgresql.yaml", "secrets.example.yaml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path):
    version = pinned_k8s_version()
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


HUB_NS, DATA_NS = "enertef", "enertef-data"
#: Where each object lives: PostgreSQL and its policies with the data; the hub's Secret with the hub.
EXPECTED_NAMESPACE = {("Secret", "enertef-hub"): HUB_NS}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_lives_in_our_namespaces(path):
    for doc in documents(path):
        if doc["kind"] != "Namespace":
            expected = EXPECTED_NAMESPACE.get((doc["kind"], doc["metadata"]["name"]), DATA_NS)
            assert doc["metadata"].get("namespace") == expected, doc["metadata"]["name"]


def test_the_hubs_namespace_enforces_the_restricted_pod_security_standard():
    labels = {d["metadata"]["name"]: d["metadata"]["labels"] for d in documents(MANIFEST_DIR / "namespace.yaml")}
    assert labels[HUB_NS]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels[DATA_NS]["pod-security.kubernetes.io/enforce"] == "baseline"


def test_superuser_and_root_passwords_never_reach_the_hubs_namespace():
    """The z2jh chart's Role lets the hub read every Secret of its namespace: only its own keys live there."""
    secrets = {d["metadata"]["name"]: d for d in documents(MANIFEST_DIR / "secrets.example.yaml")}
    in_hub_ns = [d for d in secrets.values() if d["metadata"]["namespace"] == HUB_NS]
    assert [d["metadata"]["name"] for d in in_hub_ns] == ["enertef-hub"]
    hub = secrets["enertef-hub"]["stringData"]
    superuser = secrets["enertef-postgresql"]["stringData"]["POSTGRES_PASSWORD"]
    root_user = secrets["enertef-minio"]["stringData"]["rootUser"]
    root_password = secrets["enertef-minio"]["stringData"]["rootPassword"]
    assert urlsplit(hub["ENERTEF_POSTGRES_ADMIN_URL"]).username == "enertef_admin"
    assert urlsplit(hub["ENERTEF_POSTGRES_ADMIN_URL"]).password != superuser
    assert hub["ENERTEF_MINIO_ACCESS_KEY"] != root_user
    assert root_password not in hub.values()
    # The hub's MinIO user is the one the MinIO chart makes, with the key of enertef-minio-hub.
    minio = yaml.safe_load((REPO / "chart-values" / "minio.yaml").read_text())
    (user,) = minio["users"]
    assert user["accessKey"] == hub["ENERTEF_MINIO_ACCESS_KEY"]
    assert hub["ENERTEF_MINIO_SECRET_KEY"] == secrets[user["existingSecret"]]["stringData"][user["existingSecretKey"]]
    assert secrets[user["existingSecret"]]["metadata"]["namespace"] == DATA_NS


def test_validation_catches_a_broken_manifest():
    """A misspelt field fails: the check above is not a formality."""
    doc = documents(MANIFEST_DIR / "postgresql.yaml")[-1]
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, pinned_k8s_version(), strict=True)


def test_images_are_pinned():
    for path in MANIFESTS:
        for image in re.findall(r"image:\s*(\S+)", path.read_text()):
            assert ":" in image.split("/")[-1] and not image.endswith(":latest"), image


def test_postgresql_keeps_its_data_on_a_claim():
    (statefulset,) = [d for d in documents(MANIFEST_DIR / "postgresql.yaml") if d["kind"] == "StatefulSet"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    pgdata = next(e["value"] for e in container["env"] if e["name"] == "PGDATA")
    # PGDATA inside the mounted claim (a subdirectory: the root may hold lost+found).
    assert pgdata.startswith(mount["mountPath"] + "/")
    # Passwords only by reference.
    for env in container["env"]:
        if "PASSWORD" in env["name"]:
            assert "valueFrom" in env and "value" not in env, env["name"]


def test_example_secrets_hold_no_real_values():
    for doc in documents(MANIFEST_DIR / "secrets.example.yaml"):
        for key, value in doc["stringData"].items():
            if any(word in key.upper() for word in ("PASSWORD", "SECRET", "URL")):
                assert "CHANGE-ME" in value, f"{doc['metadata']['name']}.{key}"


# --- who may connect to PostgreSQL and MinIO -----------------------------------------

# A pod: (its namespace, its labels).
HUB = (HUB_NS, {"component": "hub", "release": "enertef", "app": "jupyterhub"})
USER_POD = (HUB_NS, {"component": "singleuser-server", "release": "enertef", "hub.jupyter.org/username": "alice"})
PGADMIN = (DATA_NS, {"app.kubernetes.io/name": "pgadmin4", "app.kubernetes.io/instance": "enertef-pgadmin"})
OTHER = (HUB_NS, {"app": "something-else"})
#: A hub of another release, in another namespace, with the same pod labels.
FOREIGN_HUB = ("elsewhere", HUB[1])
POSTGRES = (DATA_NS, {"app.kubernetes.io/name": "enertef-postgresql"})
MINIO = (DATA_NS, {"app": "minio", "release": "enertef-minio"})


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_admits(peer: dict, policy_namespace: str, source: tuple[str, dict]) -> bool:
    """A NetworkPolicy peer (pod and/or namespace selector) admits the pod ``source``."""
    namespace, labels = source
    assert set(peer) <= {"podSelector", "namespaceSelector"}, peer
    if "namespaceSelector" in peer:
        # Namespaces carry kubernetes.io/metadata.name (set by Kubernetes itself).
        if not _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
    elif namespace != policy_namespace:
        return False
    return _selects(peer.get("podSelector", {}), labels)


def ingress_allowed(source: tuple[str, dict], target: tuple[str, dict], port: int) -> bool:
    """Whether our NetworkPolicies let the pod ``source`` reach the pod ``target`` on ``port``."""
    policies = [d for d in documents(MANIFEST_DIR / "networkpolicies.yaml")
                if "Ingress" in d["spec"]["policyTypes"] and d["metadata"]["namespace"] == target[0]
                and _selects(d["spec"]["podSelector"], target[1])]
    if not policies:
        return True  # not isolated
    return any(
        any(_peer_admits(peer, policy["metadata"]["namespace"], source) for peer in rule["from"])
        and any(p["port"] == port for p in rule["ports"])
        for policy in policies for rule in policy["spec"].get("ingress", []))


@pytest.mark.parametrize("source, target, port, allowed", [
    (HUB, POSTGRES, 5432, True),
    (USER_POD, POSTGRES, 5432, True),
    (PGADMIN, POSTGRES, 5432, True),
    (OTHER, POSTGRES, 5432, False),
    (FOREIGN_HUB, POSTGRES, 5432, False),
    (HUB, MINIO, 9000, True),
    (USER_POD, MINIO, 9000, True),
    (USER_POD, MINIO, 9001, False),
    (PGADMIN, MINIO, 9000, False),
    (OTHER, MINIO, 9000, False),
    (USER_POD, PGADMIN, 80, False),
    (HUB, PGADMIN, 80, False),
], ids=lambda v: v if isinstance(v, (int, bool)) else f"{v[0]}/{next(iter(v[1].values()))}")
def test_ingress_policies(source, target, port, allowed):
    assert ingress_allowed(source, target, port) is allowed


def test_ingress_policies_select_the_real_pods():
    """The PostgreSQL policy selects the StatefulSet's pods (a label typo would leave it open)."""
    (statefulset,) = [d for d in documents(MANIFEST_DIR / "postgresql.yaml") if d["kind"] == "StatefulSet"]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert _selects({"matchLabels": POSTGRES[1]}, pod_labels)
    assert not ingress_allowed(OTHER, (statefulset["metadata"]["namespace"], pod_labels), 5432)


def test_the_pgadmin_charts_open_policy_is_off():
    values = yaml.safe_load((REPO / "chart-values" / "pgadmin.yaml").read_text())
    assert values["networkPolicy"]["enabled"] is False
