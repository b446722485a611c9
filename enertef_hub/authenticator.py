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

import json
import os
import secrets

import bcrypt
from jupyterhub import orm
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from tornado import web
from traitlets import Bool, Float, Integer, List, TraitError, Unicode, default, validate

from . import deleted_logins, naming
from .api_handlers import acting_user, api_handlers
from .approval import ensure_hub_users_of_approved
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
from .throttle import LoginThrottle, client_address, parse_networks

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
    its account lock-out is replaced by per-(name, client) throttling.
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
        help="""Failed logins allowed per (username, client) before that pair has to
        wait between attempts. A client is a browser that logged in with that name
        before (``login_known_browser_days``), else the client's address. Names that do
        not exist count the same, so the answer never tells whether a name exists.""",
    )

    login_delay = Float(
        1.0,
        config=True,
        help="""Seconds a (username, client) pair waits after its first failed login
        beyond ``login_free_failures``; each further failure doubles it, up to
        ``login_max_delay``. Attempts during the wait are refused without checking the
        password. Other clients are not slowed down: a browser that has logged in with
        the name before, or another address, logs in as usual while someone else
        guesses.""",
    )

    login_max_delay = Float(
        60.0,
        config=True,
        help="""Longest wait, in seconds, between failed logins of one (username,
        client) pair. It bounds how long the owner of a name, from a new browser at the
        guesser's own address, waits once the guessing stops. A correct password, or
        an hour without failures, resets it.""",
    )

    login_known_browser_days = Float(
        90.0,
        config=True,
        help="""Days a browser is remembered, after a successful login, as a client of
        its own for the throttle of that name (a signed, HttpOnly cookie of the hub,
        ``enertef-login-browser``, holding a random browser id and the names that logged
        in with it). Failed logins elsewhere, e.g. someone guessing the admin's password
        from the same address, then never delay this browser. 0 turns it off.""",
    )

    login_trusted_proxies = List(
        Unicode(),
        config=True,
        help="""IP addresses or networks (``10.42.0.15``, ``10.42.0.0/16``) of proxies
        whose ``X-Forwarded-For`` header the login throttle believes, in addition to the
        proxy the hub started itself (recognised as a loopback connection from the
        hub's own uid; a local user's process connecting from loopback is not trusted).
        Only the rightmost entry, which the proxy appended, is used, and entries further
        left only while the entry read is in ``JupyterHub.trusted_downstream_ips``.
        Requests from any other peer are counted by the peer's own address whatever
        they claim. List only addresses no user's code can connect from.""",
    )

    @validate("login_trusted_proxies")
    def _validate_login_trusted_proxies(self, proposal):
        try:
            parse_networks(proposal.value)
        except ValueError as error:
            raise TraitError(f"EnerTEFAuthenticator.login_trusted_proxies: {error}") from None
        return proposal.value

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

    suspended_message = Unicode(
        "Your account '{username}' is suspended: an administrator has withdrawn its access."
        " Your files and MLflow data are kept. Ask an administrator of this hub ({admins})"
        " to approve it again.",
        config=True,
        help="""Message shown when a user whose approval an admin withdrew (Unauthorize on
        the approval page, or Suspend on the accounts page) logs in with the right
        password; a wrong password reads "Invalid username or password" as for anyone.
        ``{username}`` is replaced by the username, ``{admins}`` by the names in
        ``Authenticator.admin_users``. Say here how users reach your admins, e.g.
        "... write to ml-admins@example.org".""",
    )

    deleted_account_message = Unicode(
        "The account '{username}' no longer exists: an administrator deleted it. To use"
        " this hub again, sign up anew and wait for approval; ask an administrator"
        " ({admins}) whether the old account's data was kept.",
        config=True,
        help="""Message shown when the owner of a deleted account logs in with its
        password (kept for this, see ``keep_deleted_password_hash``); any other password
        reads "Invalid username or password", as for a name that never existed, so
        nobody else learns that the name existed. ``{username}`` and ``{admins}`` as in
        ``suspended_message``.""",
    )

    keep_deleted_password_hash = Bool(
        True,
        config=True,
        help="""Keep the password hash (bcrypt) of a deleted account in the hub's database
        (table ``enertef_deleted_logins``), so that its owner, logging in with the right
        password, reads ``deleted_account_message`` instead of "Invalid username or
        password". It is dropped when the name signs up again. False: deleting an
        account forgets its password, and its owner's logins read "Invalid username or
        password".""",
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

    team_sync_wait = Float(
        10.0,
        config=True,
        help="""Seconds a group change made in the admin panel or through the REST API
        (``/hub/api/groups/...``) waits, before it answers, for the team access of the
        users it moved to follow: a new member's team login works, a removed member's
        ends. What is not done by then goes on in the background (and the periodic
        team sync, ``enertef-team-sync``, retries what failed). 0 answers at once and
        syncs in the background.""",
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
        if self.db is not None:
            deleted_logins.ensure_table(self.db)
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

    def refusal_message(self, username: str, password: str) -> str | None:
        """Why a login of ``username`` (normalised) with ``password`` is refused, told only with
        the right password; None if the password is wrong (or the name unknown).

        Suspended (an approved user whose approval was withdrawn: approval made their
        hub user, which stays), waiting for approval, or deleted (its password kept
        by ``keep_deleted_password_hash``).
        """
        admins = ", ".join(sorted(self.admin_users)) or "the administrators"
        info = self.get_user(username)
        if info is None:
            if deleted_logins.was_deleted_with(self.db, username, password):
                return self.deleted_account_message.format(username=username, admins=admins)
            return None
        if not self.password_matches(info, password) or self.check_allowed(username):
            return None
        if orm.User.find(self.db, username) is not None:
            return self.suspended_message.format(username=username, admins=admins)
        return self.waiting_for_approval_message.format(username=username)

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

    # ------------------------------------------------------------ login throttle

    #: The cookie naming a browser that has logged in (``login_known_browser_days``).
    KNOWN_BROWSER_COOKIE = "enertef-login-browser"
    _KNOWN_BROWSER_NAMES = 8  # names remembered per browser (the most recent)

    def _known_browser_cookie_name(self, handler) -> str:
        settings = getattr(handler, "settings", None) or {}
        prefix = "__Host-" if settings.get("cookie_host_prefix_enabled") else ""
        return prefix + self.KNOWN_BROWSER_COOKIE

    def _known_browser(self, handler) -> dict | None:
        """The signed known-browser cookie of a login request: {"b": id, "n": [names]}."""
        if not self.login_known_browser_days or not hasattr(handler, "get_secure_cookie"):
            return None
        try:
            raw = handler.get_secure_cookie(
                self._known_browser_cookie_name(handler),
                max_age_days=self.login_known_browser_days,
            )
            value = json.loads(raw) if raw else None
        except (ValueError, TypeError):
            return None
        if not (isinstance(value, dict) and isinstance(value.get("b"), str)):
            return None
        names = value.get("n")
        value["n"] = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
        return value

    def _remember_browser(self, handler, username: str) -> None:
        """After a successful login: (re)set the known-browser cookie, with this name."""
        if not self.login_known_browser_days or not hasattr(handler, "_set_cookie"):
            return
        known = self._known_browser(handler) or {"b": secrets.token_urlsafe(16), "n": []}
        names = [username] + [n for n in known["n"] if n != username]
        value = json.dumps({"b": known["b"], "n": names[: self._KNOWN_BROWSER_NAMES]})
        hub = getattr(handler, "hub", None)
        handler._set_cookie(
            self._known_browser_cookie_name(handler),
            value,
            encrypted=True,
            expires_days=self.login_known_browser_days,
            path=getattr(hub, "base_url", "/"),
        )

    def client_address(self, handler) -> str:
        """The login request's client address as the hub's proxy saw it (see
        ``enertef_hub.throttle.client_address``)."""
        request = getattr(handler, "request", None)
        if request is None:
            return "-"
        app = self.parent
        skip = getattr(app, "trusted_downstream_ips", None)
        if skip is None:
            skip = self.config.get("JupyterHub", {}).get("trusted_downstream_ips", [])
        try:
            skip_networks = parse_networks(skip)
        except ValueError as error:
            self.log.warning("JupyterHub.trusted_downstream_ips ignored for logins: %s", error)
            skip_networks = []
        return client_address(request, parse_networks(self.login_trusted_proxies), skip_networks)

    def throttle_key(self, username, handler) -> tuple[str, str]:
        """(name as typed, lower-cased; client) that failed logins are counted by.

        The client is the browser if it logged in with this name before, else the
        client's address: someone guessing a name can delay only attempts from their
        own address, and never a browser the owner has used.
        """
        name = str(username).strip().lower()[:256]
        known = self._known_browser(handler)
        if known is not None and name in known["n"]:
            return (name, "browser:" + known["b"])
        return (name, self.client_address(handler))

    async def authenticate(self, handler, data):
        """Check a login form: valid name, existing approved account, matching password.

        A (name, client) pair still waiting after failed logins is refused at once;
        the handler can read the wait from ``handler.enertef_login_wait``. A correct
        password marks the browser as known for this name (``login_known_browser_days``).
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
            self._remember_browser(handler, key[0])
        return result

    async def _check_login(self, handler, data, username, password):
        if self.username_problem(username) is not None:
            return None
        if len(password.encode("utf-8", "surrogatepass")) > BCRYPT_MAX_PASSWORD_BYTES:
            return None
        if self.get_user(username) is None:
            # As long as a real name's check: the time would tell which names exist.
            deleted_logins.check_against_nothing(password)
            return None
        return await super().authenticate(handler, {**data, "username": username})

    # -------------------------------------------------------------- lifecycle

    def create_user(self, username, password, **kwargs):
        """Record a sign-up (NativeAuthenticator) and log it as a lifecycle event."""
        info = super().create_user(username, password, **kwargs)
        if info is not None:
            # A new account of the name: the deleted one's password must not speak for it.
            deleted_logins.forget(self.db, info.username)
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

        ``actor``: who deletes (logged in the events); by default the requester of the
        ``DELETE /hub/api/users/NAME`` being served (``api_handlers.acting_user``).

        Revocation comes first: if PostgreSQL or MinIO cannot be reached, the
        deletion fails with a message and the account stays as it was, so the
        admin can simply retry; a half-deleted user who still holds working
        credentials would be worse.
        """
        name = user.name
        # The admin panel's DELETE /hub/api/users/NAME passes no actor: its requester is here.
        actor = actor or acting_user.get()
        # A preparation started at approval must not give access back after this.
        await stop_preparing(name)
        if self.revoke_on_delete:
            try:
                await self.workbench.deprovision(name, actor=actor)
            except EnerTEFError as error:
                # The error says how far the revocation got (the access itself is
                # revoked first, the sweeps and the registry after it).
                self.log.error("Deleting user %s failed: %s", name, error)
                raise web.HTTPError(503, f"User {name} was not deleted: {error}") from error
        info = self.get_user(name)
        if info is not None and self.keep_deleted_password_hash:
            # Committed with the sign-up's removal (NativeAuthenticator's delete_user).
            deleted_logins.remember(self.db, name, info.password, actor)
        super().delete_user(user)
        log_event(self.log, "user-deleted", name, actor=actor, revoked=self.revoke_on_delete)

    def get_handlers(self, app):
        """NativeAuthenticator's pages (with the handlers in enertef_hub.handlers swapped in)
        and the admins' accounts page (enertef_hub.admin_pages), which also adds the
        admins' links to the hub's navigation bar; and JupyterHub's group API handlers
        extended to sync team access at once (enertef_hub.api_handlers), routed ahead of
        JupyterHub's own (the hub lists the authenticator's routes first).

        With the hub (``app``) it also makes the hub users of approved accounts that
        have none (``approval.ensure_hub_users_of_approved``): the hub calls this once
        at start, after its roles and users are loaded.
        """
        from .admin_pages import admin_handlers, install_admin_pages

        if app is not None:
            install_admin_pages(app, self)
            # Accounts approved before approval made hub users get theirs now (see approval.py).
            ensure_hub_users_of_approved(app.db, self, self.log)
        return [
            (route, _REPLACED_HANDLERS.get(route, handler))
            for route, handler in super().get_handlers(app)
        ] + admin_handlers() + api_handlers()
