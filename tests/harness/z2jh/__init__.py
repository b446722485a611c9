"""The released zero-to-jupyterhub 4.4.0 chart, rendered and run for real: no model of it.

``render()`` runs a real ``helm template`` of ``../shared/z2jh-4.4.0/chart/`` (the chart as
released) with ``chart-values/jupyterhub.yaml`` and returns the Kubernetes objects.

``run_in_hub_pod()`` runs Python the way the hub pod runs it: in the hub image's Python
environment (``.venv-hub``: the image's frozen packages plus enertef_hub, installed as
``jn-tb/hub/Dockerfile`` installs them), in a private mount namespace where the files the
rendered hub Deployment mounts (ConfigMap and Secret ``hub``) and the image's
``jupyterhub_config.d/`` sit at ``/usr/local/etc/jupyterhub``, with the environment
Kubernetes would give the container (the Deployment's env, service variables). The
chart's own ``jupyterhub_config.py`` and ``z2jh.py`` are loaded by JupyterHub's own
config loader there (``hubpod_probe.py`` beside this file). Needs root (``unshare``), as CI runs.

Only the cluster is absent here; tests/e2e/ runs the same chart on a real control plane.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from tests.harness import REPO

#: In CI the repository is cloned elsewhere with a copy of shared/ beside it.
Z2JH_DIR = REPO.parent / "shared" / "z2jh-4.4.0"
CHART_DIR = Z2JH_DIR / "chart"
VALUES_FILE = REPO / "chart-values" / "jupyterhub.yaml"
CONFIG_D = REPO / "jupyterhub_config.d"
HUB_VENV_PYTHON = REPO / ".venv-hub" / "bin" / "python"
PROBE = Path(__file__).resolve().parent / "hubpod_probe.py"
RELEASE, NAMESPACE = "enertef", "enertef"
#: Where the hub image and the chart put the hub's configuration.
HUB_ETC = "/usr/local/etc/jupyterhub"


class HelmError(RuntimeError):
    """``helm template`` refused the chart and values (its message included)."""


def helm_binary() -> str:
    """Path of Helm, built from its Go module once and cached (scripts/build-k8s.sh helm)."""
    proc = subprocess.run([str(REPO / "scripts" / "build-k8s.sh"), "helm"], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"could not build Helm:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def pinned_k8s_version() -> str:
    """The Kubernetes version (x.y.0) of the k3s image scripts/start.sh creates clusters with."""
    match = re.search(r"rancher/k3s:v(\d+\.\d+)\.\d+-k3s\d+", (REPO / "scripts" / "start.sh").read_text())
    assert match, "scripts/start.sh must pin the k3s image (rancher/k3s:vX.Y.Z-k3sN)"
    return f"{match.group(1)}.0"


def render(*overrides: dict, our_values: bool = True, namespace: str = NAMESPACE) -> list[dict]:
    """The objects ``helm template`` makes of the released chart with our values and ``overrides``.

    ``our_values=False`` renders the chart's defaults only (a deployer who swapped nothing
    but the hub image). Helm validates the values against the chart's schema itself.
    """
    args = [helm_binary(), "template", RELEASE, str(CHART_DIR), "--namespace", namespace,
            "--kube-version", pinned_k8s_version()]
    with tempfile.TemporaryDirectory() as tmp:
        if our_values:
            args += ["-f", str(VALUES_FILE)]
        for index, override in enumerate(overrides):
            path = Path(tmp) / f"override-{index}.yaml"
            path.write_text(yaml.safe_dump(override))
            args += ["-f", str(path)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip())
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    """The rendered object of ``kind`` named ``name`` (KeyError if the chart made none)."""
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"the chart rendered no {kind} {name}")


def _object_data(obj: dict) -> dict[str, bytes]:
    if obj["kind"] == "ConfigMap":
        data = {key: value.encode() for key, value in (obj.get("data") or {}).items()}
    else:  # a Secret's data is base64
        data = {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
    data.update({key: value.encode() for key, value in (obj.get("stringData") or {}).items()})
    return data


def hub_container(objects: list[dict]) -> dict:
    """The hub container of the rendered hub Deployment."""
    deployment = find(objects, "Deployment", "hub")
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "hub")


def write_hub_etc(objects: list[dict], dest: Path) -> None:
    """Lay out under ``dest`` what the hub pod has at /usr/local/etc/jupyterhub.

    The files come from the rendered hub Deployment's volume mounts (its ConfigMap and
    Secret volumes, whole or by subPath) and, as the hub image copies them,
    ``jupyterhub_config.d/`` from this repository.
    """
    pod_spec = find(objects, "Deployment", "hub")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    for mount in hub_container(objects)["volumeMounts"]:
        path = mount["mountPath"].rstrip("/")
        if not (path == HUB_ETC or path.startswith(HUB_ETC + "/")):
            continue  # e.g. /srv/jupyterhub, the hub database's volume
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            source = find(objects, "ConfigMap", volume["configMap"]["name"])
        elif "secret" in volume:
            source = find(objects, "Secret", volume["secret"]["secretName"])
        else:
            raise AssertionError(f"unexpected volume under {HUB_ETC}: {volume}")
        files = _object_data(source)
        target = dest / path[len(HUB_ETC):].lstrip("/")
        if mount.get("subPath"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[mount["subPath"]])
        else:
            target.mkdir(parents=True, exist_ok=True)
            for key, content in files.items():
                (target / key).write_bytes(content)
    shutil.copytree(CONFIG_D, dest / "jupyterhub_config.d", ignore=shutil.ignore_patterns("__pycache__"))


def service_environment(objects: list[dict], cluster_ip: str = "127.0.0.1") -> dict[str, str]:
    """The ``<NAME>_SERVICE_HOST``/``_PORT`` variables Kubernetes gives containers for each Service."""
    env = {}
    for obj in objects:
        if obj["kind"] != "Service":
            continue
        prefix = obj["metadata"]["name"].upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = cluster_ip
        env[f"{prefix}_SERVICE_PORT"] = str(obj["spec"]["ports"][0]["port"])
    return env


def container_environment(container: dict, secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """A container's env as Kubernetes resolves it; ``secrets`` maps (Secret, key) to values."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if (ref["name"], ref["key"]) in secrets:
                env[item["name"]] = secrets[(ref["name"], ref["key"])]
            elif not ref.get("optional"):
                # Kubernetes would not start the container (CreateContainerConfigError).
                raise KeyError(f"env {item['name']} needs key {ref['key']} of Secret {ref['name']}")
        elif "fieldRef" in source and source["fieldRef"]["fieldPath"] == "metadata.namespace":
            env[item["name"]] = NAMESPACE
    return env


def example_secrets(**values: str) -> dict[tuple[str, str], str]:
    """Every key of chart-values/manifests/secrets.example.yaml (the Secrets scripts/start.sh
    makes), with ``values`` replacing the example's placeholders where given."""
    secrets = {}
    text = (REPO / "chart-values" / "manifests" / "secrets.example.yaml").read_text()
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("kind") == "Secret":
            for key, value in (doc.get("stringData") or {}).items():
                secrets[(doc["metadata"]["name"], key)] = values.get(key, str(value))
    return secrets


def run_in_hub_pod(objects: list[dict], request: dict, secrets: dict[tuple[str, str], str],
                   timeout: float = 120) -> dict:
    """Run hubpod_probe.py (beside this file) with ``request`` in the hub pod's files and environment; its answer.

    ``secrets`` resolves the Deployment's ``secretKeyRef`` entries that the chart does not
    render itself (ours, made by scripts/start.sh): ``{(secret, key): value}``. Secrets the
    chart rendered (Secret ``hub``) are resolved from the objects.
    """
    if not HUB_VENV_PYTHON.exists():
        raise RuntimeError(f"{HUB_VENV_PYTHON} is missing: run scripts/bootstrap.sh (the hub image's environment)")
    if os.geteuid() != 0:
        raise RuntimeError("running the hub as the pod does needs root (a private mount namespace)")
    resolved = dict(secrets)
    for obj in objects:
        if obj["kind"] == "Secret":
            for key, value in _object_data(obj).items():
                resolved.setdefault((obj["metadata"]["name"], key), value.decode())
    env = {
        "PATH": f"{HUB_VENV_PYTHON.parent}:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        **service_environment(objects),
        **container_environment(hub_container(objects), resolved),
    }
    with tempfile.TemporaryDirectory() as tmp:
        etc = Path(tmp) / "etc"
        write_hub_etc(objects, etc)
        request_file, answer_file = Path(tmp) / "request.json", Path(tmp) / "answer.json"
        request_file.write_text(json.dumps(request))
        script = f'mkdir -p {HUB_ETC} && mount --bind "$0" {HUB_ETC} && exec "$@"'
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(etc),
             str(HUB_VENV_PYTHON), str(PROBE), str(request_file), str(answer_file)],
            env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0 or not answer_file.exists():
            raise RuntimeError(f"hub pod probe failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        answer = json.loads(answer_file.read_text())
    answer["log"] = proc.stdout + proc.stderr
    return answer
