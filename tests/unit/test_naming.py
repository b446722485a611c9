"""Username rules and the name mapping: one table of accepted and refused names."""

import pytest

from enertef_hub.kubespawner import make_incarnation_claim_name
from enertef_hub.naming import (
    MAX_NAME_LENGTH,
    MAX_TEAM_NAME_LENGTH,
    InvalidNameError,
    make_system_username,
    make_team_resources,
    make_user_resources,
    normalize_team_name,
    normalize_username,
    team_of_role,
)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("alice", "alice"),
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("bob42", "bob42"),
        ("x", "x"),
        ("pgriffin", "pgriffin"),
        ("a" * MAX_NAME_LENGTH, "a" * MAX_NAME_LENGTH),
    ],
)
def test_accepted_names_are_lowercased(given, expected):
    assert normalize_username(given) == expected


@pytest.mark.parametrize(
    "given, reason",
    [
        ("", "empty"),
        (None, "empty"),
        ("a" * (MAX_NAME_LENGTH + 1), "characters long"),
        ("x" * 200, "characters long"),
        ("alice smith", "only letters"),
        ("alice.smith", "only letters"),
        ("alice-smith", "only letters"),
        ("alice_smith", "only letters"),
        ("o'brien", "only letters"),
        ('al"ice', "only letters"),
        ("Bob'); DROP TABLE t;--", "only letters"),
        ("bob;drop", "only letters"),
        ("x' OR '1'='1", "only letters"),
        ("alice\x00", "only letters"),
        ("alice\n", "only letters"),
        ("../etc", "only letters"),
        ("1alice", "start with a letter"),
        ("42", "start with a letter"),
        ("аlice", "non-ASCII"),  # Cyrillic а
        ("ａlice", "non-ASCII"),  # full-width a
        ("alİce", "non-ASCII"),
        ("ﬁle", "non-ASCII"),  # ligature, NFKC-folds to "file"
        ("alice\u200b", "non-ASCII"),  # zero-width space
        ("postgres", "reserved"),
        ("Postgres", "reserved"),
        ("root", "reserved"),
        ("public", "reserved"),
        ("minio", "reserved"),
        ("admin", "reserved"),
        ("template1", "reserved"),
        ("nobody", "reserved"),
    ],
)
def test_refused_names_say_why(given, reason):
    with pytest.raises(InvalidNameError) as err:
        normalize_username(given)
    assert reason in str(err.value)


def test_message_never_echoes_invisible_characters_raw():
    with pytest.raises(InvalidNameError) as err:
        normalize_username("al\u202eice")  # right-to-left override
    assert "\u202e" not in str(err.value)


def test_user_resources_first_incarnation_has_plain_names():
    res = make_user_resources("Alice")
    assert (res.username, res.role, res.schema) == ("alice", "u_alice", "u_alice")
    assert (res.minio_user, res.policy, res.bucket) == ("user-alice", "user-alice", "user-alice")


def test_later_incarnations_never_collide_with_other_users():
    second = make_user_resources("alice", 2)
    assert (second.role, second.bucket) == ("u_alice_2", "user-alice-2")
    assert second.role != make_user_resources("alice2").role
    assert second.bucket != make_user_resources("alice2").bucket


@pytest.mark.parametrize("incarnation", [0, -1, "2", 1.5])
def test_incarnation_must_be_positive_integer(incarnation):
    with pytest.raises(ValueError):
        make_user_resources("alice", incarnation)


def test_longest_name_fits_every_mode():
    # A name accepted at sign-up must spawn everywhere: system account (useradd: 32),
    # PostgreSQL identifiers (63 bytes), S3 buckets (63), Kubernetes pod names and
    # label values (63), PVC names (253), a DNS label of the user's origin (63).
    longest = "a" * MAX_NAME_LENGTH
    res = make_user_resources(longest, 999)
    assert len(res.role.encode()) <= 63
    assert 3 <= len(res.bucket) <= 63 and len(res.minio_user) <= 63
    assert len(make_system_username(longest)) <= 32
    assert len(f"jupyter-{longest}") <= 63  # z2jh pod name and hub.jupyter.org/username label
    assert len(make_incarnation_claim_name(f"claim-{longest}", 999)) <= 63
    assert len(longest) <= 63  # <name>.localhost


def test_the_name_limit_is_the_system_account_limit():
    assert MAX_NAME_LENGTH == 32 - len("jupyter-")
    with pytest.raises(InvalidNameError, match="limit is 24"):
        normalize_username("a" * 25)


def test_longest_team_name_fits_postgres_and_s3_limits():
    team = make_team_resources("t" * MAX_TEAM_NAME_LENGTH)
    assert len(team.role.encode()) <= 63 and len(team.bucket) <= 63


def test_team_names_follow_the_same_rules():
    team = make_team_resources("Team1")
    assert (team.role, team.schema, team.bucket, team.group) == ("t_team1", "t_team1", "team-team1", "team-team1")
    for bad in ["team one", "tëam", "public", ""]:
        with pytest.raises(InvalidNameError, match="Team name"):
            normalize_team_name(bad)


def test_system_accounts_are_prefixed():
    assert make_system_username("Alice") == "jupyter-alice"


@pytest.mark.parametrize("role, team", [
    ("t_vision", "vision"), ("t_team1", "team1"),
    ("t_admin", None),  # a reserved name is never a team of ours
    ("t_x_y", None), ("t_Vision", None), ("u_alice", None), ("m_vision_alice", None), ("t_", None),
])
def test_a_team_is_read_back_from_its_role_only_when_naming_would_make_that_role(role, team):
    assert team_of_role(role) == team
    if team is not None:
        assert make_team_resources(team).role == role
