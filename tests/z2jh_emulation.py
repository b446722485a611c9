"""Build a hub's traitlets config from our chart values the way zero-to-jupyterhub 4.4 does.

The chart's hub reads its Helm values (``/usr/local/etc/jupyterhub/secret/values.yaml``)
in ``jupyterhub_config.py``; we have no cluster, so tests rebuild the same config
here from ``chart-values/jupyterhub.yaml`` merged over the chart's default values
(``../shared/z2jh-4.4.0/values.yaml``), in the chart's order:

1. what the chart's config sets itself (``spawner_class = kubespawner.KubeSpawner``,
   the ``c.KubeSpawner`` traits derived from ``singleuser.*``);
2. ``hub.config`` applied onto ``c``;
3. every ``jupyterhub_config.d/*.py`` executed, sorted;
4. every ``hub.extraConfig`` snippet executed, sorted by key.

Only the parts of the chart's config that shape the hub's classes and the user pod
are reproduced (hub networking, the proxy and the database are the test's business).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
#: In CI the repository is cloned elsewhere with a copy of shared/ beside it.
Z2JH_DIR = REPO.parent / "shared" / "z2jh-4.4.0"
VALUES_FILE = REPO / "chart-values" / "jupyterhub.yaml"
CONFIG_D = REPO / "jupyterhub_config.d"
#: The chart replaces "set-by-chartpress" with its own version when it is packaged.
CHART_VERSION = "4.4.0"


def pinned_k8s_version() -> str:
    """The Kubernetes version (x.y.0) of the k3s image scripts/start.sh creates clusters with."""
    match = re.search(r"rancher/k3s:v(\d+\.\d+)\.\d+-k3s\d+", (REPO / "scripts" / "start.sh").read_text())
    assert match, "scripts/start.sh must pin the k3s image (rancher/k3s:vX.Y.Z-k3sN)"
    return f"{match.group(1)}.0"


def deep_merge(base: dict, override: dict) -> dict:
    """Merge Helm-style: maps merge recursively, anything else replaces; null deletes a key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _replace_chartpress_tags(node):
    if isinstance(node, dict):
        return {k: (CHART_VERSION if v == "set-by-chartpress" else _replace_chartpress_tags(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_chartpress_tags(v) for v in node]
    return node


def load_values(values_file: Path = VALUES_FILE) -> dict:
    """The chart's default values with ours merged over them, as Helm renders them."""
    defaults = yaml.safe_load((Z2JH_DIR / "values.yaml").read_text())
    ours = yaml.safe_load(values_file.read_text()) or {}
    return _replace_chartpress_tags(deep_merge(defaults, ours))


def get_config(values: dict, dotted: str, default=None):
    """z2jh's ``get_config``: a dotted path into the values, or ``default``."""
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return copy.deepcopy(node)


def _camel(s: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), s)


# (KubeSpawner trait, singleuser.* key or None for the camelCase of the trait): the
# table of the chart's jupyterhub_config.py.
_SINGLEUSER_TRAITS = (
    ("pod_name_template", None),
    ("start_timeout", None),
    ("image_pull_policy", "image.pullPolicy"),
    ("events_enabled", "events"),
    ("extra_labels", None),
    ("extra_annotations", None),
    ("uid", None),
    ("fs_gid", None),
    ("service_account", "serviceAccountName"),
    ("storage_extra_labels", "storage.extraLabels"),
    ("node_selector", None),
    ("lifecycle_hooks", None),
    ("init_containers", None),
    ("extra_containers", None),
    ("mem_limit", "memory.limit"),
    ("mem_guarantee", "memory.guarantee"),
    ("cpu_limit", "cpu.limit"),
    ("cpu_guarantee", "cpu.guarantee"),
    ("extra_resource_limits", "extraResource.limits"),
    ("extra_resource_guarantees", "extraResource.guarantees"),
    ("environment", "extraEnv"),
    ("profile_list", None),
    ("extra_pod_config", None),
)


def apply_chart_defaults(c, values: dict) -> None:
    """Step 1: what the chart's jupyterhub_config.py sets before ``hub.config``."""
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.JupyterHub.cleanup_servers = False
    c.KubeSpawner.namespace = "enertef"
    c.KubeSpawner.common_labels = {"app": "jupyterhub", "heritage": "jupyterhub",
                                   "chart": f"jupyterhub-{CHART_VERSION}", "release": "enertef"}
    for trait, key in _SINGLEUSER_TRAITS:
        value = get_config(values, "singleuser." + (key or _camel(trait)))
        if value is not None:
            setattr(c.KubeSpawner, trait, value)
    image = get_config(values, "singleuser.image.name")
    if image:
        tag = get_config(values, "singleuser.image.tag")
        c.KubeSpawner.image = f"{image}:{tag}" if tag else image
    c.KubeSpawner.allow_privilege_escalation = get_config(values, "singleuser.allowPrivilegeEscalation")

    storage_type = get_config(values, "singleuser.storage.type")
    if storage_type == "dynamic":
        pvc_name_template = get_config(values, "singleuser.storage.dynamic.pvcNameTemplate")
        volume_name_template = get_config(values, "singleuser.storage.dynamic.volumeNameTemplate")
        if pvc_name_template:
            c.KubeSpawner.pvc_name_template = pvc_name_template
        else:
            # KubeSpawner's own default when the chart passes None.
            pvc_name_template = "claim-{user_server}"
        c.KubeSpawner.storage_pvc_ensure = True
        for trait, key in (("storage_class", "dynamic.storageClass"),
                           ("storage_access_modes", "dynamic.storageAccessModes"),
                           ("storage_capacity", "capacity")):
            value = get_config(values, "singleuser.storage." + key)
            if value is not None:
                setattr(c.KubeSpawner, trait, value)
        c.KubeSpawner.volumes = [{"name": volume_name_template,
                                  "persistentVolumeClaim": {"claimName": pvc_name_template}}]
        c.KubeSpawner.volume_mounts = [{"mountPath": get_config(values, "singleuser.storage.homeMountPath"),
                                        "name": volume_name_template}]
    elif storage_type == "static":
        c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {
            "claimName": get_config(values, "singleuser.storage.static.pvcName")}}]
        c.KubeSpawner.volume_mounts = [{"mountPath": get_config(values, "singleuser.storage.homeMountPath"),
                                        "name": "home",
                                        "subPath": get_config(values, "singleuser.storage.static.subPath")}]

    cmd = get_config(values, "singleuser.cmd")
    if cmd is not None:
        c.Spawner.cmd = cmd
    default_url = get_config(values, "singleuser.defaultUrl")
    if default_url is not None:
        c.Spawner.default_url = default_url

    cloud_metadata = get_config(values, "singleuser.cloudMetadata", {})
    if cloud_metadata.get("blockWithIptables") is True:
        tools = get_config(values, "singleuser.networkTools.image")
        c.KubeSpawner.init_containers = list(c.KubeSpawner.get("init_containers") or []) + [{
            "name": "block-cloud-metadata",
            "image": f"{tools['name']}:{tools['tag']}",
            "command": ["iptables", "-A", "OUTPUT", "-d", cloud_metadata.get("ip", "169.254.169.254"),
                        "-j", "DROP"],
            "securityContext": {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}},
        }]


def apply_hub_config(c, values: dict) -> None:
    """Step 2: ``hub.config`` onto ``c`` (minus the secrets the chart loads separately)."""
    for app, cfg in (get_config(values, "hub.config", {}) or {}).items():
        if app == "JupyterHub":
            for key in ("proxy_auth_token", "cookie_secret", "services"):
                cfg.pop(key, None)
        elif app == "ConfigurableHTTPProxy":
            cfg.pop("auth_token", None)
        elif app == "CryptKeeper":
            cfg.pop("keys", None)
        c[app].update(cfg)


def exec_config_d(c, config_d: Path = CONFIG_D) -> list[str]:
    """Step 3: execute ``jupyterhub_config.d/*.py`` sorted, with ``c`` in scope; return their names."""
    loaded = []
    for path in sorted(config_d.glob("*.py")):
        exec(compile(path.read_text(), str(path), "exec"), {"c": c, "__file__": str(path)})
        loaded.append(path.name)
    return loaded


def exec_extra_config(c, values: dict) -> None:
    """Step 4: the ``hub.extraConfig`` snippets, sorted by key."""
    for _key, snippet in sorted((get_config(values, "hub.extraConfig", {}) or {}).items()):
        exec(compile(snippet, f"hub.extraConfig.{_key}", "exec"), {"c": c})


def build_config(c=None, values: dict | None = None, config_d: Path = CONFIG_D):
    """Apply all four steps onto ``c`` (a new traitlets Config by default) and return it."""
    from traitlets.config import Config

    if c is None:
        c = Config()
    if values is None:
        values = load_values()
    apply_chart_defaults(c, values)
    apply_hub_config(c, values)
    exec_config_d(c, config_d)
    exec_extra_config(c, values)
    return c
