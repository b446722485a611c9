"""Every Kubernetes manifest under chart-values/manifests/ is valid for the cluster we pin.

kubernetes-validate checks each document against the OpenAPI schema of the k3s
version scripts/start.sh creates (strict: unknown fields are errors, as a typo in a
manifest would silently be ignored by an older kubectl).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from z2jh_chart import pinned_k8s_version  # noqa: E402

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


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_lives_in_our_namespace(path):
    for doc in documents(path):
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "enertef", doc["metadata"]["name"]


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

HUB = {"component": "hub", "release": "enertef", "app": "jupyterhub"}
USER_POD = {"component": "singleuser-server", "release": "enertef", "hub.jupyter.org/username": "alice"}
PGADMIN = {"app.kubernetes.io/name": "pgadmin4", "app.kubernetes.io/instance": "enertef-pgadmin"}
OTHER = {"app": "something-else"}
POSTGRES = {"app.kubernetes.io/name": "enertef-postgresql"}
MINIO = {"app": "minio", "release": "enertef-minio"}


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def ingress_allowed(source: dict, target: dict, port: int) -> bool:
    """Whether our NetworkPolicies let a pod with ``source`` labels reach ``target``:``port``."""
    policies = [d for d in documents(MANIFEST_DIR / "networkpolicies.yaml")
                if "Ingress" in d["spec"]["policyTypes"] and _selects(d["spec"]["podSelector"], target)]
    if not policies:
        return True  # not isolated
    return any(
        any(_selects(peer.get("podSelector", {}), source) and set(peer) == {"podSelector"} for peer in rule["from"])
        and any(p["port"] == port for p in rule["ports"])
        for policy in policies for rule in policy["spec"].get("ingress", []))


@pytest.mark.parametrize("source, target, port, allowed", [
    (HUB, POSTGRES, 5432, True),
    (USER_POD, POSTGRES, 5432, True),
    (PGADMIN, POSTGRES, 5432, True),
    (OTHER, POSTGRES, 5432, False),
    (HUB, MINIO, 9000, True),
    (USER_POD, MINIO, 9000, True),
    (USER_POD, MINIO, 9001, False),
    (PGADMIN, MINIO, 9000, False),
    (OTHER, MINIO, 9000, False),
    (USER_POD, PGADMIN, 80, False),
    (HUB, PGADMIN, 80, False),
], ids=lambda v: v if isinstance(v, (int, bool)) else next(iter(v.values())))
def test_ingress_policies(source, target, port, allowed):
    assert ingress_allowed(source, target, port) is allowed


def test_ingress_policies_select_the_real_pods():
    """The PostgreSQL policy selects the StatefulSet's pods (a label typo would leave it open)."""
    (statefulset,) = [d for d in documents(MANIFEST_DIR / "postgresql.yaml") if d["kind"] == "StatefulSet"]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert _selects({"matchLabels": POSTGRES}, pod_labels)
    assert not ingress_allowed(OTHER, pod_labels, 5432)


def test_the_pgadmin_charts_open_policy_is_off():
    values = yaml.safe_load((REPO / "chart-values" / "pgadmin.yaml").read_text())
    assert values["networkPolicy"]["enabled"] is False
