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
