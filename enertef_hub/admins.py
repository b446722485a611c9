"""Admin accounts made by the operator: ``enertef-hub admin-password NAME``.

The hub creates missing admin accounts at start from
``EnerTEFAuthenticator.admin_password``; this is the operator's other door, for a
hub without that setting or an admin who lost the password: it writes the
account straight into the hub's database (NativeAuthenticator's ``users_info``
table), approved, with a new password. Only a name listed in
``Authenticator.admin_users`` is accepted, so the command cannot make an
ordinary user an admin by accident (nor an admin out of a typo).
"""

from __future__ import annotations

import secrets

import bcrypt
from nativeauthenticator.orm import UserInfo
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from .naming import normalize_username

#: JupyterHub's own default for ``JupyterHub.db_url`` (relative to where it runs).
DEFAULT_DB_URL = "sqlite:///jupyterhub.sqlite"


def generate_password() -> str:
    """A new random password (20 URL-safe characters, ~120 bits)."""
    return secrets.token_urlsafe(15)


def set_admin_password(db_url: str, admin_users, name: str, password: str) -> bool:
    """Create or reset admin ``name``'s account in the hub database; True if created.

    Raises ValueError (a message for the operator) when ``name`` is not one of
    ``admin_users`` or the password is empty.
    """
    name = normalize_username(name)
    admins = {normalize_username(admin) for admin in admin_users or ()}
    if name not in admins:
        raise ValueError(
            f"'{name}' is not in c.Authenticator.admin_users ({', '.join(sorted(admins)) or 'none'}):"
            " add it there first (ENERTEF_ADMIN_USERS on one machine, hub.config on Kubernetes)."
        )
    if not password:
        raise ValueError("the password is empty")
    engine = create_engine(db_url)
    try:
        UserInfo.__table__.create(engine, checkfirst=True)
        with sessionmaker(bind=engine)() as db:
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
            info = db.query(UserInfo).filter_by(username=name).first()
            created = info is None
            if created:
                db.add(UserInfo(username=name, password=hashed, is_authorized=True))
            else:
                info.password = hashed
                info.is_authorized = True
            db.commit()
    finally:
        engine.dispose()
    return created
