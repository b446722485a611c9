"""The test harness: everything tests and benchmarks share, and no tests.

Import it as ``tests.harness.<module>``. pytest puts the checkout on ``sys.path``
(``tests/`` is a package, so its root is the checkout); benchmarks run from the checkout
as ``python -m benchmarks.<name>``. No test module imports another test module: what
two of them need lives here, and shared fixtures live in ``tests/conftest.py``.

One module per job:

- :mod:`.services`: the running PostgreSQL and MinIO (``scripts/services.sh``), private
  pairs on free ports, a user's server environment in a fresh interpreter;
- :mod:`.names`: fresh account and team names;
- :mod:`.postgres`: connections as the hub's admin acting as a store role, or as a user;
- :mod:`.s3`: S3 clients as a user or as MinIO's admin, MinIO's admin API;
- :mod:`.wait`: waiting for what another process does, with a deadline;
- :mod:`.workbench`: a ``Workbench`` configured for a pair of services, provisioning
  from outside a hub, a store made by an older MLflow release;
- :mod:`.hub`: a real ``jupyterhub`` process (:data:`.hub.HUB_CONFIG`), its REST API,
  its users' servers and lifecycle events;
- :mod:`.forms`: the hub's forms posted from Python as a browser would;
- :mod:`.browser`: headless Chromium and the hub's pages in it;
- :mod:`.notebooks`: a notebook server outside a hub, a notebook run in a kernel;
- :mod:`.hub_templates`: stand-ins for JupyterHub's page templates, to render ours without a hub;
- :mod:`.z2jh`: the released z2jh chart rendered and run as the hub pod runs it;
- :mod:`.kube`: a real Kubernetes control plane with local processes as containers.
"""

from pathlib import Path

#: The checkout this harness belongs to.
REPO = Path(__file__).resolve().parents[2]
