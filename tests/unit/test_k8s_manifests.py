"""Every Kubernetes manifest under chart-values/manifests/ is valid for the cluster we pin.

kubernetes-validate checks each document against the OpenAPI schema of the k3s
version scripts/start.sh creates (strict: unknown fields are errors, as a typo in a
manifest would silently be ignored by an older kubectl).
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST_DIR = REPO / "chart-values" / "manifests"
MANIFESTS = sorted(MANIFEST_DIR.glob("*.yaml"))


def pinned_k8s_version() -> str:
    """The Kubernetes minor of the k3s image scripts/start.sh creates the cluster with."""
    match = re.search(r"rancher/k3s:v(\d+\.\d+)\.\d+-k3s\d+", (REPO / "scripts" / "start.sh").read_text())
    assert match, "scripts/start.sh must pin the k3s image (rancher/k3s:vX.Y.Z-k3sN)"
    return f"{match.group(1)}.0"


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
