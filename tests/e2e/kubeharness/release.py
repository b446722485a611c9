"""``helm install`` of the released z2jh chart with our values, in a namespace of its own.

What a deployer does with ``scripts/start.sh``, on the test control plane:
``chart-values/manifests/`` (PostgreSQL, network policies) applied into the
namespace, the Secrets generated as ``scripts/start.sh`` generates them (but holding
the credentials of the PostgreSQL and MinIO that run on this machine), then
``helm install`` of ``../shared/z2jh-4.4.0/chart`` with ``chart-values/jupyterhub.yaml``
and a small overlay (:func:`overlay_values`) of what must differ on one machine.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from .api import REPO, KubeAPI

CHART = Path(__file__).resolve().parents[4] / "shared" / "z2jh-4.4.0" / "chart"
RELEASE = "enertef"
MANIFESTS = ("postgresql.yaml", "networkpolicies.yaml")


def chart_dir() -> Path:
    """The released chart: ``shared/z2jh-4.4.0/chart`` beside the clone (CI clones elsewhere)."""
    if not (CHART / "Chart.yaml").exists():
        raise RuntimeError(f"the z2jh 4.4.0 chart is not at {CHART} (expected beside the repository)")
    return CHART


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr[-3000:]}")
    return proc.stdout


def secret_manifest(name: str, namespace: str, data: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "enertef-hub"}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def make_secrets(namespace: str, services_env: dict[str, str], hub_admin_password: str) -> list[dict]:
    """The four Secrets of ``scripts/start.sh`` (shape: chart-values/manifests/secrets.example.yaml).

    PostgreSQL and MinIO are this machine's (``scripts/services.sh``), so their
    passwords are theirs; the hub reaches them by the in-cluster names of the real
    deployment (``enertef-postgresql:5432``, ``enertef-minio:9000``), which
    :func:`external_services` makes resolve here.
    """
    admin = urlsplit(services_env["ENERTEF_POSTGRES_ADMIN_URL"])
    admin_url = admin._replace(netloc=f"{admin.username}:{admin.password}@enertef-postgresql:5432").geturl()
    return [
        secret_manifest("enertef-postgresql", namespace, {
            "POSTGRES_PASSWORD": secrets.token_urlsafe(24), "ENERTEF_ADMIN_PASSWORD": admin.password}),
        secret_manifest("enertef-minio", namespace, {
            "rootUser": services_env["ENERTEF_MINIO_ACCESS_KEY"], "rootPassword": services_env["ENERTEF_MINIO_SECRET_KEY"]}),
        secret_manifest("enertef-pgadmin", namespace, {"password": secrets.token_urlsafe(18)}),
        secret_manifest("enertef-hub", namespace, {
            "ENERTEF_POSTGRES_ADMIN_URL": admin_url,
            "ENERTEF_MINIO_ACCESS_KEY": services_env["ENERTEF_MINIO_ACCESS_KEY"],
            "ENERTEF_MINIO_SECRET_KEY": services_env["ENERTEF_MINIO_SECRET_KEY"],
            "ENERTEF_SECRET_KEY": services_env["ENERTEF_SECRET_KEY"],
            "ENERTEF_HUB_ADMIN_PASSWORD": hub_admin_password}),
    ]


def external_services(services_env: dict[str, str]) -> dict[tuple[str, int], tuple[str, int]]:
    """Service name and port -> where that part runs on this machine (for the kube-proxy stand-in)."""
    pg = urlsplit(services_env["ENERTEF_POSTGRES_ADMIN_URL"])
    minio = urlsplit(services_env["ENERTEF_MINIO_ENDPOINT"])
    return {("enertef-postgresql", 5432): (pg.hostname, pg.port or 5432),
            ("enertef-minio", 9000): (minio.hostname, minio.port or 80)}


def overlay_values(api_token: str, public_url: str, extra: dict | None = None) -> dict:
    """What differs from chart-values/jupyterhub.yaml on this machine.

    - a test API token: a JupyterHub service of the chart (``hub.services``) with a
      role (``hub.loadRoles``), so the test can ask the hub REST API about users;
    - if the values give users origins of their own (``subdomain_host``), the
      hub's public URL here (the port of the test's port-forward);
    - the spawn page without JupyterHub's 10 s wait (``slow_spawn_timeout``);
    - no team-sync service: it makes this hub's groups the truth for the whole
      account registry, and here PostgreSQL is shared with other tests' hubs (one
      hub per database in a real deployment).
    """
    values = {
        "hub": {
            "extraEnv": {"ENERTEF_TEAM_SYNC_INTERVAL": "0"},
            "services": {"e2e-tests": {"apiToken": api_token}},
            "loadRoles": {"e2e-tests": {
                "services": ["e2e-tests"],
                "scopes": ["admin:users", "admin:servers", "access:servers", "read:hub", "admin:groups"],
            }},
        },
    }
    # The spawn page at once (JupyterHub waits 10 s first), so the test always sees
    # the progress messages, as users do whenever a spawn takes a while.
    hub_config = {"tornado_settings": {"slow_spawn_timeout": 0}}
    chart_values = yaml.safe_load((REPO / "chart-values" / "jupyterhub.yaml").read_text())
    if chart_values["hub"].get("config", {}).get("JupyterHub", {}).get("subdomain_host"):
        hub_config["subdomain_host"] = public_url
    values["hub"]["config"] = {"JupyterHub": hub_config}
    for key, value in (extra or {}).items():
        values.setdefault(key, {}).update(value)
    return values


def install(env: dict[str, str], api: KubeAPI, namespace: str, services_env: dict[str, str],
            work_dir: Path, api_token: str, public_url: str, hub_admin_password: str,
            extra_values: dict | None = None) -> str:
    """Create the namespace, apply manifests and Secrets, ``helm install``; return helm's output."""
    kubectl(env, "create", "namespace", namespace)
    docs = []
    for name in MANIFESTS:
        for doc in yaml.safe_load_all((REPO / "chart-values" / "manifests" / name).read_text()):
            if doc:
                doc["metadata"]["namespace"] = namespace
                docs.append(doc)
    docs += make_secrets(namespace, services_env, hub_admin_password)
    # MinIO is installed from its own chart in a real deployment: its Service here.
    docs.append({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "enertef-minio", "namespace": namespace},
                 "spec": {"ports": [{"name": "http", "port": 9000, "targetPort": 9000}]}})
    kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    overlay = work_dir / "overlay-values.yaml"
    overlay.write_text(yaml.safe_dump(overlay_values(api_token, public_url, extra_values)))
    overlay.chmod(0o600)
    proc = subprocess.run(
        ["helm", "install", RELEASE, str(chart_dir()), "--namespace", namespace,
         "-f", str(REPO / "chart-values" / "jupyterhub.yaml"), "-f", str(overlay)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"helm install failed:\n{proc.stderr[-4000:]}")
    return proc.stdout
