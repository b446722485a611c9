"""Withdrawn approval: everything the user holds stops working, their data stays.

When an admin withdraws a user's approval, the hub session alone is not enough:
a personal API token, the server's own token, a running server (and, on one
machine, processes it left behind) and the database and storage credentials in
that server's environment would all keep working. :func:`withdraw_access` ends
each of them; :func:`spawn_allowed` keeps a server from being started (by the
user with a token minted earlier, or by an admin) while the user is unapproved.
Approving the user again needs nothing more: the next spawn provisions fresh
credentials for the kept store and bucket.

Approval also makes the user's JupyterHub user (:func:`ensure_hub_user`), which
JupyterHub itself makes only at the first login: until then the admin panel's group
page refuses the name ("not a valid JupyterHub user"), so a newcomer could not be put
in a team before logging in once. :func:`ensure_hub_users_of_approved` does the same,
at hub start, for accounts approved before the hub did this.
"""

from __future__ import annotations

import asyncio
import inspect

from jupyterhub import orm, roles
from jupyterhub.utils import maybe_future, new_token
from nativeauthenticator.orm import UserInfo

from .events import log_event
from .preparation import stop_preparing


async def ensure_hub_user(handler, username: str):
    """The JupyterHub user of an approved ``username``, made now if they never logged in.

    Made as the admin panel's "Add users" (``POST /hub/api/users``) and a first login
    make it: the hub's ``user_from_username`` (the user row with its default roles, in
    the hub's user registry) and ``Authenticator.add_user``.
    """
    user = handler.find_user(username)
    if user is not None:
        return user
    user = handler.user_from_username(username)
    await maybe_future(handler.authenticator.add_user(user))
    log_event(handler.log, "hub-user-created", username, actor=handler.current_user.name)
    return user


def ensure_hub_users_of_approved(db, authenticator, log) -> list[str]:
    """At hub start: a JupyterHub user for every approved sign-up that has none; returns their names.

    Only approved sign-ups count: a user deleted in the admin panel has no sign-up
    left (deletion removes it), and a suspended one is not approved, so neither is
    made again. Blocked names (``Authenticator.blocked_users``) are left alone.
    Called once the hub's roles exist (``get_handlers``), before the hub loads its
    users' spawners, which then include these.
    """
    have = {name for (name,) in db.query(orm.User.name)}
    approved = db.query(UserInfo.username).filter(UserInfo.is_authorized.is_(True)).order_by(UserInfo.id)
    made = []
    for (username,) in approved:
        if username in have or username in authenticator.blocked_users:
            continue
        if not authenticator.validate_username(username):
            log.warning("Approved sign-up %r has no valid JupyterHub name: no hub user made", username)
            continue
        user = orm.User(name=username)
        db.add(user)
        roles.assign_default_roles(db, entity=user)
        made.append(user)
    db.commit()
    for user in made:
        added = authenticator.add_user(user)
        if inspect.isawaitable(added):  # the hub is starting: its event loop runs it
            asyncio.ensure_future(added)
        log_event(log, "hub-user-created", user.name, actor="hub-start")
    return [user.name for user in made]


def spawn_allowed(authenticator, username: str) -> bool:
    """False while ``username`` has a sign-up that an admin has not approved (or withdrew).

    Admins in ``admin_users`` and users without a sign-up record (made by an admin
    through the REST API) may spawn, as ``EnerTEFAuthenticator.refresh_user`` says.
    Authenticators other than ours have no approvals: everybody may.
    """
    get_user = getattr(authenticator, "get_user", None)
    if get_user is None or username in getattr(authenticator, "admin_users", ()):
        return True
    info = get_user(username)
    return info is None or bool(info.is_authorized)


async def withdraw_access(handler, username: str) -> dict:
    """Stop the user's servers, revoke every hub token and session, suspend store and storage.

    ``handler`` is the admin's request handler (it holds the hub's database and
    server registry). The hub-side steps come first and cannot fail on a service
    outage, so the user is locked out of the hub even when PostgreSQL or MinIO is
    down; in that case the raised error says what is left to do.
    """
    done = {"servers_stopped": 0, "tokens_revoked": 0}
    # A preparation started at approval must not give access back after this.
    await stop_preparing(username)
    user = handler.users.get(username)
    if user is not None:
        for name, spawner in list(user.spawners.items()):
            if spawner.active:
                await handler.stop_single_user(user, name)
                done["servers_stopped"] += 1
            end_processes = getattr(spawner, "end_user_processes", None)
            if end_processes is not None:
                # One machine: processes the user detached from the server outlive its stop.
                await maybe_future(end_processes())
        # Every API token (personal ones, the servers', OAuth tokens of services):
        # a token minted while approved must not outlive the approval.
        for token in list(user.orm_user.api_tokens):
            handler.db.delete(token)
            done["tokens_revoked"] += 1
        # Invalidates every login cookie of the user at once (JupyterHub finds the
        # user of a cookie by this id).
        user.orm_user.cookie_id = new_token()
        handler.db.commit()
    done.update(await handler.authenticator.workbench.suspend(username, actor=handler.current_user.name))
    log_event(handler.log, "access-withdrawn", username, actor=handler.current_user.name,
              servers_stopped=done["servers_stopped"], tokens_revoked=done["tokens_revoked"])
    return done
