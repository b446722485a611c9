"""Security regression tests: each attack from issue 11, tried with the real services.

Every test here plays a hostile user who holds what a user can hold (their own
credentials, a team role while a member, their server's token, their processes)
and checks that the revocation closes what they made. The fixtures are the
integration tier's (tests/conftest.py: real PostgreSQL and MinIO, a Workbench from
the environment); connecting as a user is tests.harness.postgres.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _services(services):
    return services
