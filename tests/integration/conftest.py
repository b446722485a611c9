"""Integration tests: real PostgreSQL, MinIO and MLflow (fixtures in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _services(services):
    return services
