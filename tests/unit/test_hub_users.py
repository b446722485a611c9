"""Approved accounts get their JupyterHub user before their first login (issue 20).

JupyterHub makes a user at the first login only, and its admin panel's group page
accepts only names it knows. ``ensure_hub_users_of_approved`` runs at hub start on
the hub's own database (here an in-memory one with JupyterHub's default roles);
approval itself is tested in tests/e2e/test_team_membership_at_once.py.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from jupyterhub import orm, roles
from nativeauthenticator.orm import UserInfo

from enertef_hub.approval import ensure_hub_users_of_approved
from enertef_hub.authenticator import EnerTEFAuthenticator

PASSWORD = "correct horse battery"


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite://")()
    for role in roles.get_default_roles():
        roles.create_role(session, role)
    yield session
    session.close()


@pytest.fixture
def auth(db):
    return EnerTEFAuthenticator(db=db, admin_users={"boss"}, log=logging.getLogger("test-hub-users"))


def hub_users(db) -> set[str]:
    return {name for (name,) in db.query(orm.User.name)}


async def test_approved_accounts_without_a_hub_user_get_one_at_hub_start(db, auth):
    auth.create_user("alice", PASSWORD)  # approved before approval made hub users
    auth.create_user("bob", PASSWORD)  # waiting for approval
    auth.create_user("carol", PASSWORD)  # approved, then suspended (approval withdrawn)
    auth.create_user("dave", PASSWORD)  # approved and logged in: has a hub user already
    auth.create_user("erin", PASSWORD)  # approved, then deleted in the admin panel
    for name in ("alice", "carol", "dave", "erin"):
        UserInfo.change_authorization(db, name)
    UserInfo.change_authorization(db, "carol")
    dave = orm.User(name="dave")
    db.add(dave)
    db.commit()
    dave_id = dave.id
    erin = SimpleNamespace(name="erin")
    auth.revoke_on_delete = False  # no services here; deletion removes the sign-up as in the hub
    await auth.delete_user(erin)

    assert ensure_hub_users_of_approved(db, auth, auth.log) == ["alice"]
    assert hub_users(db) == {"alice", "dave"}
    assert orm.User.find(db, "dave").id == dave_id  # left as it was
    # A hub user as the admin panel's "Add users" makes it: the default role "user".
    assert [role.name for role in orm.User.find(db, "alice").roles] == ["user"]
    # Run again (every hub start): nothing more, and the deleted user stays deleted.
    assert ensure_hub_users_of_approved(db, auth, auth.log) == []
    assert "erin" not in hub_users(db)


def test_blocked_names_get_no_hub_user(db, auth):
    auth.create_user("mallory", PASSWORD)
    UserInfo.change_authorization(db, "mallory")
    auth.blocked_users = {"mallory"}
    assert ensure_hub_users_of_approved(db, auth, auth.log) == []
    assert hub_users(db) == set()
