"""Bad input at the sign-up and login forms of a real hub.

Every hostile name or malformed post must be refused with a 4xx and a message a
person can act on — never a 500 — and must create nothing: no hub user, no
sign-up record, no PostgreSQL role or schema, no MinIO user or bucket.

Names carry a per-run marker, so "nothing created" is checked by looking for the
marker in PostgreSQL and MinIO, which other tests (and engineers) share.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import sqlite3
import time

import psycopg
import pytest
import requests

from tests.harness.forms import approve, form_session, login_session, new_session, signup, SourceAddressAdapter
from tests.harness.hub import wait_prepared
from tests.harness.s3 import admin_s3, minio_admin

pytestmark = pytest.mark.jupyterhub_login

MARK = "zq" + secrets.token_hex(3)
PASSWORD = "Tr0ub4dor&3-but-longer"

HOSTILE_NAMES = {
    "empty": ("", "empty"),
    "spaces only": ("   ", "only letters"),
    "inner space": (f"{MARK} x", "only letters"),
    "single quote": (f"{MARK}'--", "only letters"),
    "double quote": (f'{MARK}"', "only letters"),
    "sql": (f"{MARK}';DROP ROLE x--", "only letters"),
    "html": (f"<i>{MARK}</i>", "only letters"),
    "null byte": (f"{MARK}\x00x", "only letters"),
    "cyrillic a": (f"\u0430{MARK}", "non-ASCII"),
    "fullwidth": (f"{MARK}\uff41", "non-ASCII"),
    "zero width": (f"{MARK}\u200b", "non-ASCII"),
    "right-to-left": (f"{MARK}\u202e", "non-ASCII"),
    "200 characters": (MARK + "a" * (200 - len(MARK)), "limit is"),
    "dash": (f"{MARK}-x", "only letters"),
    "dot dot": ("..", "only letters"),
    "slash": (f"{MARK}/x", "only letters"),
    "digit first": (f"1{MARK}", "start with a letter"),
    "reserved": ("postgres", "reserved"),
    "reserved upper": ("MinioAdmin", "reserved"),
}


# ------------------------------------------------------------------ what exists


def hub_users(hub) -> set[str]:
    response = hub.api("GET", "/users", params={"limit": 1000})
    response.raise_for_status()
    return {user["name"] for user in response.json()}


def signup_records(hub) -> list[str]:
    with sqlite3.connect(hub.dir / "jupyterhub.sqlite") as db:
        return [row[0] for row in db.execute("SELECT username FROM users_info")]


def marked_roles() -> list[str]:
    with psycopg.connect(os.environ["ENERTEF_POSTGRES_ADMIN_URL"]) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE strpos(rolname, %s) > 0"
            " UNION ALL SELECT nspname FROM pg_namespace WHERE strpos(nspname, %s) > 0",
            (MARK, MARK),
        ).fetchall()
    return [row[0] for row in rows]


def marked_minio_things() -> list[str]:
    users = minio_admin().user_list()
    buckets = [b["Name"] for b in admin_s3().list_buckets().get("Buckets", [])]
    return [name for name in [*users_of(users), *buckets] if MARK in name]


def users_of(listing) -> list[str]:
    # MinioAdmin.user_list returns JSON text of {access key: info}.
    data = json.loads(listing) if isinstance(listing, (str, bytes)) else listing
    return list(data or {})


@pytest.fixture
def nothing_created(hub):
    """Assert, after the test, that no account or resource appeared."""
    users_before, records_before = hub_users(hub), signup_records(hub)
    # Earlier tests' approved users of this run have resources (an approval prepares them).
    roles_before, minio_before = marked_roles(), marked_minio_things()
    yield
    assert hub_users(hub) == users_before
    assert signup_records(hub) == records_before
    assert marked_roles() == roles_before
    assert marked_minio_things() == minio_before


def approve_and_wait(hub, username: str):
    """Approve, then wait until the preparation the approval started is over, so that it
    cannot make resources appear during a later test."""
    approve(hub, username)
    wait_prepared(hub, username)


def assert_refused(response: requests.Response, status: int, text: str | None = None):
    assert response.status_code == status, (response.status_code, response.text[-1500:])
    if text is not None:
        assert text in html.unescape(response.text), response.text[-1500:]


# --------------------------------------------------------------------- sign-up


@pytest.mark.parametrize("name, why", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_username_is_refused_with_the_reason(hub, nothing_created, name, why):
    response = signup(hub, name, PASSWORD)
    assert_refused(response, 400, why)
    assert "alert-danger" in response.text
    assert f"<i>{MARK}" not in response.text  # echoed input is escaped


def test_admin_name_cannot_be_signed_up_in_any_case(hub, nothing_created):
    # The admin's account is the operator's (EnerTEFAuthenticator.admin_password):
    # a sign-up under an admin name is refused, whether or not the account exists yet.
    assert_refused(signup(hub, hub.admin_name.upper(), PASSWORD), 403, "reserved for an administrator")


def test_name_taken_in_any_case_is_refused(hub):
    name = MARK + "taken"
    assert signup(hub, name, PASSWORD).status_code == 200
    assert_refused(signup(hub, name.upper(), PASSWORD), 409, "already taken")
    assert admin_post(hub, f"/hub/discard/{name}").status_code == 302


@pytest.mark.parametrize(
    "password, confirmation, why",
    [
        ("short", "short", "too short"),
        ("password123", "password123", "too common"),
        ("x" * 100, "x" * 100, "72 bytes"),  # bcrypt's limit: crashed NativeAuthenticator
        (PASSWORD, PASSWORD + "x", "confirmation differ"),
    ],
    ids=["short", "common", "too long", "mismatch"],
)
def test_bad_password_is_refused_with_the_reason(hub, nothing_created, password, confirmation, why):
    response = signup(hub, MARK + "pw", password, confirmation)
    assert_refused(response, 400, why)


def post_signup(hub, fields: dict, *, xsrf: str | None = "valid", raw: bytes | None = None):
    session, token = form_session(hub, "/hub/signup")
    if xsrf == "valid":
        fields = {"_xsrf": token, **fields}
    elif xsrf is not None:
        fields = {"_xsrf": xsrf, **fields}
    if raw is not None:
        return session.post(
            f"{hub.url}/hub/signup", data=raw + f"&_xsrf={token}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60,
        )
    return session.post(f"{hub.url}/hub/signup", data=fields, timeout=60)


FULL = {
    "username": MARK + "ok",
    "signup_password": PASSWORD,
    "signup_password_confirmation": PASSWORD,
}


@pytest.mark.parametrize(
    "fields, status, why",
    [
        ({k: v for k, v in FULL.items() if k != "username"}, 400, "username"),
        ({k: v for k, v in FULL.items() if k != "signup_password"}, 400, "signup_password"),
        ({k: v for k, v in FULL.items() if k != "signup_password_confirmation"}, 400,
         "signup_password_confirmation"),
        ({}, 400, "username"),
        ({**FULL, "username": "a" * 2_000_000}, 400, "limit is"),
        ({**FULL, "signup_password": "p" * 2_000_000,
          "signup_password_confirmation": "p" * 2_000_000}, 400, "72 bytes"),
    ],
    ids=["no username", "no password", "no confirmation", "empty form", "2 MB name", "2 MB password"],
)
def test_malformed_signup_post_is_refused(hub, nothing_created, fields, status, why):
    assert_refused(post_signup(hub, fields), status, why)


@pytest.mark.parametrize(
    "xsrf, why",
    [(None, "_xsrf' argument missing"), ("forged", "XSRF cookie does not match")],
    ids=["no xsrf", "wrong xsrf"],
)
def test_signup_without_valid_xsrf_is_refused(hub, nothing_created, xsrf, why):
    assert_refused(post_signup(hub, FULL, xsrf=xsrf), 403, why)


def test_signup_with_invalid_utf8_is_refused(hub, nothing_created):
    raw = b"username=" + MARK.encode() + b"%FF%FE&signup_password=x&signup_password_confirmation=x"
    assert_refused(post_signup(hub, {}, raw=raw), 400)


# ----------------------------------------------------------------------- login


def post_login(hub, fields: dict):
    session, token = form_session(hub, "/hub/login")
    return session.post(
        f"{hub.url}/hub/login", data={"_xsrf": token, **fields}, allow_redirects=False, timeout=60
    )


@pytest.mark.parametrize("name, why", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_username_at_login_is_refused(hub, nothing_created, name, why):
    response = post_login(hub, {"username": name, "password": PASSWORD})
    if name.strip() == "":
        assert_refused(response, 400, "username and a password")
    else:
        assert_refused(response, 403, "Invalid username or password")


@pytest.mark.parametrize(
    "fields, status, why",
    [
        ({"password": PASSWORD}, 400, "username and a password"),
        ({"username": "someone"}, 400, "username and a password"),
        ({}, 400, "username and a password"),
        ({"username": "someone", "password": "p" * 2_000_000}, 403, "Invalid username or password"),
    ],
    ids=["no username", "no password", "empty form", "2 MB password"],
)
def test_malformed_login_post_is_refused(hub, nothing_created, fields, status, why):
    assert_refused(post_login(hub, fields), status, why)


def test_overlong_password_of_a_real_account_is_refused_not_a_crash(hub):
    # bcrypt >= 5 raises on passwords over 72 bytes; NativeAuthenticator did not catch it.
    response = post_login(hub, {"username": hub.admin_name, "password": "p" * 100})
    assert_refused(response, 403, "Invalid username or password")
    # and the real password still works afterwards
    login_session(hub, hub.admin_name, hub.admin_password)


def admin_post(hub, path: str, admin=None):
    admin, xsrf = form_session(hub, "/hub/authorize", session=admin or hub.admin_session())
    return admin.post(f"{hub.url}{path}", data={"_xsrf": xsrf}, allow_redirects=False, timeout=30)


def is_approved(hub, username: str) -> bool:
    with sqlite3.connect(hub.dir / "jupyterhub.sqlite") as db:
        (approved,) = db.execute(
            "SELECT is_authorized FROM users_info WHERE username = ?", (username,)
        ).fetchone()
    return bool(approved)


def test_approving_an_unknown_name_is_404_not_500(hub, nothing_created):
    response = admin_post(hub, f"/hub/authorize/{MARK}nobody")
    # (JupyterHub 5.5's 404 page does not show the message; 6.x does)
    assert_refused(response, 404)


def test_only_admins_can_approve(hub):
    user, other = MARK + "user", MARK + "other"
    for name in (user, other):
        assert signup(hub, name, PASSWORD).status_code == 200
    approve_and_wait(hub, user)
    session = login_session(hub, user, PASSWORD)
    _, xsrf = form_session(hub, "/hub/change-password", session=session)
    response = session.post(
        f"{hub.url}/hub/authorize/{other}", data={"_xsrf": xsrf}, allow_redirects=False, timeout=30
    )
    assert response.status_code == 403, response.status_code
    anonymous = requests.post(f"{hub.url}/hub/authorize/{other}", allow_redirects=False, timeout=30)
    assert anonymous.status_code in (302, 403)
    assert not is_approved(hub, other)
    for name in (user, other):
        hub.api("DELETE", f"/users/{name}")


def test_approval_needs_a_form_post_not_a_link(hub):
    # A link (GET) that an admin follows, e.g. planted in a web page or an e-mail,
    # must not approve anybody; nor may a post without the hub's XSRF token.
    name = MARK + "csrf"
    assert signup(hub, name, PASSWORD).status_code == 200
    admin = hub.admin_session()
    followed = admin.get(f"{hub.url}/hub/authorize/{name}", timeout=30)
    assert followed.status_code == 200
    forged = admin.post(f"{hub.url}/hub/authorize/{name}", data={"_xsrf": "forged"},
                        allow_redirects=False, timeout=30)
    assert forged.status_code == 403
    discarded = admin.get(f"{hub.url}/hub/discard/{name}", timeout=30)
    assert discarded.status_code == 200
    assert not is_approved(hub, name)
    assert admin_post(hub, f"/hub/authorize/{name}", admin).status_code == 302
    assert is_approved(hub, name)
    wait_prepared(hub, name)


def test_discarding_a_sign_up_removes_it(hub, nothing_created):
    name = MARK + "discard"
    assert signup(hub, name, PASSWORD).status_code == 200
    assert admin_post(hub, f"/hub/discard/{name}").status_code == 302
    assert name not in signup_records(hub)


def post_login_from(hub, address: str, fields: dict):
    session = new_session()
    session.mount("http://", SourceAddressAdapter(address))
    session, token = form_session(hub, "/hub/login", session=session)
    return session.post(
        f"{hub.url}/hub/login", data={"_xsrf": token, **fields}, allow_redirects=False, timeout=60
    )


@pytest.mark.parametrize("exists", [True, False], ids=["existing name", "unknown name"])
def test_password_guessing_slows_down_one_address_and_never_locks_the_owner_out(hub, exists):
    # hub_config.py: login_delay = 2 s, doubling up to login_max_delay = 8 s, after
    # login_free_failures (3) failures per (name, address).
    name = MARK + ("guess" if exists else "ghost")
    if exists:
        assert signup(hub, name, PASSWORD).status_code == 200
        approve_and_wait(hub, name)
    stranger = "127.0.0.3" if exists else "127.0.0.4"
    for attempt in range(4):
        response = post_login_from(hub, stranger, {"username": name, "password": f"wrong{attempt}"})
        assert_refused(response, 403, "Invalid username or password")
    # Now the stranger's address waits, with the same words whether the name exists or not.
    waiting = post_login_from(hub, stranger, {"username": name, "password": PASSWORD})
    assert_refused(waiting, 403, "Too many failed logins with this name from your address")
    if exists:
        # The owner, from another address, logs in at once: no lock-out.
        owner = post_login_from(hub, "127.0.0.5", {"username": name, "password": PASSWORD})
        assert owner.status_code == 302, owner.text[-1500:]
        # And the stranger, after the wait, with the right password, too.
        time.sleep(2.5)
        assert post_login_from(hub, stranger, {"username": name, "password": PASSWORD}).status_code == 302
        hub.api("DELETE", f"/users/{name}")
