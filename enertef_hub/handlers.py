"""Hub pages of the EnerTEF authenticator: NativeAuthenticator's, made safe.

NativeAuthenticator 1.3.0 provides the sign-up, login and approval pages. Five of
its handlers are replaced here (see ``EnerTEFAuthenticator.get_handlers``), each
for a reason that a user or an admin would otherwise hit:

- ``/login``: its ``post()`` uses ``self.statsd``, which JupyterHub 6 removed, and
  its ``_render()`` does not accept the keywords (``sync=True`` ...) JupyterHub's
  ``LoginHandler.render_template`` passes when it renders an error as the login
  form. Both made every POST /hub/login a 500 on JupyterHub 6.1. Ours works on 5.5
  and 6.x without touching JupyterHub itself.
- ``/signup``: it checked names only for spaces, commas and slashes, answered every
  refusal with status 200 and a vague message, and crashed (500) on passwords
  longer than bcrypt's 72 bytes. Ours checks the name with ``enertef_hub.naming``
  first and answers 4xx with the reason.
- ``/authorize`` and ``/authorize/NAME``: approval toggled on a plain GET (a link
  planted on any page an admin visits could approve a sign-up) and crashed on
  unknown names. Ours approves only on a form POST carrying the hub's XSRF token,
  answers 404 for unknown names and logs approvals as lifecycle events.
- ``/discard/NAME``: also a GET, and it called ``Authenticator.delete_user``
  without awaiting it, which does nothing now that ``delete_user`` is async.

Templates are NativeAuthenticator's own (``native-login.html``, ``signup.html``);
only the approval page has its own (``templates/enertef-authorization-area.html``).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader, TemplateNotFound
from jupyterhub.utils import maybe_future
from nativeauthenticator.handlers import DiscardHandler as NativeDiscardHandler
from nativeauthenticator.handlers import LocalBase
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.handlers import TEMPLATE_DIR as NATIVE_TEMPLATE_DIR
from nativeauthenticator.handlers import SignUpHandler as NativeSignUpHandler
from nativeauthenticator.handlers import admin_users_scope
from nativeauthenticator.orm import UserInfo
from tornado import web
from tornado.escape import url_escape
from tornado.httputil import url_concat

from .approval import ensure_hub_user, withdraw_access
from .errors import EnerTEFError
from .events import log_event
from .preparation import prepare_in_background

#: bcrypt refuses (bcrypt >= 5: raises) passwords longer than this many bytes.
BCRYPT_MAX_PASSWORD_BYTES = 72

#: Our own templates (only pages that differ from NativeAuthenticator's).
TEMPLATE_DIR = os.path.join(os.path.dirname(__file__), "templates")


#: Small fixes to NativeAuthenticator's pages, served under names of our own so the
#: originals (which the hub's loaders find first) are not shadowed by accident:
#: ``{our name: (NativeAuthenticator's file, [(its text, our text), ...])}``.
#: - Its inputs say ``val=``, which browsers ignore, so a refused login or sign-up
#:   emptied the username field; ``value=`` keeps it.
#: - After a successful sign-up the form stayed on screen under the message, inviting
#:   a second sign-up; it is now left out (the "Login" link stays).
PATCHED_NATIVE_TEMPLATES = {
    "enertef-native-login.html": ("native-login.html", [
        ('name="username" val="{{username}}"', 'name="username" value="{{username or \'\'}}"'),
    ]),
    "enertef-signup.html": ("signup.html", [
        ('name="username" val="{{username}}"', 'name="username" value="{{username or \'\'}}"'),
        ('<input type="hidden" name="_xsrf" value="{{ xsrf }}"/>',
         '{% if alert not in ("alert-success", "alert-info") %}'
         '<input type="hidden" name="_xsrf" value="{{ xsrf }}"/>'),
        ("<hr />", "{% endif %}<hr />"),
    ]),
}  # fmt: skip

#: The handlers' template names that are rendered from :data:`PATCHED_NATIVE_TEMPLATES`.
_PATCHED_NAMES = {native: ours for ours, (native, _) in PATCHED_NATIVE_TEMPLATES.items()}


class PatchedNativeTemplateLoader(BaseLoader):
    """Jinja loader of :data:`PATCHED_NATIVE_TEMPLATES`: NativeAuthenticator's file with its fixes.

    A fix whose text is no longer in the file (a NativeAuthenticator upgrade) is
    skipped, leaving the page as NativeAuthenticator made it; the unit tests check
    that every fix applies to the installed version.
    """

    def get_source(self, environment, template):
        if template not in PATCHED_NATIVE_TEMPLATES:
            raise TemplateNotFound(template)
        native, fixes = PATCHED_NATIVE_TEMPLATES[template]
        path = os.path.join(NATIVE_TEMPLATE_DIR, native)
        with open(path, encoding="utf-8") as file:
            source = file.read()
        mtime = os.path.getmtime(path)
        for before, after in fixes:
            source = source.replace(before, after, 1)
        return source, path, lambda: os.path.getmtime(path) == mtime


class TemplatesMixin:
    """Make NativeAuthenticator's and our templates loadable from both hub Jinja environments.

    NativeAuthenticator adds its folder to the hub's async environment only, but
    JupyterHub renders error pages through the *sync* one (``write_error``); on the
    login page an error is rendered as the login form, which then was missing
    (a 500 instead of the message).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key in ("jinja2_env", "jinja2_env_sync"):
            env = self.settings[key]
            if not getattr(env, "_enertef_templates", False):
                env.loader = ChoiceLoader(
                    [env.loader, FileSystemLoader([NATIVE_TEMPLATE_DIR, TEMPLATE_DIR]),
                     PatchedNativeTemplateLoader()]
                )
                env._enertef_templates = True

    def render_template(self, name, *args, **kwargs):
        # NativeAuthenticator's handlers name its files; render our fixed copies instead.
        return super().render_template(_PATCHED_NAMES.get(name, name), *args, **kwargs)


def password_problem(authenticator, password: str) -> str | None:
    """Why ``password`` cannot be used for a new account, or None if it can.

    Uses NativeAuthenticator's own rules (``minimum_password_length``,
    ``check_common_password``) plus bcrypt's hard upper limit.
    """
    if len(password.encode("utf-8", "surrogatepass")) > BCRYPT_MAX_PASSWORD_BYTES:
        return (
            f"The password is longer than {BCRYPT_MAX_PASSWORD_BYTES} bytes, which cannot be"
            " stored safely; please choose a shorter one."
        )
    if len(password) < authenticator.minimum_password_length:
        return (
            f"The password is too short: use at least {authenticator.minimum_password_length}"
            " characters."
        )
    if authenticator.check_common_password and authenticator.is_password_common(password):
        return "This password is too common and easy to guess; please choose another."
    return None


class SignUpHandler(TemplatesMixin, NativeSignUpHandler):
    """``/hub/signup``: refuse bad names and passwords with a 4xx and the reason.

    Valid requests are handed to NativeAuthenticator's handler (with the username
    replaced by its normalised form), so reCAPTCHA, e-mail and 2FA options keep
    working as documented there.
    """

    async def post(self):
        if not self.authenticator.enable_signup:
            raise web.HTTPError(404)
        # Missing fields raise tornado's MissingArgumentError: a 400 page naming the field.
        raw_name = self.get_body_argument("username", strip=False)
        password = self.get_body_argument("signup_password", strip=False)
        confirmation = self.get_body_argument("signup_password_confirmation", strip=False)

        problem = self.authenticator.username_problem(raw_name)
        status = 400
        if problem is None:
            username = self.authenticator.normalize_username(raw_name)
            if self.authenticator.is_admin_name(username):
                # Admin accounts come from the operator (admin_password), never from a
                # sign-up: otherwise whoever signs up first under the name is admin.
                problem = (
                    f"The name '{username}' is reserved for an administrator of this hub;"
                    " please choose another."
                )
                status = 403
            elif self.authenticator.user_exists(username):
                problem = f"The username '{username}' is already taken; please choose another."
                status = 409
            elif password != confirmation:
                problem = "The password and its confirmation differ; please type them again."
            else:
                problem = password_problem(self.authenticator, password)
        if problem is None and self.find_user(username) is None:
            problem = await self._end_leftover_account(username)
            status = 503
        if problem is not None:
            self.log.info("Sign-up refused (%s)", problem)
            await self._refuse(status, problem)
            return

        # NativeAuthenticator compares the raw field with admin_users: give it the
        # normalised name so "Boss" signing up is recognised as admin "boss".
        self.request.body_arguments["username"] = [username.encode()]
        self.request.arguments["username"] = [username.encode()]
        await super().post()

    async def _end_leftover_account(self, username: str) -> str | None:
        """End a live account of ``username`` that this hub does not know; a refusal message if that failed.

        This hub has no user of that name, yet the account registry (in PostgreSQL) may
        still hold a live account of it: left by an earlier hub on the same data (a
        reinstall with a new hub database) or by a deletion without revocation. Whoever
        signs up now is someone new and must not get that account's store, bucket and
        home: it is ended first (access revoked, data kept for an admin to restore), so
        the approval makes a new incarnation.
        """
        workbench = self.authenticator.workbench
        try:
            ended = await workbench.end_leftover_account(username, actor="signup")
        except EnerTEFError as error:
            self.log.error("Sign-up of %s refused: its leftover account could not be checked or ended: %s",
                           username, error)
            return f"Sign-up is not possible right now ({error}). Please try again later."
        if ended:
            log_event(self.log, "leftover-account-ended", username, actor="signup", incarnations=ended)
        return None

    async def _refuse(self, status: int, message: str):
        self.set_status(status)
        html = await self.render_template(
            "signup.html",
            # Kept in the form (escaped by the template): the passwords are not.
            username=self.get_body_argument("username", "", strip=True)[:200],
            ask_email=self.authenticator.ask_email_on_signup,
            result_message=message,
            alert="alert-danger",
            two_factor_auth=self.authenticator.allow_2fa,
            recaptcha_key=self.authenticator.recaptcha_key,
            tos=self.authenticator.tos,
        )
        self.finish(html)

    def get_result_message(self, user, *args, **kwargs):
        alert, message = super().get_result_message(user, *args, **kwargs)
        if alert == "alert-danger":
            # What is left after our own checks: reCAPTCHA, e-mail format, sign-up closed.
            self.set_status(400)
        elif alert == "alert-info" and user is not None and not user.is_authorized:
            message = self.authenticator.waiting_for_approval_message.format(
                username=user.username
            )
        return alert, message


class LoginHandler(TemplatesMixin, NativeLoginHandler):
    """``/hub/login`` with NativeAuthenticator's page, working on JupyterHub 5.5 and 6.x.

    With per-user origins (``JupyterHub.subdomain_host``) the proxy sends ``/hub/``
    of *every* host to the hub, so ``alice.<hub host>/hub/login`` would log a
    visitor in on alice's origin, where her pages could read the hub's XSRF token.
    Logins therefore happen on the hub's own host only.
    """

    def _hub_host_redirect(self) -> str | None:
        """The same URL on the hub's own host, when this request came to another host."""
        subdomain_host = self.settings.get("subdomain_host")
        if not subdomain_host:
            return None
        hub_host = urlsplit(subdomain_host).netloc.lower()
        if self.request.host.lower() == hub_host:
            return None
        return subdomain_host.rstrip("/") + self.request.uri

    async def get(self):
        target = self._hub_host_redirect()
        if target is not None:
            self.redirect(target)
            return
        await super().get()

    def _render(self, login_error=None, username=None, **kwargs):
        # JupyterHub's LoginHandler.render_template turns an error page of a form
        # POST into this call with the error page's namespace (status_code,
        # message, sync=True ...). Only `sync` matters here: write_error needs a
        # string, not an awaitable.
        return self.render_template(
            "native-login.html",
            sync=kwargs.get("sync", False),
            next=url_escape(self.get_argument("next", default="")),
            username=username,
            login_error=login_error,
            custom_html=self.authenticator.custom_html,
            login_url=self.settings["login_url"],
            enable_signup=self.authenticator.enable_signup,
            two_factor_auth=self.authenticator.allow_2fa,
            authenticator_login_url=url_concat(
                self.authenticator.login_url(self.hub.base_url),
                {"next": self.get_argument("next", "")},
            ),
        )

    async def post(self):
        if self._hub_host_redirect() is not None:
            raise web.HTTPError(
                403, f"Log in at {self.settings['subdomain_host']}, the hub's own address."
            )
        data = {
            # strip the username only: passwords may start or end with spaces
            name: self.get_body_argument(name, strip=name == "username")
            for name in self.request.body_arguments
            if name != "_xsrf"
        }
        if not data.get("username") or "password" not in data:
            raise web.HTTPError(400, "Please enter a username and a password.")

        user = await self.login_user(data)
        if user:
            # register current user for subsequent requests (e.g. logging the request)
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return

        username = data["username"]
        shown = username if len(username) <= 32 else f"{username[:16]}..."
        self.set_status(403)
        html = await self._render(login_error=self._failure_message(data), username=shown)
        self.finish(html)

    def _failure_message(self, data) -> str:
        """Say why a login failed, without telling strangers which names exist."""
        auth = self.authenticator
        invalid = "Invalid username or password."
        wait = getattr(self, "enertef_login_wait", 0)
        if wait:
            # Said alike for names that exist and names that do not.
            return (
                "Too many failed logins with this name from your address: wait"
                f" {max(1, round(wait))} seconds and try again."
            )
        if auth.username_problem(data["username"]) is not None:
            return invalid
        name = auth.normalize_username(data["username"])
        # Suspended, waiting or deleted is said only to whoever has the right password.
        return auth.refusal_message(name, data["password"]) or invalid


class AuthorizationAreaHandler(TemplatesMixin, LocalBase):
    """``/hub/authorize``: the list of sign-ups, with approve/withdraw/discard as form posts.

    Opened while logged out, it sends the visitor to the login page and back here
    (NativeAuthenticator answered a bare 403 with no way to log in).
    """

    @web.authenticated
    @admin_users_scope
    async def get(self):
        html = await self.render_template(
            "enertef-authorization-area.html",
            ask_email=self.authenticator.ask_email_on_signup,
            users=self.db.query(UserInfo).order_by(UserInfo.id).all(),
        )
        self.finish(html)


class ToggleAuthorizationHandler(TemplatesMixin, LocalBase):
    """``/hub/authorize/NAME``: an admin approves (or withdraws approval of) a user.

    Only a POST (with the hub's XSRF token) changes anything: NativeAuthenticator
    toggled on GET, so a link planted anywhere an admin browses could approve a
    sign-up. A GET just shows the user's row on the approval page.

    Approving makes the user's JupyterHub user (so the admin panel's group page
    takes the name before their first login) and starts preparing the user's
    workbench in the background (:mod:`enertef_hub.preparation`), so their first
    spawn finds it ready.
    Withdrawing an approval ends everything the user holds at once
    (:func:`enertef_hub.approval.withdraw_access`): servers, every hub token and
    login cookie, database and storage access (data kept).
    """

    @web.authenticated
    @admin_users_scope
    async def get(self, slug):
        self.redirect(self.hub.base_url + "authorize#" + url_escape(slug))

    @admin_users_scope
    async def post(self, slug):
        info = UserInfo.find(self.db, slug)
        if info is None:
            raise web.HTTPError(404, "No sign-up with this name exists.")
        info = UserInfo.change_authorization(self.db, slug)
        log_event(
            self.log,
            "approved" if info.is_authorized else "approval-withdrawn",
            info.username,
            actor=self.current_user.name,
        )
        if info.is_authorized:
            # Their hub user now, not at the first login: the admin can put them in a group at once.
            await ensure_hub_user(self, info.username)
        if info.is_authorized and self.authenticator.prepare_on_approval:
            prepare_in_background(self.authenticator.workbench, info.username, self.current_user.name, self.log)
        if not info.is_authorized:
            try:
                await withdraw_access(self, info.username)
            except EnerTEFError as error:
                raise web.HTTPError(
                    503,
                    f"Approval of {info.username} was withdrawn and their servers, tokens and"
                    f" sessions ended, but suspending their database and storage access did not"
                    f" finish: {error} Run `enertef-hub suspend {info.username}` once the cause"
                    " is fixed.",
                ) from error
        self.redirect(self.hub.base_url + "authorize#" + url_escape(slug))


class DiscardHandler(TemplatesMixin, NativeDiscardHandler):
    """``/hub/discard/NAME``: an admin discards a sign-up that was never approved (POST only)."""

    @web.authenticated
    @admin_users_scope
    async def get(self, user_name):
        self.redirect(self.hub.base_url + "authorize#" + url_escape(user_name))

    @admin_users_scope
    async def post(self, user_name):
        info = self.authenticator.get_user(user_name)
        if info is not None and not info.is_authorized:
            hub_user = self.users.get(info.username)
            if hub_user is not None and hub_user.running:
                await self.stop_single_user(hub_user)
            target = hub_user if hub_user is not None else _NamedUser(info.username)
            await maybe_future(self.authenticator.delete_user(target, actor=self.current_user.name))
            if hub_user is not None:
                self.users.delete(info.username)
        self.redirect(self.hub.base_url + "authorize")


class _NamedUser:
    """Stand-in for a hub user that exists only as a sign-up (no hub account yet)."""

    def __init__(self, name: str):
        self.name = name
