"""The one list of every account and team that the audit, usage, the accounts page and store upgrades read."""

from __future__ import annotations

from enertef_hub.holdings import build_holdings
from enertef_hub.naming import make_team_resources, make_user_resources


def _row(username, incarnation, state):
    return {"username": username, "incarnation": incarnation, "state": state, "generation": 1}


def test_every_incarnation_with_its_own_names_and_state():
    holdings = build_holdings([_row("bob", 1, "active"), _row("alice", 2, "active"), _row("alice", 1, "purged"),
                               _row("carol", 1, "deleted")], {})
    assert [(u.username, u.incarnation) for u in holdings.users] == [("alice", 1), ("alice", 2), ("bob", 1),
                                                                      ("carol", 1)]
    assert holdings.users[1].resources == make_user_resources("alice", 2)  # never incarnation 1's names
    # A purged incarnation holds nothing; a deleted one keeps its data until a purge.
    assert [(u.username, u.incarnation) for u in holdings.users_with_data()] == [("alice", 2), ("bob", 1),
                                                                                  ("carol", 1)]
    assert [u.username for u in holdings.active_users()] == ["alice", "bob"]


def test_a_team_whose_store_outlived_its_members_is_still_held():
    holdings = build_holdings([], {"vision": {"bob", "alice"}}, team_roles=["t_vision", "t_audio"])
    assert [(t.team, t.members) for t in holdings.teams] == [("audio", ()), ("vision", ("alice", "bob"))]
    assert holdings.teams[0].resources == make_team_resources("audio")
    assert [t.team for t in holdings.teams_with_members()] == ["vision"]


def test_roles_that_only_look_like_team_roles_are_no_teams():
    # A role an admin made by hand, or a name no team can have, is not read as a team's.
    holdings = build_holdings([], {}, team_roles=["t_", "t_Vision", "t_a-b", "tx_vision", "t_vision"])
    assert [t.team for t in holdings.teams] == ["vision"]
