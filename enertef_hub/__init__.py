"""enertef-hub: JupyterHub plugins for a multi-user machine-learning workbench.

The public classes are imported lazily so that ``import enertef_hub`` stays cheap
and does not require KubeSpawner on a single machine (or MLflow anywhere in the hub).
"""

__version__ = "0.1.0"

_LAZY = {
    "EnerTEFAuthenticator": "enertef_hub.authenticator",
    "EnerTEFKubeSpawner": "enertef_hub.kubespawner",
    "EnerTEFLocalSpawner": "enertef_hub.localspawner",
    "Workbench": "enertef_hub.workbench",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'enertef_hub' has no attribute {name!r}")
