"""Withdrawn approval: everything the user holds stops working, their data stays.

When an admin withdraws a user's approval, the hub session alone is not enough:
a personal API token, the server's own token, a running server (and, on one
machine, processes it left behind) and the database and storage credentials in
that server's environment would all keep working. :func:`withdraw_access` ends
each of them; :func:`spawn_allowed` keeps a server from being started (by the
user with a token minted earlier, or by an admin) while the user is unapproved.
Approving the user again needs nothing more: the next spawn provisions fresh
credentials for the kept store and bucket.
"""

from __future__ import annotations

from jupyterhub.utils import maybe_future, new_token

from .events import log_event
from .preparation import stop_preparing


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
