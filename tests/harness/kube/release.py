"""``helm install`` of the released z2jh chart with our values, in a namespace of its own.

What a deployer does with ``scripts/start.sh``, on the test control plane: the two
namespaces of ``chart-values/manifests/namespace.yaml`` (with their labels, Pod
Security included) under names of the test's own (``NS`` for the release, ``NS-data``
for PostgreSQL and MinIO), ``chart-values/manifests/`` (PostgreSQL, network policies)
applied into the data namespace, the Secrets generated as ``scripts/start.sh``
generates them (but holding the credentials of the PostgreSQL and MinIO that run on
this machine), the hub's MinIO user made as the MinIO chart's Job makes it (policy of
``chart-values/minio.yaml``), then ``helm install`` of ``../shared/z2jh-4.4.0/chart``
with ``chart-values/jupyterhub.yaml`` and a small overlay (:func:`overlay_values`) of
what must differ on one machine.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ..s3 import minio_admin
from .api import REPO, KubeAPI

CHART = Path(__file__).resolve().parents[4] / "shared" / "z2jh-4.4.0" / "chart"
RELEASE = "enertef"
MANIFESTS = ("postgresql.yaml", "networkpolicies.yaml")
#: The namespaces of chart-values/manifests/namespace.yaml.
HUB_NAMESPACE, DATA_NAMESPACE = "enertef", "enertef-data"


def data_namespace(namespace: str) -> str:
    """The test's name for enertef-data beside release namespace ``namespace``."""
    return f"{namespace}-data"


def renamed(obj, namespace: str):
    """``obj`` with our two namespaces' names replaced by the test's, wherever they name a namespace.

    That is: ``namespace`` fields, ``kubernetes.io/metadata.name`` selectors, a Namespace's
    own name, and in-cluster addresses (``host.enertef-data:port``). Label values that
    happen to read "enertef" (the release's name) are left alone.
    """
    names = {HUB_NAMESPACE: namespace, DATA_NAMESPACE: data_namespace(namespace)}

    def walk(value, key=None, kind=None):
        if isinstance(value, dict):
            kind = value.get("kind", kind)
            out = {}
            for k, v in value.items():
                if k == "metadata" and kind == "Namespace" and isinstance(v, dict):
                    out[k] = {**walk(v, k, None), "name": names.get(v.get("name"), v.get("name"))}
                else:
                    out[k] = walk(v, k, kind)
            return out
        if isinstance(value, list):
            return [walk(v, key, kind) for v in value]
        if isinstance(value, str):
            if key in ("namespace", "kubernetes.io/metadata.name"):
                return names.get(value, value)
            return value.replace(f".{DATA_NAMESPACE}:", f".{names[DATA_NAMESPACE]}:")
        return value

    return walk(obj)


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


def hub_minio_user(namespace: str) -> str:
    """The hub's MinIO user of this test (MinIO here is shared: a name per namespace)."""
    minio_values = yaml.safe_load((REPO / "chart-values" / "minio.yaml").read_text())
    return f"{minio_values['users'][0]['accessKey']}-{namespace}"


def make_hub_minio_user(namespace: str, services_env: dict[str, str]) -> str:
    """Create the hub's MinIO user with the policy of chart-values/minio.yaml; its secret key.

    What the MinIO chart's post-install Job does with the root keys (``users`` and
    ``policies`` of the values file), done here with the root keys of this machine's MinIO.
    """
    minio_values = yaml.safe_load((REPO / "chart-values" / "minio.yaml").read_text())
    (user,) = minio_values["users"]
    (policy,) = [p for p in minio_values["policies"] if p["name"] == user["policy"]]
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": st.get("effect", "Allow"), "Action": st["actions"],
         **({"Resource": st["resources"]} if st.get("resources") else {})} for st in policy["statements"]]}
    admin = minio_admin(services_env)
    name, secret_key = hub_minio_user(namespace), secrets.token_urlsafe(30)
    admin.policy_add(name, policy=document)
    admin.user_add(name, secret_key)
    admin.policy_set(name, user=name)
    return secret_key


def remove_hub_minio_user(namespace: str, services_env: dict[str, str]) -> None:
    admin = minio_admin(services_env)
    for remove in (lambda n: admin.user_remove(n), lambda n: admin.policy_remove(n)):
        try:
            remove(hub_minio_user(namespace))
        except Exception:  # noqa: BLE001 - clean-up of a test user: best effort
            pass


def make_secrets(namespace: str, services_env: dict[str, str], hub_admin_password: str,
                 hub_minio_secret: str, superuser_password: str) -> list[dict]:
    """The Secrets of ``scripts/start.sh`` (shape: chart-values/manifests/secrets.example.yaml).

    PostgreSQL and MinIO are this machine's (``scripts/services.sh``), so their
    passwords are theirs; the hub reaches them by the in-cluster names of the real
    deployment (``enertef-postgresql.NS-data:5432``, ``enertef-minio.NS-data:9000``),
    which :func:`external_services` makes resolve here. The superuser's and root's
    passwords go to the data namespace only; the hub's Secret holds the admin role's
    URL and the hub's own MinIO user.
    """
    data = data_namespace(namespace)
    admin = urlsplit(services_env["ENERTEF_POSTGRES_ADMIN_URL"])
    admin_url = admin._replace(netloc=f"{admin.username}:{admin.password}@enertef-postgresql.{data}:5432").geturl()
    return [
        secret_manifest("enertef-postgresql", data, {
            "POSTGRES_PASSWORD": superuser_password, "ENERTEF_ADMIN_PASSWORD": admin.password}),
        secret_manifest("enertef-minio", data, {
            "rootUser": services_env["ENERTEF_MINIO_ACCESS_KEY"], "rootPassword": services_env["ENERTEF_MINIO_SECRET_KEY"]}),
        secret_manifest("enertef-minio-hub", data, {"key": hub_minio_secret}),
        secret_manifest("enertef-pgadmin", data, {"password": secrets.token_urlsafe(18)}),
        secret_manifest("enertef-hub", namespace, {
            "ENERTEF_POSTGRES_ADMIN_URL": admin_url,
            "ENERTEF_MINIO_ACCESS_KEY": hub_minio_user(namespace),
            "ENERTEF_MINIO_SECRET_KEY": hub_minio_secret,
            "ENERTEF_SECRET_KEY": services_env["ENERTEF_SECRET_KEY"],
            "ENERTEF_HUB_ADMIN_PASSWORD": hub_admin_password}),
    ]


def external_services(services_env: dict[str, str]) -> dict[tuple[str, int], tuple[str, int]]:
    """Service name and port -> where that part runs on this machine (for the kube-proxy stand-in)."""
    pg = urlsplit(services_env["ENERTEF_POSTGRES_ADMIN_URL"])
    minio = urlsplit(services_env["ENERTEF_MINIO_ENDPOINT"])
    return {("enertef-postgresql", 5432): (pg.hostname, pg.port or 5432),
            ("enertef-minio", 9000): (minio.hostname, minio.port or 80)}


def overlay_values(api_token: str, public_url: str, extra: dict | None = None, namespace: str = HUB_NAMESPACE) -> dict:
    """What differs from chart-values/jupyterhub.yaml on this machine.

    - the namespaces' names (the test's own): MinIO's in-cluster address and the
      user pods' egress rules name the data namespace;
    - a test API token: a JupyterHub service of the chart (``hub.services``) with a
      role (``hub.loadRoles``), so the test can ask the hub REST API about users;
    - if the values give users origins of their own (``subdomain_host``), the
      hub's public URL here (the port of the test's port-forward);
    - the spawn page without JupyterHub's 10 s wait (``slow_spawn_timeout``);
    - no team-sync service: it makes this hub's groups the truth for the whole
      account registry, and here PostgreSQL is shared with other tests' hubs (one
      hub per database in a real deployment).
    """
    chart_values = yaml.safe_load((REPO / "chart-values" / "jupyterhub.yaml").read_text())
    values = {
        "singleuser": {"networkPolicy": {"egress": renamed(chart_values["singleuser"]["networkPolicy"]["egress"],
                                                           namespace)}},
        "hub": {
            "extraEnv": {"ENERTEF_TEAM_SYNC_INTERVAL": "0",
                         "ENERTEF_MINIO_ENDPOINT": renamed(chart_values["hub"]["extraEnv"]["ENERTEF_MINIO_ENDPOINT"],
                                                           namespace)},
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
    if chart_values["hub"].get("config", {}).get("JupyterHub", {}).get("subdomain_host"):
        hub_config["subdomain_host"] = public_url
    values["hub"]["config"] = {"JupyterHub": hub_config}
    for key, value in (extra or {}).items():
        values.setdefault(key, {}).update(value)
    return values


def install(env: dict[str, str], api: KubeAPI, namespace: str, services_env: dict[str, str],
            work_dir: Path, api_token: str, public_url: str, hub_admin_password: str,
            extra_values: dict | None = None, superuser_password: str | None = None) -> str:
    """Create the namespaces, apply manifests and Secrets, ``helm install``; return helm's output."""
    namespaces = [renamed(doc, namespace) for doc in
                  yaml.safe_load_all((REPO / "chart-values" / "manifests" / "namespace.yaml").read_text()) if doc]
    kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump_all(namespaces))
    docs = []
    for name in MANIFESTS:
        for doc in yaml.safe_load_all((REPO / "chart-values" / "manifests" / name).read_text()):
            if doc:
                docs.append(renamed(doc, namespace))
    docs += make_secrets(namespace, services_env, hub_admin_password, make_hub_minio_user(namespace, services_env),
                         superuser_password or secrets.token_urlsafe(24))
    # MinIO is installed from its own chart in a real deployment: its Service here.
    docs.append({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "enertef-minio", "namespace": data_namespace(namespace)},
                 "spec": {"ports": [{"name": "http", "port": 9000, "targetPort": 9000}]}})
    kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    return helm_install(env, namespace, work_dir, api_token, public_url, extra_values)


def helm_install(env: dict[str, str], namespace: str, work_dir: Path, api_token: str, public_url: str,
                 extra_values: dict | None = None) -> str:
    """``helm install`` of the release into ``namespace`` (made by :func:`install`); helm's output."""
    overlay = work_dir / "overlay-values.yaml"
    overlay.write_text(yaml.safe_dump(overlay_values(api_token, public_url, extra_values, namespace)))
    overlay.chmod(0o600)
    proc = subprocess.run(
        ["helm", "install", RELEASE, str(chart_dir()), "--namespace", namespace,
         "-f", str(REPO / "chart-values" / "jupyterhub.yaml"), "-f", str(overlay)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"helm install failed:\n{proc.stderr[-4000:]}")
    return proc.stdout
