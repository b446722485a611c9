"""The admins' accounts page in the hub: ``/hub/enertef/accounts``.

Built like the approval page (a hub handler rendering a template that extends the
hub's ``page.html``), not as a separate server, so it shares the hub's login,
scopes and XSRF protection. It lists every account the hub or the registry knows
(state, incarnations, PostgreSQL and MinIO sizes, teams, last activity), a page at a
time with a search and a state filter (sizes are read for the page only), and offers
restore, purge, rotate and suspend. Each action has a confirmation page (a plain
GET that changes nothing) whose form POST, with the hub's XSRF token and a
``confirm`` field, does it; purging asks for the username to be typed.

:func:`install_admin_pages` also adds, at hub start-up, what these pages need
around them: links to them in the hub's navigation bar for admins, a note on
JupyterHub's own admin panel saying what deleting a user does to the data, with a
confirmation dialog before the panel deletes anyone (``enertef-admin-panel.js``,
served by :class:`StaticHandler`), and an admin landing page after login instead of
spawning the admin's own server.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import timezone

from jinja2 import BaseLoader, FileSystemLoader
from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from nativeauthenticator.orm import UserInfo
from tornado import web

from .approval import withdraw_access
from .errors import EnerTEFError, ServiceUnavailableError
from .events import log_event
from .handlers import TEMPLATE_DIR, TemplatesMixin
from .holdings import Holdings
from .naming import InvalidNameError, make_user_resources, normalize_username
from .usage import HOME_SIZE_MAX_AGE, format_cpu, format_memory, format_size, home_quota_status, local_usage, parse_size


#: Path of the accounts page below the hub's base URL.
ACCOUNTS_PATH = "enertef/accounts"

#: Hub templates that we extend under their own name; the originals stay reachable
#: under ``ORIGINAL_PREFIX`` (so an operator's own ``page.html`` is extended, not lost).
OVERRIDES = {"page.html": "enertef-page.html", "admin.html": "enertef-admin-panel.html",
             "error.html": "enertef-error.html"}
ORIGINAL_PREFIX = "enertef-hub-original/"

#: The scope that opens these pages (and the approval page): admins have it.
ADMIN_SCOPE = "admin:users"

ACTIONS = ("restore", "purge", "rotate", "suspend")

#: Path of our static files (scripts of the hub's own pages) below the hub's base URL.
STATIC_PATH = "enertef/static"
#: The files served there (kept beside the templates, as package data), with their type.
STATIC_FILES = {"enertef-admin-panel.js": "text/javascript; charset=UTF-8"}


def static_version() -> str:
    """A digest of the static files, for their URLs (``?v=``): a new release is fetched anew."""
    digest = hashlib.sha256()
    for name in sorted(STATIC_FILES):
        with open(os.path.join(TEMPLATE_DIR, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


class HubTemplatesLoader(BaseLoader):
    """The hub's template loader with ``page.html`` and ``admin.html`` extended by ours."""

    def __init__(self, inner: BaseLoader):
        self.inner = inner
        self.ours = FileSystemLoader([TEMPLATE_DIR])

    def get_source(self, environment, template):
        if template in OVERRIDES:
            return self.ours.get_source(environment, OVERRIDES[template])
        if template.startswith(ORIGINAL_PREFIX):
            return self.inner.get_source(environment, template[len(ORIGINAL_PREFIX):])
        return self.inner.get_source(environment, template)

    def list_templates(self):
        return self.inner.list_templates()


def deletion_outcome(authenticator) -> str:
    """What deleting a user in JupyterHub's admin panel does to the data: kept, purged or untouched."""
    if not getattr(authenticator, "revoke_on_delete", False):
        return "untouched"
    return "purged" if authenticator.workbench.purge_on_delete else "kept"


def admin_default_url(handler) -> str:
    """Where a logged-in admin lands (``JupyterHub.default_url``): the accounts page.

    Admins then do not start a server (and get a store) of their own just by
    logging in. Everyone else gets "" and so JupyterHub's usual target.
    """
    user = handler.current_user
    if user is None:
        return ""
    if user.admin or ADMIN_SCOPE in (getattr(handler, "parsed_scopes", None) or {}):
        return handler.hub.base_url + ACCOUNTS_PATH
    return ""


def install_admin_pages(app, authenticator):
    """Hook the admin pages into a starting hub (``get_handlers`` calls this with the app).

    JupyterHub builds its Jinja environments and settings before it asks the
    authenticator for handlers, so both can be adjusted here, before any page is
    rendered: the loaders learn our ``page.html``/``admin.html`` extensions, the
    templates get the deletion outcome, and admins land on the accounts page unless
    the operator set ``c.JupyterHub.default_url``.
    """
    settings = getattr(app, "tornado_settings", None) or {}
    for key in ("jinja2_env", "jinja2_env_sync"):
        env = settings.get(key)
        if env is None or isinstance(env.loader, HubTemplatesLoader):
            continue
        env.loader = HubTemplatesLoader(env.loader)
        env.globals["enertef_deletion"] = deletion_outcome(authenticator)
        env.globals["enertef_accounts_path"] = ACCOUNTS_PATH
        env.globals["enertef_static_path"] = STATIC_PATH
        env.globals["enertef_static_version"] = static_version()
    if settings and not settings.get("default_url"):
        settings["default_url"] = admin_default_url


def _when(value) -> str:
    """A timestamp as ``2026-11-27 05:20 UTC`` (the hub keeps naive UTC datetimes)."""
    if value is None:
        return "never"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


#: Accounts per page of the accounts page, unless ``?per_page=`` asks otherwise (up to
#: MAX_PER_PAGE: each store on a page costs PostgreSQL ~2-4 ms to measure).
PER_PAGE = 100
MAX_PER_PAGE = 500

#: The states an account can be shown in (AccountsBase._finish), in the order of the filter.
STATES = ("active", "suspended", "deleted, data kept", "active, no store yet", "purged",
          "waiting for approval", "no store yet", "signed up")


def select_page(accounts: list[dict], query: str = "", state: str = "", offset: int = 0,
                limit: int | None = PER_PAGE) -> tuple[list[dict], int, dict[str, int], int]:
    """The accounts to show: ``(page, how many match, {state: count of all accounts}, offset)`` (pure).

    ``query`` matches part of the username (case-insensitive), ``state`` one of
    :data:`STATES` exactly; ``limit`` None shows every match. ``accounts`` is sorted.
    An offset past the end gives the last page (and its offset).
    """
    counts: dict[str, int] = {}
    for a in accounts:
        counts[a["state"]] = counts.get(a["state"], 0) + 1
    query = query.strip().lower()
    matches = [a for a in accounts if (not query or query in a["name"]) and (not state or a["state"] == state)]
    if limit is None:
        return matches, len(matches), counts, 0
    offset = max(0, offset)
    if offset >= len(matches):
        offset = max(0, (len(matches) - 1) // limit * limit)
    return matches[offset:offset + limit], len(matches), counts, offset


async def account_sizes(workbench, schemas: list[str], buckets: list[str]) -> tuple[dict, str | None]:
    """Sizes of the given stores and buckets, as ``({schema: (bytes, over soft limit), bucket:
    (bytes, objects)}, when MinIO last scanned)``.

    Only for the accounts on the page: PostgreSQL measures a store by a stat() of
    each file of each table and index (an MLflow store has ~60), which for every
    store of a hub with 1,500 accounts took seconds. One catalogue query; MinIO's
    figures come from one admin call, its data-usage scanner's (minutes behind the
    latest writes, as in MinIO's console). ``enertef-hub usage`` lists every bucket
    instead, for exact figures.
    """
    async def postgres() -> dict:
        if not schemas:
            return {}
        soft = parse_size(workbench.quotas.postgres_soft_limit)
        async with workbench.postgres.connection() as conn:
            cur = await conn.execute(
                "SELECT n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_namespace n"
                " LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm')"
                " WHERE n.nspname = ANY(%s) GROUP BY n.nspname",
                (schemas,),
            )
            return {schema: (int(size), bool(soft) and int(size) > soft) for schema, size in await cur.fetchall()}

    async def minio() -> dict:
        if not buckets:
            return {}
        return await workbench.minio.data_usage()

    pg_sizes, usage = await asyncio.gather(postgres(), minio())  # both at once
    sizes = dict(pg_sizes)
    wanted = set(buckets)
    for bucket, info in (usage.get("bucketsUsageInfo") or {}).items():
        if bucket in wanted:
            sizes[bucket] = (int(info.get("size") or 0), int(info.get("objectsCount") or 0))
    scanned = usage.get("lastUpdate")
    return sizes, scanned[:19].replace("T", " ") + " UTC" if scanned else None


def _entry(entries: dict[str, dict], name: str) -> dict:
    """``name``'s entry of the account list, made empty the first time."""
    if name not in entries:
        entries[name] = {"name": name, "hub_account": False, "admin": False, "approved": None,
                         "last_activity": "never", "running": False, "incarnations": [], "teams": []}
    return entries[name]


class AccountsBase(TemplatesMixin, BaseHandler):
    """What both account pages share: the Workbench, the account list, rendering."""

    @property
    def workbench(self):
        return self.authenticator.workbench

    def _hub_entries(self) -> dict[str, dict]:
        """One entry per hub user and sign-up, in three queries of the hub database (none per user)."""
        entries: dict[str, dict] = {}

        def entry(name):
            return _entry(entries, name)

        running = {uid for (uid,) in self.db.query(orm.Spawner.user_id).filter(orm.Spawner.server_id.isnot(None))}
        users = self.db.query(orm.User.id, orm.User.name, orm.User.admin, orm.User.last_activity)
        for uid, name, admin, last_activity in users:
            entry(name).update(hub_account=True, admin=bool(admin), last_activity=_when(last_activity),
                               running=uid in running)
        for username, authorized in self.db.query(UserInfo.username, UserInfo.is_authorized):
            entry(username)["approved"] = bool(authorized)
        return entries

    async def collect_accounts(self, query: str = "", state: str = "", offset: int = 0,
                               limit: int | None = PER_PAGE, exact: str | None = None) -> dict:
        """The accounts of one page with their sizes, and what the page says around them.

        One entry per username (hub user, sign-up or registry name); every account's
        state is known (for the filter's counts), but sizes are read only for the
        page's accounts. ``exact``: only that username (a confirmation page).
        Returns ``{"accounts", "total", "counts", "offset", "error", "minio_scanned"}``.
        """
        entries = self._hub_entries()

        def entry(name):
            return _entry(entries, name)

        problem, holdings = None, Holdings(users=(), teams=())
        try:
            holdings = await self.workbench.holdings()
        except Exception as exc:  # the page still lists the hub's accounts
            self.log.warning("Accounts page: the account registry is unavailable: %s", exc)
            problem = f"The account registry could not be read: {exc}"
        for team in holdings.teams:
            for member in team.members:
                entry(member)["teams"].append(team.team)
        for user in holdings.users:
            entry(user.username)["incarnations"].append(
                {"incarnation": user.incarnation, "state": user.state, "holding": user})
        accounts = self._finish(entries)
        if exact is not None:
            page = [a for a in accounts if a["name"] == exact]
            total, counts, offset = len(page), {}, 0
        else:
            page, total, counts, offset = select_page(accounts, query, state, offset, limit)

        for a in page:  # names and dates only for the page's accounts
            for i in a["incarnations"]:
                holding = i.pop("holding")
                row, resources = holding.row, holding.resources
                i.update(schema=resources.schema, bucket=resources.bucket, created=_when(row.get("created_at")),
                         deleted=_when(row["deleted_at"]) if row.get("deleted_at") else "")
        shown = [i for a in page for i in a["incarnations"] if i["state"] != "purged"]
        scanned = None
        try:
            sizes, scanned = await account_sizes(self.workbench, [i["schema"] for i in shown],
                                                 [i["bucket"] for i in shown])
        except Exception as exc:  # the page still lists every account, without sizes
            self.log.warning("Accounts page: sizes unavailable: %s", exc)
            problem, sizes = problem or f"Sizes could not be read: {exc}", {}
        for i in shown:
            pg_bytes, over = sizes.get(i["schema"], (None, False))
            bucket = sizes.get(i["bucket"])
            i.update(postgres=format_size(pg_bytes), postgres_over=over,
                     minio="not scanned yet" if bucket is None else format_size(bucket[0]),
                     objects="-" if bucket is None else bucket[1])
        await self._add_local_usage(page)
        return {"accounts": page, "total": total, "counts": counts, "offset": offset, "error": problem,
                "minio_scanned": scanned}

    async def _add_local_usage(self, page: list[dict]):
        """Single machine: what the page's running servers use now (cgroups), and home sizes.

        Read in a worker thread (a 0.3 s CPU sample, a walk of each home; sizes are
        reused for HOME_SIZE_MAX_AGE s); nothing on Kubernetes, where neither is here.
        """
        for a in page:
            a.update(server=None, memory="-", cpu="-", home=None, home_size="-", home_over=False)
        if "Kube" in getattr(self.settings.get("spawner_class"), "__name__", ""):
            return
        config = self.authenticator.config
        try:
            servers, homes = await asyncio.to_thread(
                local_usage, config, [a["name"] for a in page if a["hub_account"]], HOME_SIZE_MAX_AGE)
        except Exception as exc:  # the page still lists every account
            self.log.warning("Accounts page: server usage and home sizes unavailable: %s", exc)
            return
        soft = parse_size(self.workbench.quotas.home_soft_limit)
        for a in page:
            server, home = servers.get(a["name"]), homes.get(a["name"])
            a.update(server=server, memory=format_memory(server), cpu=format_cpu(server), home=home,
                     home_size=format_size(home) if home is not None else "-",
                     home_over=bool(soft) and home is not None and home > soft)
        self._home_note = home_quota_status(config) if homes else ""

    @staticmethod
    def _finish(entries: dict[str, dict]) -> list[dict]:
        for e in entries.values():
            states = [i["state"] for i in e["incarnations"]]
            if "active" in states:
                e["state"] = "suspended" if e["approved"] is False else "active"
            elif "deleted" in states:
                e["state"] = "deleted, data kept" if not e["hub_account"] else "active, no store yet"
            elif states:
                e["state"] = "purged" if not e["hub_account"] else "active, no store yet"
            elif e["approved"] is False:
                e["state"] = "waiting for approval"
            else:
                e["state"] = "no store yet" if e["hub_account"] else "signed up"
            e["active"] = next((i for i in e["incarnations"] if i["state"] == "active"), None)
            e["kept"] = [i for i in e["incarnations"] if i["state"] == "deleted"]
            e["teams"] = sorted(e["teams"])
        return sorted(entries.values(), key=lambda e: e["name"])

    def _listing(self) -> dict:
        """Search, state filter and page of the request (``?q=&state=&start=&per_page=``)."""
        try:
            limit = min(max(int(self.get_argument("per_page", "")), 1), MAX_PER_PAGE)
        except ValueError:
            limit = PER_PAGE
        try:
            offset = max(int(self.get_argument("start", "0")), 0)
        except ValueError:
            offset = 0
        state = self.get_argument("state", "")
        return {"query": self.get_argument("q", "").strip().lower()[:64],
                "state": state if state in STATES else "", "offset": offset, "limit": limit}

    async def render_accounts(self, message=None, error=None, listing: dict | None = None):
        listing = listing or {"query": "", "state": "", "offset": 0, "limit": PER_PAGE}
        found = await self.collect_accounts(**listing)
        html = await self.render_template(
            "enertef-accounts.html",
            accounts=found["accounts"],
            total=found["total"],
            counts=found["counts"],
            states=STATES,
            listing={**listing, "offset": found["offset"]},
            message=message,
            error=error or found["error"],
            deletion=deletion_outcome(self.authenticator),
            minio_scanned=found["minio_scanned"],
            home_note=getattr(self, "_home_note", ""),
            home_soft_limit=self.workbench.quotas.home_soft_limit,
            accounts_url=self.hub.base_url + ACCOUNTS_PATH,
        )
        self.finish(html)


class AccountsHandler(AccountsBase):
    """``/hub/enertef/accounts``: the accounts, a page at a time, with sizes and actions (admins only)."""

    @web.authenticated  # logged out: to the login page and back, not a bare 403
    @needs_scope(ADMIN_SCOPE)
    async def get(self):
        await self.render_accounts(listing=self._listing())


class AccountActionHandler(AccountsBase):
    """``/hub/enertef/accounts/NAME/ACTION``: GET asks for confirmation, the form POST acts.

    A GET only renders the confirmation page; nothing changes without a POST that
    carries the hub's XSRF token (checked by JupyterHub for every form post) and a
    ``confirm`` field equal to the username (typed by the admin for a purge).
    """

    def _target(self, name: str, action: str) -> tuple[str, int | None]:
        if action not in ACTIONS:
            raise web.HTTPError(404)
        try:
            username = normalize_username(name)
        except InvalidNameError:
            raise web.HTTPError(404, "No account has this name.") from None
        incarnation = None
        if action in ("restore", "purge"):
            try:
                incarnation = int(self.get_argument("incarnation"))
            except ValueError:
                raise web.HTTPError(400, "The incarnation must be a number.") from None
        return username, incarnation

    async def _confirm_page(self, username, action, incarnation, error=None):
        found = await self.collect_accounts(exact=username)
        account, problem = (found["accounts"] or [None])[0], found["error"]
        if account is None:
            raise web.HTTPError(404, f"No account named {username}.")
        resources = make_user_resources(username, incarnation) if incarnation is not None else None
        html = await self.render_template(
            "enertef-account-confirm.html",
            account=account,
            action=action,
            incarnation=incarnation,
            resources=resources,
            error=error or problem,
            accounts_url=self.hub.base_url + ACCOUNTS_PATH,
        )
        self.finish(html)

    @web.authenticated
    @needs_scope(ADMIN_SCOPE)
    async def get(self, name, action):
        username, incarnation = self._target(name, action)
        await self._confirm_page(username, action, incarnation)

    @web.authenticated
    @needs_scope(ADMIN_SCOPE)
    async def post(self, name, action):
        username, incarnation = self._target(name, action)
        if self.get_body_argument("confirm", "").strip().lower() != username:
            self.set_status(400)
            what = "Type the username to confirm." if action == "purge" else "Confirm on this page."
            await self._confirm_page(username, action, incarnation, error=f"Nothing was done: {what}")
            return
        actor = self.current_user.name
        try:
            message = await getattr(self, f"_{action}")(username, incarnation, actor)
        except EnerTEFError as error:
            self.log.error("Accounts page: %s of %s failed: %s", action, username, error)
            self.set_status(503 if isinstance(error, ServiceUnavailableError) else 409)
            await self.render_accounts(error=f"{action.capitalize()} of {username} failed: {error}",
                                       listing=self._about(username))
            return
        await self.render_accounts(message=message, listing=self._about(username))

    @staticmethod
    def _about(username: str) -> dict:
        """The listing shown after an action: the account acted on (a link leads back to all)."""
        return {"query": username, "state": "", "offset": 0, "limit": PER_PAGE}

    async def _stop_servers(self, username: str) -> int:
        """Stop the user's running servers (their credentials were just replaced)."""
        user = self.users.get(username)
        stopped = 0
        if user is not None:
            for server_name, spawner in list(user.spawners.items()):
                if spawner.active:
                    await self.stop_single_user(user, server_name)
                    stopped += 1
        return stopped

    async def _restore(self, username, incarnation, actor):
        result = await self.workbench.restore(username, incarnation, actor=actor)
        stopped = await self._stop_servers(username)
        text = (f"Restored {username}: incarnation {incarnation} (schema {result.resources.schema},"
                f" bucket {result.resources.bucket}) is active again, with new credentials.")
        if stopped:
            text += " Their running server was stopped; the next start opens the restored data."
        if self.users.get(username) is None or self.authenticator.get_user(username) is None:
            text += (f" {username} has no hub account: they sign up again under this name and you"
                     " approve them; their first server opens the restored data.")
        return text

    async def _purge(self, username, incarnation, actor):
        await self.workbench.purge(username, incarnation, actor=actor)
        resources = make_user_resources(username, incarnation)
        return (f"Purged {username}'s incarnation {incarnation}: schema {resources.schema}, its role"
                f" and bucket {resources.bucket} are deleted.")

    async def _rotate(self, username, incarnation, actor):
        await self.workbench.rotate(username, actor=actor)
        stopped = await self._stop_servers(username)
        return (f"New credentials for {username}; the old keys, service accounts and database sessions"
                f" ended.{' Their running server was stopped.' if stopped else ''}")

    async def _suspend(self, username, incarnation, actor):
        if self.authenticator.is_admin_name(username):
            raise web.HTTPError(400, f"{username} is an administrator (Authenticator.admin_users):"
                                     " remove them from admin_users first.")
        info = self.authenticator.get_user(username)
        if info is not None and info.is_authorized:
            UserInfo.change_authorization(self.db, username)
            log_event(self.log, "approval-withdrawn", username, actor=actor)
        done = await withdraw_access(self, username)
        return (f"Suspended {username}: approval withdrawn, {done['servers_stopped']} server(s) stopped,"
                f" {done['tokens_revoked']} token(s) revoked, database and storage access taken away;"
                " the data is kept. Approve them again on the approval page to give access back.")


class StaticHandler(BaseHandler):
    """``/hub/enertef/static/NAME``: our scripts, from the hub's own origin and with its headers.

    Served by the hub itself (not inline), so a Content-Security-Policy of
    ``script-src 'self'`` allows them; JupyterHub's default policy has no script-src
    and no nonce. Public, like the hub's own static files: they hold no data.
    """

    def get_content_type(self):
        return "text/javascript; charset=UTF-8"

    def get(self, name):
        if name not in STATIC_FILES:
            raise web.HTTPError(404)
        with open(os.path.join(TEMPLATE_DIR, name), "rb") as f:
            body = f.read()
        self.set_header("Content-Type", STATIC_FILES[name])
        self.set_header("X-Content-Type-Options", "nosniff")
        # The pages link ?v=<digest>: cache that for good; anything else is revalidated (ETag).
        versioned = self.get_argument("v", "") == static_version()
        self.set_header("Cache-Control", "max-age=31536000, immutable" if versioned else "no-cache")
        self.finish(body)


def admin_handlers() -> list[tuple[str, type]]:
    """Routes of the admin pages (below the hub's base URL)."""
    return [
        (r"/" + STATIC_PATH + r"/([A-Za-z0-9._-]+)", StaticHandler),
        (r"/" + ACCOUNTS_PATH, AccountsHandler),
        (r"/" + ACCOUNTS_PATH + r"/([^/]+)/([a-z]+)", AccountActionHandler),
    ]
