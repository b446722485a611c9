"""EnerTEFAuthenticator: sign-up, admin approval and deletion through the Hub.

Built on NativeAuthenticator (accounts and bcrypt password hashes in the hub's own
database, a sign-up page, an admin approval page), with three changes:

- usernames follow ``enertef_hub.naming`` (ASCII letters and digits, lower-cased,
  reserved names refused), and a refused name is explained on the sign-up form;
- a user may log in only once an admin has approved the sign-up (or is listed in
  ``Authenticator.admin_users``); JupyterHub >= 5 otherwise refuses everybody
  unless ``allow_all`` is set, which would let unapproved sign-ups in;
- deleting a user in the admin panel (or ``DELETE /hub/api/users/NAME``) first
  revokes the user's database login and MinIO keys through the Workbench, so
  access ends at once; data is kept or purged by ``Workbench.purge_on_delete``.

Lifecycle events (sign-up, approval, deletion) are logged as one structured line
each (``enertef_hub.events``).
"""

from __future__ import annotations

import os

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from tornado import web
from traitlets import Bool, Float, Integer, Unicode, default

from . import naming
from .errors import EnerTEFError
from .events import log_event
from .handlers import (
    BCRYPT_MAX_PASSWORD_BYTES,
    AuthorizationAreaHandler,
    DiscardHandler,
    LoginHandler,
    SignUpHandler,
    ToggleAuthorizationHandler,
)
from .preparation import stop_preparing
from .throttle import LoginThrottle

#: NativeAuthenticator routes replaced by ours (see enertef_hub.handlers for why).
_REPLACED_HANDLERS = {
    r"/login": LoginHandler,
    r"/signup": SignUpHandler,
    r"/authorize": AuthorizationAreaHandler,
    r"/authorize/([^/]*)": ToggleAuthorizationHandler,
    r"/discard/([^/]*)": DiscardHandler,
}


class EnerTEFAuthenticator(NativeAuthenticator):
    """Native accounts with admin approval, EnerTEF usernames and revocation on delete.

    Configure it as ``c.JupyterHub.authenticator_class = "enertef"``; admins come
    from ``c.Authenticator.admin_users`` and approve sign-ups at ``/hub/authorize``.
    An admin's account is never made by signing up: the hub creates it at start
    from ``admin_password`` (the operator's secret), and a sign-up under an admin
    name is refused. Password rules are NativeAuthenticator's options
    (``minimum_password_length``, ``check_common_password``) with safer defaults;
    its account lock-out is replaced by per-(name, address) throttling.
    """

    admin_password = Unicode(
        config=True,
        help="""Password with which the hub creates, when it starts, the account of each
        name in ``Authenticator.admin_users`` that has none yet (approved at once).
        Accounts that exist are left alone (change a password at
        ``/hub/change-password``). Admin names can never be signed up, so nobody can
        take an admin name before the operator does. Defaults to the
        ``ENERTEF_HUB_ADMIN_PASSWORD`` environment variable (``scripts/workbench.sh``
        generates it into ``.local/admin-password``; on Kubernetes it comes from Secret
        ``enertef-hub``); never passed to users' servers.""",
    )

    @default("admin_password")
    def _default_admin_password(self):
        return os.environ.get("ENERTEF_HUB_ADMIN_PASSWORD", "")

    login_free_failures = Integer(
        3,
        config=True,
        help="""Failed logins allowed per (username, client address) before that pair
        has to wait between attempts. Names that do not exist count the same, so the
        answer never tells whether a name exists.""",
    )

    login_delay = Float(
        1.0,
        config=True,
        help="""Seconds a (username, client address) pair waits after its first failed
        login beyond ``login_free_failures``; each further failure doubles it, up to
        ``login_max_delay``. Attempts during the wait are refused without checking the
        password. Other addresses are not slowed down, so nobody can lock an admin out.""",
    )

    login_max_delay = Float(
        300.0,
        config=True,
        help="""Longest wait, in seconds, between failed logins of one (username, client
        address) pair. A correct password, or an hour without failures, resets it.""",
    )

    waiting_for_approval_message = Unicode(
        "Your account '{username}' has been created and is waiting for approval by an"
        " administrator. You can log in as soon as it is approved; until then logging"
        " in is refused.",
        config=True,
        help="""Message shown after a sign-up that needs approval, and when such a
        user tries to log in before being approved. ``{username}`` is replaced by the
        (normalised) username. Say here how users reach your admins, e.g.
        "... write to ml-admins@example.org".""",
    )

    revoke_on_delete = Bool(
        True,
        config=True,
        help="""Revoke a user's database login and MinIO keys (``Workbench.deprovision``)
        when an admin deletes the user in the Hub. Data is then kept or purged as
        ``Workbench.purge_on_delete`` says. Turn off only if you revoke access by other
        means (e.g. ``enertef-hub deprovision USER``): a deleted user whose access is
        not revoked can keep using their old credentials from a running process.""",
    )

    prepare_on_approval = Bool(
        True,
        config=True,
        help="""Make an approved user's MLflow store (with MLflow's tables), bucket and
        credentials as soon as an admin approves the sign-up, in the background, so
        the user's first spawn only checks they are there (it takes about as long as
        a returning user's). Off: they are made at the first spawn, while the user
        waits. Either way a spawn repairs whatever is missing.""",
    )

    # NativeAuthenticator's defaults accept empty passwords and never lock an
    # account (its documented defaults, 1 and 600 s, are only traitlets *tags*: the
    # real defaults are 0); a workbench holding research data wants a little more.
    @default("minimum_password_length")
    def _default_minimum_password_length(self):
        return 8

    @default("check_common_password")
    def _default_check_common_password(self):
        return True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.login_throttle = LoginThrottle(
            free_failures=self.login_free_failures,
            base_delay=self.login_delay,
            max_delay=self.login_max_delay,
        )
        if self.allowed_failed_logins:
            self.log.warning(
                "NativeAuthenticator.allowed_failed_logins is ignored: EnerTEFAuthenticator"
                " throttles failed logins per name and address instead (login_delay)."
            )
        self.ensure_admin_accounts()

    # NativeAuthenticator's per-account lock-out lets anyone who knows a name lock its
    # owner out: the per-(name, address) throttle replaces it.
    def is_blocked(self, username):
        return False

    def add_login_attempt(self, username):
        pass

    # Admin approval *is* the allow configuration: silence JupyterHub 5's
    # "No allow config found, it's possible that nobody can login" warning.
    @default("any_allow_config")
    def _default_any_allow_config(self):
        return True

    # ------------------------------------------------------------------ names

    def username_problem(self, username) -> str | None:
        """Why ``username`` (as typed) cannot be an account name, or None if it can.

        The message is meant for the person who typed it (sign-up form).
        """
        try:
            naming.normalize_username(username)
        except naming.InvalidNameError as error:
            return str(error)
        return None

    def normalize_username(self, username):
        """Lower-case a valid name (and apply ``username_map``); leave others as they are.

        Invalid names are not raised on here because JupyterHub calls this from
        many places (REST API, start-up) and expects a string back; it then asks
        ``validate_username``, which refuses them, so the API answers 400.
        """
        try:
            name = naming.normalize_username(username)
        except naming.InvalidNameError:
            return username
        return self.username_map.get(name, name)

    def validate_username(self, username):
        """Accept only names that ``enertef_hub.naming`` accepts and has normalised."""
        try:
            valid = naming.normalize_username(username) == username
        except naming.InvalidNameError:
            return False
        return valid and super().validate_username(username)

    # ----------------------------------------------------------------- admins

    def is_admin_name(self, username: str) -> bool:
        """Whether ``username`` (normalised) is one of ``Authenticator.admin_users``."""
        return username in self.admin_users

    def ensure_admin_accounts(self) -> list[str]:
        """Create, from ``admin_password``, the accounts of admins that have none; return their names."""
        if not self.admin_password:
            return []
        created = []
        for name in sorted(self.admin_users):
            if self.get_user(name) is not None:
                continue
            hashed = bcrypt.hashpw(self.admin_password.encode(), bcrypt.gensalt())
            self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
            self.db.commit()
            created.append(name)
            log_event(self.log, "admin-created", name, actor="operator")
        return created

    # ----------------------------------------------------------------- access

    def check_allowed(self, username, authentication=None):
        """Allow a user iff an admin approved the sign-up or the user is a configured admin."""
        if username in self.admin_users:
            return True
        info = self.get_user(username)
        return bool(info is not None and info.is_authorized)

    async def refresh_user(self, user, handler=None):
        """End the hub session of a user whose approval an admin has withdrawn.

        JupyterHub asks this every ``Authenticator.auth_refresh_age`` seconds (5 min by
        default); False sends the user back to the login page, where login is then
        refused. Users without a sign-up record (created by an admin through the
        REST API) are left alone: they cannot log in with a password anyway. (The
        approval page also revokes the user's tokens and cookies at once; this is
        the second line, for approvals withdrawn by other means.)
        """
        info = self.get_user(user.name)
        if info is None or user.name in self.admin_users:
            return True
        return bool(info.is_authorized)

    def password_matches(self, info, password) -> bool:
        """Compare ``password`` with a user's stored hash; never raises on odd input."""
        if not isinstance(password, str):
            return False
        if len(password.encode("utf-8", "surrogatepass")) > BCRYPT_MAX_PASSWORD_BYTES:
            # bcrypt >= 5 raises on these; no stored password can be this long.
            return False
        try:
            return info.is_valid_password(password)
        except ValueError:
            return False

    @staticmethod
    def throttle_key(username, handler) -> tuple[str, str]:
        """(name as typed, lower-cased; client address) that failed logins are counted by."""
        address = getattr(getattr(handler, "request", None), "remote_ip", None) or "-"
        return (str(username).strip().lower()[:256], address)

    async def authenticate(self, handler, data):
        """Check a login form: valid name, existing approved account, matching password.

        A (name, address) pair still waiting after failed logins is refused at once;
        the handler can read the wait from ``handler.enertef_login_wait``.
        """
        username = data.get("username")
        password = data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        key = self.throttle_key(username, handler)
        wait = self.login_throttle.wait_seconds(key)
        if wait > 0:
            if handler is not None:
                handler.enertef_login_wait = wait
            return None
        result = await self._check_login(handler, data, username, password)
        if result is None:
            self.login_throttle.failed(key)
        else:
            self.login_throttle.succeeded(key)
        return result

    async def _check_login(self, handler, data, username, password):
        if self.username_problem(username) is not None:
            return None
        if len(password.encode("utf-8", "surrogatepass")) > BCRYPT_MAX_PASSWORD_BYTES:
            return None
        return await super().authenticate(handler, {**data, "username": username})

    # -------------------------------------------------------------- lifecycle

    def create_user(self, username, password, **kwargs):
        """Record a sign-up (NativeAuthenticator) and log it as a lifecycle event."""
        info = super().create_user(username, password, **kwargs)
        if info is not None:
            log_event(
                self.log,
                "signup",
                info.username,
                actor=info.username,
                approved=bool(info.is_authorized),
            )
        return info

    @property
    def workbench(self):
        """The hub's Workbench (imported lazily: its provisioners are heavier than auth)."""
        from .workbench import Workbench

        return Workbench.instance(config=self.config)

    async def delete_user(self, user, actor=None):
        """Revoke the user's resources, then forget the account.

        Revocation comes first: if PostgreSQL or MinIO cannot be reached, the
        deletion fails with a message and the account stays as it was, so the
        admin can simply retry; a half-deleted user who still holds working
        credentials would be worse.
        """
        name = user.name
        # A preparation started at approval must not give access back after this.
        await stop_preparing(name)
        if self.revoke_on_delete:
            try:
                await self.workbench.deprovision(name, actor=actor)
            except EnerTEFError as error:
                self.log.error("Deleting user %s failed: access not revoked: %s", name, error)
                raise web.HTTPError(
                    503,
                    f"User {name} was not deleted because their access could not be"
                    f" revoked: {error}",
                ) from error
        super().delete_user(user)
        log_event(self.log, "user-deleted", name, actor=actor, revoked=self.revoke_on_delete)

    def get_handlers(self, app):
        """NativeAuthenticator's pages (with the handlers in enertef_hub.handlers swapped in)
        and the admins' accounts page (enertef_hub.admin_pages), which also adds the
        admins' links to the hub's navigation bar."""
        from .admin_pages import admin_handlers, install_admin_pages

        if app is not None:
            install_admin_pages(app, self)
        return [
            (route, _REPLACED_HANDLERS.get(route, handler))
            for route, handler in super().get_handlers(app)
        ] + admin_handlers()
