"""The group API handlers that sync team access at once (enertef_hub.api_handlers), without a hub.

The handlers themselves run in a real hub in tests/e2e/test_team_membership_at_once.py;
here: their routes, and the per-user sync that reads the groups anew when a change
arrives while it runs.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from jupyterhub import orm
from jupyterhub.apihandlers import groups

from enertef_hub import api_handlers
from enertef_hub.authenticator import EnerTEFAuthenticator

LOG = logging.getLogger("test-api-handlers")


def test_the_group_routes_are_ours_and_jupyterhubs_handlers_underneath():
    db = orm.new_session_factory("sqlite://")()
    routes = dict(EnerTEFAuthenticator(db=db, log=LOG).get_handlers(app=None))
    for route, ours in api_handlers.api_handlers():
        assert routes[route] is ours
    # Every route of JupyterHub's that changes members is covered, by a subclass of its own handler.
    jupyterhub_routes = dict(groups.default_handlers)
    for route, handler in jupyterhub_routes.items():
        changes_members = any(hasattr(handler, m) for m in ("post", "delete")) and not route.endswith("/properties")
        if changes_members:
            assert issubclass(routes[route], handler), route


def test_user_deletion_is_routed_through_ours():
    from jupyterhub.apihandlers import users

    db = orm.new_session_factory("sqlite://")()
    routes = dict(EnerTEFAuthenticator(db=db, log=LOG).get_handlers(app=None))
    assert routes[r"/api/users/([^/]+)"] is api_handlers.UserAPIHandler
    assert issubclass(api_handlers.UserAPIHandler, users.UserAPIHandler)
    assert dict(users.default_handlers)[r"/api/users/([^/]+)"] is users.UserAPIHandler


def test_team_names_are_the_valid_groups():
    assert api_handlers.team_names(["Lab1", "lab1", "my lab", "x" * 40, "physics"], LOG) == ["lab1", "physics"]


class GatedTeamSync:
    """Stands in for TeamSync: records each sync, the first one waits for a gate."""

    def __init__(self):
        self.calls = []
        self.gate = asyncio.Event()

    async def sync_user(self, username, teams, actor=None):
        self.calls.append((username, list(teams), actor))
        if len(self.calls) == 1:
            await self.gate.wait()


class FakeWorkbench:
    def __init__(self):
        self.teams = GatedTeamSync()


def set_groups(db, username, names):
    user = orm.User.find(db, username) or orm.User(name=username)
    db.add(user)
    user.groups = [orm.Group.find(db, n) or orm.Group(name=n) for n in names]
    db.commit()


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite://")()
    yield session
    session.close()


async def test_a_change_during_a_sync_syncs_again_with_the_groups_of_then(db):
    workbench = FakeWorkbench()
    set_groups(db, "alice", ["lab1"])
    first = api_handlers.sync_member_soon(workbench, db, "alice", "boss", LOG)
    await asyncio.sleep(0)  # the first sync is under way (waiting at the gate)
    set_groups(db, "alice", ["lab1", "lab2"])
    second = api_handlers.sync_member_soon(workbench, db, "alice", "boss", LOG)
    assert second is first  # one sync per user at a time ...
    workbench.teams.gate.set()
    await first
    # ... which ran once more, reading the groups anew.
    assert workbench.teams.calls == [("alice", ["lab1"], "boss"), ("alice", ["lab1", "lab2"], "boss")]


async def test_a_user_gone_from_the_hub_is_synced_to_no_team(db):
    workbench = FakeWorkbench()
    workbench.teams.gate.set()
    await api_handlers.sync_member_soon(workbench, db, "ghost", "boss", LOG)
    assert workbench.teams.calls == [("ghost", [], "boss")]
