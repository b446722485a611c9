"""Run inside the hub pod's files and environment by tests.harness.z2jh (a script, not a test module).

    python hubpod_probe.py REQUEST.json ANSWER.json

Loads /usr/local/etc/jupyterhub/jupyterhub_config.py, the chart's own file, with
JupyterHub's own config loader, exactly as the hub pod's ``jupyterhub`` does, then
answers the request:

- ``{"mode": "config"}``: the resulting config, section by section;
- ``{"mode": "pod", "user": NAME, "user_env": {...}, "incarnation": N|null}``: the pod and
  volume claim our spawner class builds for that user from that config, with
  ``user_env`` as the provisioning's result, and the Secrets it created on the way.
  KubeSpawner's cluster client is the only thing replaced (there is no cluster in
  this tier): :class:`FakeSecretsApi` holds Secrets in memory and knows the chart's
  Secret ``hub`` (uid ``HUB_SECRET_UID``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from unittest import mock


def load_hub_config():
    from jupyterhub.app import JupyterHub

    app = JupyterHub()
    app.load_config_file("/usr/local/etc/jupyterhub/jupyterhub_config.py")
    return app.config


def plain(config) -> dict:
    return json.loads(json.dumps(config, default=repr))


def _user(name: str):
    user = mock.Mock()
    user.name = name
    user.escaped_name = name
    user.id = 7
    user.url = f"/user/{name}/"
    user.groups = []
    return user


HUB_SECRET_UID = "00000000-0000-4000-8000-00000000b0b0"


class FakeSecretsApi:
    """The Secret calls of KubeSpawner's cluster client, on an in-memory namespace."""

    def __init__(self):
        from kubernetes_asyncio.client import V1ObjectMeta, V1Secret

        self.secrets = {"hub": V1Secret(metadata=V1ObjectMeta(name="hub", uid=HUB_SECRET_UID))}
        self.created = []

    async def read_namespaced_secret(self, name, namespace):
        from kubernetes_asyncio.client.rest import ApiException

        if name not in self.secrets:
            raise ApiException(status=404)
        return self.secrets[name]

    async def create_namespaced_secret(self, namespace, body):
        from kubernetes_asyncio.client.rest import ApiException

        if body["metadata"]["name"] in self.secrets:
            raise ApiException(status=409)
        self.secrets[body["metadata"]["name"]] = body
        self.created.append(body)

    async def delete_namespaced_secret(self, name, namespace):
        from kubernetes_asyncio.client.rest import ApiException

        if self.secrets.pop(name, None) is None:
            raise ApiException(status=404)


async def build_pod(config, request: dict) -> dict:
    from kubernetes_asyncio.client import ApiClient

    from enertef_hub.kubespawner import EnerTEFKubeSpawner
    from enertef_hub.naming import make_user_resources
    from enertef_hub.workbench import ProvisionResult

    with mock.patch("kubespawner.spawner.load_config"), mock.patch("kubespawner.spawner.shared_client"):
        spawner = EnerTEFKubeSpawner(config=config, _mock=True, user=_user(request["user"]))
        spawner.api_token = "hub-api-token-of-" + request["user"]
        spawner.api = FakeSecretsApi()
        spawner._enertef_env = dict(request["user_env"])
        resources = make_user_resources(request["user"], request.get("incarnation") or 1)
        await spawner.prepare_home(ProvisionResult(resources, dict(request["user_env"]), True, 0.0))
        pod = await spawner.get_pod_manifest()
        pvc = spawner.get_pvc_manifest()
    async with ApiClient() as api:
        return {"pod": api.sanitize_for_serialization(pod), "pvc": api.sanitize_for_serialization(pvc),
                "secrets": spawner.api.created, "spawner_class": type(spawner).__name__}


def main(request_file: str, answer_file: str) -> None:
    with open(request_file) as f:
        request = json.load(f)
    config = load_hub_config()
    answer = {"config": plain(config)}
    if request["mode"] == "pod":
        answer.update(asyncio.run(build_pod(config, request)))
    with open(answer_file, "w") as f:
        json.dump(answer, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
