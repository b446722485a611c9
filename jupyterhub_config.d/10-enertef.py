"""Wire enertef_hub into a zero-to-jupyterhub (z2jh) hub.

z2jh's own jupyterhub_config.py sets ``spawner_class = "kubespawner.KubeSpawner"``,
applies the chart's ``hub.config``, then executes every file of
/usr/local/etc/jupyterhub/jupyterhub_config.d/ (sorted, in its own namespace, so ``c``
is the hub's config), then ``hub.extraConfig``. The hub image copies this directory
there.

This snippet only replaces the chart's *stock* classes by ours: a deployer who names
classes in ``hub.config`` (as chart-values/jupyterhub.yaml does) or ``hub.extraConfig``
keeps their choice. Outside z2jh (the single-machine mode, a hand-written
jupyterhub_config.py) no spawner is preset, and this file changes nothing.
"""

# What z2jh's config (or the chart's default values) sets when the deployer chose nothing.
_Z2JH_STOCK_SPAWNERS = {"kubespawner.KubeSpawner", "kubespawner", "kubernetes"}
# The chart's default authenticator lets anyone in with any password: never keep it
# on a hub whose users get databases and buckets.
_Z2JH_STOCK_AUTHENTICATORS = {"dummy", "dummyauthenticator.DummyAuthenticator"}

# dict.get, not attribute access: reading a missing key of a traitlets Config section
# would create an empty placeholder value.
_spawner = c.JupyterHub.get("spawner_class")  # noqa: F821 (c is the config being loaded)
_authenticator = c.JupyterHub.get("authenticator_class")  # noqa: F821

if _spawner in _Z2JH_STOCK_SPAWNERS:
    # Our class subclasses KubeSpawner, so every c.KubeSpawner setting z2jh derived from
    # the singleuser.* values still applies to it.
    c.JupyterHub.spawner_class = "enertef-kube"  # noqa: F821
    print("enertef: spawner_class kubespawner.KubeSpawner -> enertef-kube")
    if _authenticator is None or _authenticator in _Z2JH_STOCK_AUTHENTICATORS:
        c.JupyterHub.authenticator_class = "enertef"  # noqa: F821
        print(f"enertef: authenticator_class {_authenticator} -> enertef")

del _spawner, _authenticator
