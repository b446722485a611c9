"""EnerTEFAuthenticator without a hub: names, approval, login checks, deletion.

The authenticator runs on an in-memory SQLite session (as NativeAuthenticator's
own tests do); the Workbench is replaced by a recorder, so no service is needed.
The HTTP flows are tested for real in tests/e2e.
"""

from __future__ import annotations

import json
import logging

import pytest
from jupyterhub import orm
from nativeauthenticator.orm import UserInfo
from tornado import web

from enertef_hub import handlers
from enertef_hub.api_handlers import acting_user
from enertef_hub.authenticator import EnerTEFAuthenticator
from enertef_hub.errors import ProvisioningError
from enertef_hub.events import EVENT_PREFIX
from enertef_hub.naming import MAX_NAME_LENGTH

PASSWORD = "correct horse battery"


class RecordingWorkbench:
    """Stands in for Workbench: records deprovision calls, optionally fails."""

    def __init__(self, error: Exception | None = None):
        self.calls = []
        self.error = error

    async def deprovision(self, username, purge=None, actor=None):
        self.calls.append((username, actor))
        if self.error:
            raise self.error
        return {"user": username, "revoked": [1], "purged": []}


class Authenticator(EnerTEFAuthenticator):
    fake_workbench = RecordingWorkbench()

    @property
    def workbench(self):
        return self.fake_workbench


@pytest.fixture
def log():
    logger = logging.getLogger("test-enertef-authenticator")
    logger.setLevel(logging.INFO)
    return logger


@pytest.fixture
def auth(log):
    db = orm.new_session_factory("sqlite://")()
    authenticator = Authenticator(db=db, admin_users={"boss"}, log=log)
    authenticator.fake_workbench = RecordingWorkbench()
    yield authenticator
    db.close()


def events(caplog, name):
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if message.startswith(EVENT_PREFIX):
            event = json.loads(message[len(EVENT_PREFIX):])
            if event["event"] == name:
                found.append(event)
    return found


class FakeHubUser:
    def __init__(self, name):
        self.name = name


# --------------------------------------------------------------------- names

@pytest.mark.parametrize(
    "typed, normalized",
    [("alice", "alice"), ("Alice", "alice"), ("ALICE2", "alice2"), ("bOb7x", "bob7x")],
)
def test_valid_names_are_lower_cased_and_accepted(auth, typed, normalized):
    assert auth.username_problem(typed) is None
    assert auth.normalize_username(typed) == normalized
    assert auth.validate_username(normalized)


HOSTILE = {
    "empty": ("", "empty"),
    "space": ("alice smith", "only letters"),
    "leading space": (" alice", "only letters"),
    "quote": ("alice'--", "only letters"),
    "double quote": ('al"ice', "only letters"),
    "sql": ("x'; DROP TABLE users; --", "only letters"),
    "dash": ("alice-bob", "only letters"),
    "underscore": ("alice_bob", "only letters"),
    "dot": ("alice.bob", "only letters"),
    "slash": ("alice/bob", "only letters"),
    "null byte": ("ali\x00ce", "only letters"),
    "cyrillic a": ("\u0430lice", "non-ASCII"),
    "kelvin sign": ("\u212aate", "non-ASCII"),
    "fullwidth": ("\uff41lice", "non-ASCII"),
    "zero width": ("ali\u200bce", "non-ASCII"),
    "digit first": ("1alice", "start with a letter"),
    "too long": ("a" * 200, f"limit is {MAX_NAME_LENGTH}"),
    "reserved": ("postgres", "reserved"),
    "reserved any case": ("Admin", "reserved"),
    "reserved internal": ("pgcatalog", "reserved"),
}


@pytest.mark.parametrize("typed, why", HOSTILE.values(), ids=HOSTILE.keys())
def test_refused_names_say_why(auth, typed, why):
    problem = auth.username_problem(typed)
    assert problem is not None and why in problem
    # JupyterHub's own paths (REST API, start-up) get a string back and a refusal.
    assert not auth.validate_username(auth.normalize_username(typed))


@pytest.mark.parametrize("typed, why", HOSTILE.values(), ids=HOSTILE.keys())
def test_refused_names_create_nothing(auth, typed, why):
    assert auth.create_user(typed, PASSWORD) is None
    assert auth.db.query(UserInfo).count() == 0


def test_validate_username_requires_the_normalized_form(auth):
    # Upper case only ever reaches the hub normalised; a raw "Alice" is not a name.
    assert not auth.validate_username("Alice")


def test_unicode_look_alike_is_not_folded_into_an_existing_name(auth):
    auth.create_user("alice", PASSWORD)
    look_alike = "\u0430lice"  # Cyrillic a
    assert auth.get_user(look_alike) is None
    assert not auth.user_exists(look_alike)


# -------------------------------------------------------------------- access

def test_new_user_waits_for_approval(auth):
    info = auth.create_user("alice", PASSWORD)
    assert info is not None and not info.is_authorized
    assert not auth.check_allowed("alice")


def test_approved_user_is_allowed(auth):
    auth.create_user("alice", PASSWORD)
    UserInfo.change_authorization(auth.db, "alice")
    assert auth.check_allowed("alice")


def test_withdrawn_approval_refuses_again(auth):
    auth.create_user("alice", PASSWORD)
    UserInfo.change_authorization(auth.db, "alice")
    UserInfo.change_authorization(auth.db, "alice")
    assert not auth.check_allowed("alice")


def test_configured_admin_is_allowed_and_pre_approved(auth):
    assert auth.check_allowed("boss")
    info = auth.create_user("Boss", PASSWORD)
    assert info.username == "boss" and info.is_authorized


def test_unknown_user_is_not_allowed(auth):
    assert not auth.check_allowed("nobodyhere")


def test_allowed_users_alone_does_not_bypass_approval(auth):
    # JupyterHub adds every existing user to allowed_users (allow_existing_users);
    # that must not let an unapproved sign-up in.
    auth.create_user("alice", PASSWORD)
    auth.allowed_users.add("alice")
    assert not auth.check_allowed("alice")


async def test_withdrawn_approval_ends_the_session_at_the_next_refresh(auth):
    auth.create_user("alice", PASSWORD)
    UserInfo.change_authorization(auth.db, "alice")
    assert await auth.refresh_user(FakeHubUser("alice")) is True
    UserInfo.change_authorization(auth.db, "alice")
    assert await auth.refresh_user(FakeHubUser("alice")) is False
    # admins, and users an admin created through the API (no sign-up), stay
    assert await auth.refresh_user(FakeHubUser("boss")) is True
    assert await auth.refresh_user(FakeHubUser("apimade")) is True


async def test_login_needs_approval_and_the_right_password(auth):
    auth.create_user("alice", PASSWORD)
    assert await auth.authenticate(None, {"username": "alice", "password": PASSWORD}) is None
    UserInfo.change_authorization(auth.db, "alice")
    assert await auth.authenticate(None, {"username": "ALICE", "password": PASSWORD}) == "alice"
    assert await auth.authenticate(None, {"username": "alice", "password": "wrong one"}) is None


# --------------------------------------------------- why a login is refused (issue 20)


def approve_and_log_in_once(auth, name):
    """An approved user whose hub user exists (approval makes it; so does a first login)."""
    auth.create_user(name, PASSWORD)
    UserInfo.change_authorization(auth.db, name)
    auth.db.add(orm.User(name=name))
    auth.db.commit()


def test_a_sign_up_waiting_for_approval_is_told_so_with_the_right_password(auth):
    auth.create_user("alice", PASSWORD)
    assert "waiting for approval" in auth.refusal_message("alice", PASSWORD)
    assert auth.refusal_message("alice", "wrong one") is None


def test_a_suspended_user_is_told_so_and_whom_to_ask_with_the_right_password(auth):
    approve_and_log_in_once(auth, "alice")
    assert auth.refusal_message("alice", PASSWORD) is None  # approved: nothing refused
    UserInfo.change_authorization(auth.db, "alice")  # the admin withdraws the approval
    message = auth.refusal_message("alice", PASSWORD)
    assert "suspended" in message and "boss" in message and "waiting for approval" not in message
    assert auth.refusal_message("alice", "wrong one") is None


async def test_a_deleted_user_is_told_the_account_is_gone_only_with_its_password(auth):
    approve_and_log_in_once(auth, "alice")
    await auth.delete_user(FakeHubUser("alice"), actor="boss")
    auth.db.delete(orm.User.find(auth.db, "alice"))  # as the hub does after delete_user
    auth.db.commit()
    message = auth.refusal_message("alice", PASSWORD)
    assert "no longer exists" in message and "boss" in message
    # A stranger learns nothing: a wrong password reads as for a name that never existed.
    assert auth.refusal_message("alice", "wrong one") is None
    assert auth.refusal_message("nobody", PASSWORD) is None
    assert auth.refusal_message("alice", "x" * 100) is None
    # Signed up again: the new account speaks for the name, the old password for nothing.
    auth.create_user("alice", PASSWORD + " new")
    assert "waiting for approval" in auth.refusal_message("alice", PASSWORD + " new")
    assert auth.refusal_message("alice", PASSWORD) is None


async def test_a_deleted_password_is_not_kept_when_configured_off(auth):
    auth.keep_deleted_password_hash = False
    approve_and_log_in_once(auth, "alice")
    await auth.delete_user(FakeHubUser("alice"))
    assert auth.refusal_message("alice", PASSWORD) is None


@pytest.mark.parametrize(
    "data",
    [
        {"username": "alice", "password": "x" * 100},  # bcrypt >= 5 raises on > 72 bytes
        {"username": "alice", "password": "\u00e9" * 40},  # 80 bytes in UTF-8
        {"username": "alice"},
        {"password": PASSWORD},
        {"username": "\u0430lice", "password": PASSWORD},
        {"username": "a" * 10_000, "password": PASSWORD},
        {"username": None, "password": PASSWORD},
    ],
)
async def test_odd_login_input_is_refused_without_error(auth, data):
    auth.create_user("alice", PASSWORD)
    UserInfo.change_authorization(auth.db, "alice")
    assert await auth.authenticate(None, data) is None


class FakeHandler:
    """What authenticate() reads of a login request: the client address."""

    def __init__(self, address: str):
        self.request = type("Request", (), {"remote_ip": address})()


async def test_failed_logins_slow_down_one_address_only(auth):
    auth.create_user("alice", PASSWORD)
    UserInfo.change_authorization(auth.db, "alice")
    clock = [1000.0]
    auth.login_throttle.clock = lambda: clock[0]
    stranger, owner = FakeHandler("203.0.113.9"), FakeHandler("198.51.100.7")
    wrong = {"username": "alice", "password": "wrong"}
    for _ in range(auth.login_free_failures + 1):
        assert await auth.authenticate(stranger, wrong) is None
    # the stranger must now wait, even with the right password ...
    assert auth.login_throttle.wait_seconds(auth.throttle_key("alice", stranger)) == auth.login_delay
    assert await auth.authenticate(stranger, {"username": "alice", "password": PASSWORD}) is None
    assert stranger.enertef_login_wait > 0
    # ... while the owner, from another address, logs in at once: no lock-out.
    assert await auth.authenticate(owner, {"username": "alice", "password": PASSWORD}) == "alice"
    # After the wait, the right password works from the stranger's address too.
    clock[0] += auth.login_delay + 0.1
    assert await auth.authenticate(stranger, {"username": "alice", "password": PASSWORD}) == "alice"


async def test_unknown_and_known_names_are_throttled_alike(auth):
    auth.create_user("alice", PASSWORD)
    UserInfo.change_authorization(auth.db, "alice")
    waits = {}
    for name in ("alice", "nosuchuser"):
        handler = FakeHandler("203.0.113.9")
        for _ in range(auth.login_free_failures + 2):
            await auth.authenticate(handler, {"username": name, "password": "wrong"})
        waits[name] = getattr(handler, "enertef_login_wait", 0)
    assert round(waits["alice"]) == round(waits["nosuchuser"]) > 0


def test_native_lockout_is_off(auth):
    auth.add_login_attempt("boss")
    assert not auth.is_blocked("boss")


def test_defaults_are_safer_than_native_authenticators(auth):
    assert auth.minimum_password_length >= 8
    assert auth.check_common_password
    assert auth.login_free_failures >= 1 and auth.login_delay > 0 and auth.login_max_delay >= 60
    assert auth.any_allow_config  # approval is the allow config: no warning at start


def test_admin_account_is_created_from_the_operators_password(log):
    db = orm.new_session_factory("sqlite://")()
    operator_password = "operator-generated-9f3k2"
    admin = Authenticator(db=db, admin_users={"boss"}, admin_password=operator_password, log=log)
    info = admin.get_user("boss")
    assert info is not None and info.is_authorized and info.is_valid_password(operator_password)
    # A restart leaves the existing account (and a changed password) alone.
    admin.change_password("boss", "changed-by-the-admin-7")
    again = Authenticator(db=db, admin_users={"boss"}, admin_password=operator_password, log=log)
    assert again.get_user("boss").is_valid_password("changed-by-the-admin-7")
    db.close()


def test_without_operator_password_no_admin_account_exists(auth):
    assert auth.get_user("boss") is None
    assert auth.is_admin_name("boss") and not auth.is_admin_name("alice")


def test_every_own_setting_is_documented():
    own = set(EnerTEFAuthenticator.class_own_traits(config=True))
    assert own, "EnerTEFAuthenticator should define its own settings"
    for name in own:
        trait = EnerTEFAuthenticator.class_traits()[name]
        assert len(trait.help.split()) >= 8, f"EnerTEFAuthenticator.{name} needs real help"


@pytest.mark.parametrize(
    "password, why",
    [
        ("short", "too short"),
        ("password", "too common"),
        ("x" * 73, "72 bytes"),
        (PASSWORD, None),
    ],
)
def test_password_rules(auth, password, why):
    problem = handlers.password_problem(auth, password)
    if why is None:
        assert problem is None
    else:
        assert why in problem


# ----------------------------------------------------------------- lifecycle

def test_signup_is_logged_as_one_event(auth, caplog):
    caplog.set_level(logging.INFO)
    auth.create_user("alice", PASSWORD)
    (event,) = events(caplog, "signup")
    assert event["user"] == "alice" and event["approved"] is False
    assert PASSWORD not in caplog.text


async def test_delete_revokes_access_then_forgets_the_account(auth, caplog):
    caplog.set_level(logging.INFO)
    auth.create_user("alice", PASSWORD)
    await auth.delete_user(FakeHubUser("alice"), actor="boss")
    assert auth.fake_workbench.calls == [("alice", "boss")]
    assert auth.get_user("alice") is None
    (event,) = events(caplog, "user-deleted")
    assert event["user"] == "alice" and event["actor"] == "boss"
    # The name is free again: a new sign-up is a new account waiting for approval.
    info = auth.create_user("alice", PASSWORD)
    assert info is not None and not info.is_authorized


async def test_a_deletion_through_the_api_names_the_requester(auth, caplog):
    """The admin panel's DELETE /hub/api/users/NAME calls delete_user(user) without an actor."""
    caplog.set_level(logging.INFO)
    auth.create_user("alice", PASSWORD)
    token = acting_user.set("boss")  # what api_handlers.UserAPIHandler.delete does
    try:
        await auth.delete_user(FakeHubUser("alice"))
    finally:
        acting_user.reset(token)
    assert auth.fake_workbench.calls == [("alice", "boss")]
    (event,) = events(caplog, "user-deleted")
    assert event["actor"] == "boss"


async def test_delete_that_cannot_revoke_keeps_the_account(auth):
    auth.create_user("alice", PASSWORD)
    auth.fake_workbench = RecordingWorkbench(ProvisioningError("MinIO is unreachable."))
    with pytest.raises(web.HTTPError) as raised:
        await auth.delete_user(FakeHubUser("alice"))
    assert raised.value.status_code == 503
    assert "MinIO is unreachable" in raised.value.log_message
    assert auth.get_user("alice") is not None


async def test_delete_without_revocation_when_configured_off(auth):
    auth.revoke_on_delete = False
    auth.create_user("alice", PASSWORD)
    await auth.delete_user(FakeHubUser("alice"))
    assert auth.fake_workbench.calls == []
    assert auth.get_user("alice") is None


def test_handlers_replace_the_broken_native_ones(auth):
    routes = dict(auth.get_handlers(app=None))
    assert routes["/login"] is handlers.LoginHandler
    assert routes["/signup"] is handlers.SignUpHandler
    assert routes["/authorize/([^/]*)"] is handlers.ToggleAuthorizationHandler
    assert routes["/discard/([^/]*)"] is handlers.DiscardHandler
    assert routes["/authorize"] is handlers.AuthorizationAreaHandler
    assert "/change-password" in routes


async def test_a_failed_login_costs_the_same_for_names_that_exist_and_names_that_do_not(auth, monkeypatch):
    """A stranger cannot tell which names exist by timing: every failed login runs as many
    bcrypt checks (about 0.2 s each) whatever the name — unknown, approved, waiting,
    suspended or deleted. Before, an unknown name was refused without any."""
    import bcrypt

    approve_and_log_in_once(auth, "costalice")
    auth.create_user("costwaiting", PASSWORD)
    approve_and_log_in_once(auth, "costsuspended")
    UserInfo.change_authorization(auth.db, "costsuspended")
    approve_and_log_in_once(auth, "costgone")
    await auth.delete_user(FakeHubUser("costgone"), actor="boss")
    auth.db.delete(orm.User.find(auth.db, "costgone"))
    auth.db.commit()

    # Names no other test uses: the login throttle remembers failures across the tests.
    checks = []  # NativeAuthenticator checks with hashpw(password, stored hash), we with checkpw
    for check in ("checkpw", "hashpw"):
        real = getattr(bcrypt, check)
        monkeypatch.setattr(bcrypt, check, lambda *args, real=real: checks.append(1) or real(*args))

    async def cost_of_failed_login(name):
        checks.clear()
        data = {"username": name, "password": "not the password 123"}
        assert await auth.authenticate(None, data) is None
        assert auth.refusal_message(name, data["password"]) is None  # what the login page says
        return len(checks)

    costs = {name: await cost_of_failed_login(name) for name in ("costnobody", "costalice", "costwaiting", "costsuspended", "costgone")}
    assert len(set(costs.values())) == 1 and costs["costalice"] >= 1, costs
