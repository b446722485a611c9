"""Fixtures shared by the tiers; what they build is in tests/harness (plain modules, no fixtures).

``services`` (session)
    The ``ENERTEF_*`` environment of the running PostgreSQL and MinIO, also set in
    ``os.environ``. Started with ``scripts/services.sh start`` (idempotent) when the
    variables are not set already; if they cannot start, the test fails: nothing here
    ever skips for lack of a service. ``services_env`` is the same, checked complete.
``workbench`` (session), ``admin_conn`` (session)
    A Workbench configured from the environment, as the hub's would be; a synchronous
    admin connection to the MLflow database, for assertions.
``old_mlflow_python`` (session)
    Python of a virtual environment with an older MLflow release (tests.harness.workbench).
``hub`` (session)
    A real JupyterHub (tests.harness.hub.running_hub): ``.url``, ``.api(method, path)``,
    ``.token``, ``.admin_name``, ``.admin_password``, ``.log_path``, ``.dir``. When a test
    using it fails, the end of the hub log is added to the report.
``browser`` (session), ``page``, ``new_page``
    Headless Chromium through Playwright's sync API. ``page`` is a fresh browser context
    (own cookies); ``new_page()`` makes more, e.g. one for a user and one for the admin.
"""

from __future__ import annotations

import os

import pytest
import pytest_asyncio

from tests.harness.services import start_services

SERVICE_VARS = (
    "ENERTEF_POSTGRES_ADMIN_URL",
    "ENERTEF_MINIO_ENDPOINT",
    "ENERTEF_MINIO_ACCESS_KEY",
    "ENERTEF_MINIO_SECRET_KEY",
    "ENERTEF_SECRET_KEY",
)


# ------------------------------------------------------------------ services


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    """The ``ENERTEF_*`` environment of running PostgreSQL and MinIO, also set in ``os.environ``."""
    if not os.environ.get("ENERTEF_POSTGRES_ADMIN_URL"):
        os.environ.update(start_services())
    return {k: v for k, v in os.environ.items() if k.startswith("ENERTEF_")}


@pytest.fixture(scope="session")
def services_env(services) -> dict[str, str]:
    """``services``, with every setting a hub needs (raises if one is missing)."""
    missing = [name for name in SERVICE_VARS if not services.get(name)]
    if missing:
        raise RuntimeError(f"services environment lacks {', '.join(missing)}")
    return services


@pytest_asyncio.fixture(scope="session")
async def workbench(services):
    """A Workbench configured from the environment, as the hub's would be."""
    from enertef_hub.workbench import Workbench

    Workbench.clear_instance()
    wb = Workbench.instance()
    yield wb
    await wb.close()
    Workbench.clear_instance()


@pytest.fixture(scope="session")
def admin_conn(services):
    """A synchronous admin connection to the MLflow database, for assertions."""
    import psycopg

    with psycopg.connect(services["ENERTEF_POSTGRES_ADMIN_URL"], autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def old_mlflow_python() -> str:
    """Python of a virtual environment with the older MLflow (made once, then cached)."""
    from tests.harness.workbench import old_mlflow_python

    return old_mlflow_python()


# ---------------------------------------------------------------------- hub


@pytest.fixture(scope="session")
def hub(services_env, tmp_path_factory):
    """A real JupyterHub running tests/harness/hub_config.py (see tests.harness.hub)."""
    from tests.harness.hub import running_hub

    with running_hub(services_env, tmp_path_factory.mktemp("hub")) as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    hub = getattr(item, "funcargs", {}).get("hub")
    if report.failed and hasattr(hub, "log_tail"):
        report.sections.append(("jupyterhub log (last 200 lines)", hub.log_tail()))


# ------------------------------------------------------------------ browser


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's) driven by Playwright's sync API."""
    from tests.harness.browser import launch_chromium

    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def new_page(browser):
    """Factory of pages, each in its own browser context (own cookies)."""
    contexts = []

    def make():
        context = browser.new_context()
        context.set_default_timeout(30_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    """One fresh browser page (own context)."""
    return new_page()
