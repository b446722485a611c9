"""JupyterHub's REST API handlers, extended: group edits reach team access at once, deletions name the admin.

JupyterHub has no hook for group edits: the admin panel's group page (5.5 and 6.x
alike) sends ``POST`` and ``DELETE /hub/api/groups/NAME/users`` (add, remove
members), ``POST /hub/api/groups/NAME`` (new group) and ``DELETE
/hub/api/groups/NAME`` (delete group); ``POST /hub/api/groups`` makes several groups
with members. Without more, team memberships followed at the member's next spawn or
the periodic sync (``enertef-team-sync``, every 60 s), so a removed member kept the
team's store and bucket until then.

The handlers here are JupyterHub's own (subclasses, routed ahead of them by
``EnerTEFAuthenticator.get_handlers``): each lets JupyterHub do and commit the change
as usual, then syncs the team access of every user whose groups changed
(``TeamSync.sync_user``, to exactly that user's groups as the hub's database now
says) before answering, for at most ``EnerTEFAuthenticator.team_sync_wait`` seconds;
what is not done by then finishes in the background. A sync that fails (a service is
down) is logged; the periodic sync retries it. A running server sees a new team at
once (``my_teams()`` asks the database), and a removed member's team login ends
before the admin panel shows the change.

``DELETE /hub/api/users/NAME`` (the admin panel's "Delete user") calls
``Authenticator.delete_user(user)`` with no word of who asked: :class:`UserAPIHandler`
puts the requester's name in :data:`acting_user` for the request, and
``EnerTEFAuthenticator.delete_user`` logs the deletion (and the revocation) in that
name instead of "system".
"""

from __future__ import annotations

import asyncio
import contextvars
import json

from jupyterhub import orm
from jupyterhub.apihandlers import groups, users
from jupyterhub.utils import maybe_future

from .errors import EnerTEFError
from .naming import InvalidNameError, normalize_team_name
from .preparation import run_in_background, running

#: The user (or service) whose API request is deleting a user, while it does.
acting_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("enertef_acting_user", default=None)

#: Users whose teams changed again while their sync ran: it runs once more.
_resync: set[str] = set()


def team_names(group_names, log=None) -> list[str]:
    """The valid team names among JupyterHub group names, sorted (others are logged and left out)."""
    teams = set()
    for name in group_names:
        try:
            teams.add(normalize_team_name(name))
        except InvalidNameError as exc:
            if log is not None:
                log.warning("Group %r is not used as a team: %s", name, exc)
    return sorted(teams)


def hub_teams_of(db, username: str, log=None) -> list[str]:
    """``username``'s teams as the hub's database says now (none if the user is gone)."""
    user = orm.User.find(db, username)
    return team_names([group.name for group in user.groups], log) if user is not None else []


def sync_member_soon(workbench, db, username: str, actor: str, log) -> asyncio.Task:
    """Sync ``username``'s team access to their groups now; returns the task doing it.

    One sync per user at a time: a change arriving while one runs makes it run again
    afterwards, reading the groups anew. The task is background work of the user
    (``preparation.run_in_background``), so deleting the user or withdrawing the
    approval cancels it before revoking.
    """
    _resync.add(username)
    return run_in_background(username, "team-sync", _sync_until_current(workbench, db, username, actor, log))


async def _sync_until_current(workbench, db, username: str, actor: str, log):
    preparing = running(username, "prepare")
    if preparing is not None:
        # Approved a moment ago: their account is being made. Synced before it exists,
        # the membership would be recorded without the team login (made at the spawn).
        await asyncio.wait([preparing])  # (never cancels it)
    while username in _resync:
        _resync.discard(username)
        teams = hub_teams_of(db, username, log)
        try:
            await workbench.teams.sync_user(username, teams, actor=actor)
        except (EnerTEFError, InvalidNameError) as exc:
            log.warning("Team access of %s not synced with their groups (%s): %s; the periodic team sync"
                        " (enertef-team-sync) tries again", username, ", ".join(teams) or "no team", exc)
            return
        except Exception:
            log.exception("Team access of %s not synced with their groups; the periodic team sync tries again",
                          username)
            return


class _SyncsTeams:
    """Mixin of the group handlers: after JupyterHub's change, sync the users it moved."""

    def _members(self, group_name: str) -> set[str]:
        group = orm.Group.find(self.db, name=group_name)
        return {user.name for user in group.users} if group is not None else set()

    async def _change_and_sync(self, group_names, change, *args):
        """Run JupyterHub's ``change(*args)``, then sync everyone who joined or left one of ``group_names``."""
        before = {name: self._members(name) for name in group_names}
        await maybe_future(change(*args))
        moved = set()
        for name in group_names:
            moved |= before[name] ^ self._members(name)
        if not moved:
            return
        authenticator = self.authenticator
        actor = self.current_user.name
        tasks = [sync_member_soon(authenticator.workbench, self.db, username, actor, self.log)
                 for username in sorted(moved)]
        _done, pending = await asyncio.wait(tasks, timeout=authenticator.team_sync_wait)
        if pending:
            self.log.info("Team access of %d user(s) still syncing after %s s; it goes on in the background",
                          len(pending), authenticator.team_sync_wait)


class GroupListAPIHandler(_SyncsTeams, groups.GroupListAPIHandler):
    """``POST /hub/api/groups``: groups made with members give those members the teams at once."""

    async def post(self):
        try:  # JupyterHub answers a bad body itself (after its scope check)
            names = json.loads(self.request.body or b"{}").get("groups") or []
        except (ValueError, AttributeError):
            names = []
        await self._change_and_sync([n for n in names if isinstance(n, str)], super().post)


class GroupAPIHandler(_SyncsTeams, groups.GroupAPIHandler):
    """``POST``/``DELETE /hub/api/groups/NAME``: a new group's members join, a deleted group's leave, at once."""

    async def post(self, group_name):
        await self._change_and_sync([group_name], super().post, group_name)

    async def delete(self, group_name):
        await self._change_and_sync([group_name], super().delete, group_name)


class GroupUsersAPIHandler(_SyncsTeams, groups.GroupUsersAPIHandler):
    """``POST``/``DELETE /hub/api/groups/NAME/users`` (the admin panel's group page): at once."""

    async def post(self, group_name):
        await self._change_and_sync([group_name], super().post, group_name)

    async def delete(self, group_name):
        await self._change_and_sync([group_name], super().delete, group_name)


class UserAPIHandler(users.UserAPIHandler):
    """``/hub/api/users/NAME``: JupyterHub's, with a deletion done in the requester's name."""

    async def delete(self, user_name):
        # The request's own task (and what it awaits) sees it; JupyterHub's scope check
        # still runs in super().delete before anything is done.
        token = acting_user.set(self.current_user.name if self.current_user is not None else None)
        try:
            await super().delete(user_name)
        finally:
            acting_user.reset(token)


def api_handlers() -> list[tuple[str, type]]:
    """Routes of these handlers (below the hub's prefix), ahead of JupyterHub's own for the same paths."""
    return [
        (r"/api/groups", GroupListAPIHandler),
        (r"/api/groups/([^/]+)", GroupAPIHandler),
        (r"/api/groups/([^/]+)/users", GroupUsersAPIHandler),
        (r"/api/users/([^/]+)", UserAPIHandler),
    ]
