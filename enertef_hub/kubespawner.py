"""EnerTEFKubeSpawner: the workbench on Kubernetes (zero-to-jupyterhub).

The pod itself is KubeSpawner's, shaped by the chart's ``singleuser`` values (image,
home volume, resources, network policy). This class adds provisioning before the
pod is created and the user's environment to the pod; the notebook image seeds
``~/notebook-scripts`` when the container starts, with the same code the local
spawner runs. ``modify_pod_hook`` and the other hooks stay free for operators.
"""

from kubespawner import KubeSpawner
from traitlets import default

from .spawnermixin import EnerTEFSpawnerMixin


class EnerTEFKubeSpawner(EnerTEFSpawnerMixin, KubeSpawner):
    """KubeSpawner that provisions each user's MLflow store and bucket before the pod starts."""

    @default("delete_pvc")
    def _default_delete_pvc(self):
        # A deleted user's home follows the same keep-or-purge policy as their
        # MLflow store and bucket (Workbench.purge_on_delete); an explicit
        # c.KubeSpawner.delete_pvc still wins.
        return self.workbench.purge_on_delete

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


def make_incarnation_claim_name(claim: str, incarnation: int) -> str:
    """``claim-alice`` for the first account named alice, ``claim-alice-i2`` for the second (pure)."""
    return claim if incarnation == 1 else f"{claim}-i{incarnation}"
