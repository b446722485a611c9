"""EnerTEFKubeSpawner: the workbench on Kubernetes (zero-to-jupyterhub).

The pod itself is KubeSpawner's, shaped by the chart's ``singleuser`` values (image,
home volume, resources, network policy). This class adds provisioning before the
pod is created and the user's environment to the pod; the notebook image seeds
``~/notebook-scripts`` when the container starts, with the same code the local
spawner runs. ``modify_pod_hook`` and the other hooks stay free for operators.

The user's credentials never appear in the pod's spec: everything provisioning put
in the server's environment, and the server's hub API token, go into a Secret of the
user's own (``<pod name>-env``), which the pod reads through ``secretKeyRef``. The
Secret is replaced at every start (so a rotation's new keys replace the old ones)
and deleted when the server stops and when the user is deleted. The user's pod and
Secret are owned by the release's Secret ``hub`` (:attr:`release_owner_secret`), so
``helm uninstall`` takes them with it (Kubernetes' garbage collector).
"""

from __future__ import annotations

import asyncio
import base64

from kubernetes_asyncio.client import V1OwnerReference
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from traitlets import Unicode, default

from .spawnermixin import EnerTEFSpawnerMixin

#: What JupyterHub puts in a server's environment that is a credential of the user.
HUB_TOKEN_ENV_NAMES = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")

#: Label of every per-user environment Secret (so operators and tests can find them all).
USER_SECRET_LABEL = ("app.kubernetes.io/component", "singleuser-environment")


class EnerTEFKubeSpawner(EnerTEFSpawnerMixin, KubeSpawner):
    """KubeSpawner that provisions each user's MLflow store and bucket before the pod starts."""

    release_owner_secret = Unicode(
        "hub",
        config=True,
        help="""Name of a Secret of the Helm release (in the hub's namespace) that owns every
        user pod and per-user Secret this spawner creates. ``helm uninstall`` deletes that
        Secret, and Kubernetes' garbage collector then deletes the user pods and their
        credential Secrets with it: no user server keeps running, with its keys, after the
        hub is gone. The default, ``hub``, is the Secret the zero-to-jupyterhub chart
        makes (the hub's Role may read it). Empty: no owner (user pods outlive an
        uninstall, as with plain KubeSpawner).""",
    )

    @default("delete_pvc")
    def _default_delete_pvc(self):
        # A deleted user's home follows the same keep-or-purge policy as their
        # MLflow store and bucket (Workbench.purge_on_delete); an explicit
        # c.KubeSpawner.delete_pvc still wins.
        return self.workbench.purge_on_delete

    _enertef_owner: dict | None = None  #: the release's owner reference, looked up at each start

    @property
    def user_secret_name(self) -> str:
        """Name of the Secret holding this server's credentials (beside its pod)."""
        return make_user_secret_name(self.pod_name)

    async def prepare_home(self, result):
        # A re-created account (incarnation 2, 3, ...) must not mount the home
        # volume the deleted account left behind: give it a claim of its own.
        self.pvc_name = make_incarnation_claim_name(
            self._expand_user_properties(self.pvc_name_template), result.resources.incarnation
        )
        # KubeSpawner takes volumes as a list or, as z2jh's jupyterhub_config.py sets
        # them, as a dict keyed by volume name: keep whichever shape was configured.
        if isinstance(self.volumes, dict):
            self.volumes = {key: self._with_claim(volume) for key, volume in self.volumes.items()}
        else:
            self.volumes = [self._with_claim(volume) for volume in self.volumes]
        # The pod KubeSpawner creates next reads its credentials from this Secret, so it
        # is made now, before the pod; a Secret left by an earlier start (older keys) is
        # replaced (the hub's Role may create and delete Secrets, not update them).
        self._enertef_owner = await self._release_owner()
        _env, data = self._split_env()
        manifest = make_user_secret(self.user_secret_name, data, self._user_secret_labels(),
                                    owner=self._enertef_owner)
        await self._delete_user_secret()
        await asyncio.wait_for(self.api.create_namespaced_secret(self.namespace, manifest),
                               self.k8s_api_request_timeout)

    def _with_claim(self, volume: dict) -> dict:
        """The volume, its claim renamed to ``self.pvc_name`` if it is the home claim spelt out.

        A claim written as ``{pvc_name}`` (z2jh's) is left alone: KubeSpawner expands it to
        ``self.pvc_name`` when it builds the pod. A claim spelt out from the template
        (``claim-{username}``) would still name the first incarnation's home, so it is renamed.
        """
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim is None or "{pvc_name}" in claim:
            return volume
        if self._expand_user_properties(claim) != self._expand_user_properties(self.pvc_name_template):
            return volume
        return {**volume, "persistentVolumeClaim": {**volume["persistentVolumeClaim"], "claimName": self.pvc_name}}

    # -- the user's credentials: a Secret of their own ------------------------------

    def _split_env(self) -> tuple[dict, dict[str, str]]:
        """(the pod's env with credentials as Secret references, the Secret's data)."""
        env = super().get_env()
        secret_names = [name for name in (*self._enertef_env, *HUB_TOKEN_ENV_NAMES) if name in env]
        return split_secret_env(env, secret_names, self.user_secret_name)

    def get_env(self):
        return self._split_env()[0]

    def _user_secret_labels(self) -> dict[str, str]:
        labels = self._build_common_labels(self._expand_all(self.extra_labels))
        labels[USER_SECRET_LABEL[0]] = USER_SECRET_LABEL[1]
        return labels

    async def _release_owner(self) -> dict | None:
        """Owner reference to the release's Secret (:attr:`release_owner_secret`), or None."""
        if not self.release_owner_secret:
            return None
        try:
            secret = await asyncio.wait_for(
                self.api.read_namespaced_secret(name=self.release_owner_secret, namespace=self.namespace),
                self.k8s_api_request_timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.log.warning("Secret %s/%s (EnerTEFKubeSpawner.release_owner_secret) does not exist: the pod"
                             " of %s will not be removed by helm uninstall", self.namespace,
                             self.release_owner_secret, self.user.name)
            return None
        return make_owner_reference("Secret", secret.metadata.name, secret.metadata.uid)

    async def _start_reflector(self, *args, **kwargs):
        # KubeSpawner (7.0, 7.1) keeps one pod and one event reflector per hub process,
        # registers it before its first list of the cluster, and makes every later
        # start, stop and poll, of every user, wait for that first list. If the caller
        # that creates it is cancelled during that list, the reflector stays registered
        # and its first list never arrives (its start() handles exceptions, not
        # cancellation): every later spawn then hangs until the hub restarts. The spawn
        # page's progress stream is such a caller: JupyterHub cancels it when the spawn
        # ends, e.g. one that failed on a MinIO outage on a freshly started hub. (A
        # cancelled caller waiting for the first list would also cancel the shared wait
        # for everyone else.) So the reflector is started in a task of its own that no
        # caller's cancellation reaches.
        task = asyncio.ensure_future(super()._start_reflector(*args, **kwargs))
        # Its failure is re-raised to the callers still waiting; retrieve it for the case
        # none is left, so asyncio does not log it a second time as never retrieved.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(task)

    async def get_pod_manifest(self):
        pod = await super().get_pod_manifest()
        if self._enertef_owner:
            owner = V1OwnerReference(**{camel_to_snake(k): v for k, v in self._enertef_owner.items()})
            pod.metadata.owner_references = [*(pod.metadata.owner_references or []), owner]
        return pod

    async def _delete_user_secret(self):
        try:
            await asyncio.wait_for(
                self.api.delete_namespaced_secret(name=self.user_secret_name, namespace=self.namespace),
                self.k8s_api_request_timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def stop(self, now=False):
        await super().stop(now=now)
        # No pod: its credentials need not be kept anywhere (the next start makes them again).
        try:
            await self._delete_user_secret()
        except (ApiException, asyncio.TimeoutError) as exc:
            self.log.warning("Secret %s of %s not deleted at stop (deleted at the next start or"
                             " deletion): %s", self.user_secret_name, self.user.name, getattr(exc, "reason", exc))

    async def delete_forever(self):
        # Normally gone with the stop already; a failed stop may have left it.
        await self._delete_user_secret()
        await super().delete_forever()


def make_incarnation_claim_name(claim: str, incarnation: int) -> str:
    """``claim-alice`` for the first account named alice, ``claim-alice-i2`` for the second (pure)."""
    return claim if incarnation == 1 else f"{claim}-i{incarnation}"


def make_user_secret_name(pod_name: str) -> str:
    """``jupyter-alice-env`` for pod ``jupyter-alice`` (pure)."""
    return f"{pod_name}-env"


def split_secret_env(env: dict, secret_names, secret_name: str) -> tuple[dict, dict[str, str]]:
    """Move ``secret_names`` of ``env`` into a Secret's data (pure).

    Returns the environment with each of those variables turned into a
    ``valueFrom.secretKeyRef`` on Secret ``secret_name`` (the form KubeSpawner's
    ``make_pod`` accepts), and the Secret's data, ``{name: value}``.
    """
    data = {name: str(env[name]) for name in secret_names if isinstance(env.get(name), str)}
    refs = {name: {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": name}}}
            for name in data}
    return {**env, **refs}, data


def camel_to_snake(name: str) -> str:
    """``apiVersion`` -> ``api_version`` (the Kubernetes client's attribute names; pure)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def make_owner_reference(kind: str, name: str, uid: str) -> dict:
    """An ownerReference (v1) to a namespaced object (pure): its deletion deletes the dependent."""
    return {"apiVersion": "v1", "kind": kind, "name": name, "uid": uid}


def make_user_secret(name: str, data: dict[str, str], labels: dict[str, str], owner: dict | None = None) -> dict:
    """The manifest of a user's credential Secret (pure; values base64 as the API stores them)."""
    metadata = {"name": name, "labels": dict(labels)}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }
