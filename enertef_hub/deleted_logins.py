"""Password hashes of deleted accounts, so their owners are told the account is gone.

Deleting a user removes the sign-up (NativeAuthenticator's ``users_info`` row, with
the password hash), so the owner's next login read "Invalid username or password",
as for a name that never existed, and they could not tell a typo from a deletion.
The hash is kept here instead, in a table of the hub's database
(``enertef_deleted_logins``), until the name signs up again: a login with the right
password is told the account was deleted, any other login still reads "Invalid
username or password", so nobody without the password learns that the name existed.
"""

from __future__ import annotations

import functools
import secrets
from datetime import datetime, timezone

import bcrypt
from sqlalchemy import Column, DateTime, LargeBinary, MetaData, String, Table, delete, insert, select

_metadata = MetaData()

#: One row per deleted username: its last password hash, when and by whom it was deleted.
deleted_logins = Table(
    "enertef_deleted_logins",
    _metadata,
    Column("username", String(255), primary_key=True),
    Column("password", LargeBinary, nullable=False),
    Column("deleted_at", DateTime, nullable=False),
    Column("deleted_by", String(255)),
)


def ensure_table(db) -> None:
    """Create the table in the hub's database unless it exists (as NativeAuthenticator makes its own)."""
    deleted_logins.create(db.get_bind(), checkfirst=True)


def remember(db, username: str, password_hash: bytes, actor: str | None) -> None:
    """Keep ``username``'s password hash as deleted (committed with the caller's deletion)."""
    db.execute(delete(deleted_logins).where(deleted_logins.c.username == username))
    db.execute(insert(deleted_logins).values(
        username=username, password=password_hash, deleted_by=actor,
        deleted_at=datetime.now(timezone.utc).replace(tzinfo=None)))


def forget(db, username: str) -> None:
    """Drop the kept hash of ``username`` (the name signed up again); commits."""
    db.execute(delete(deleted_logins).where(deleted_logins.c.username == username))
    db.commit()


def was_deleted_with(db, username: str, password: str) -> bool:
    """Whether ``username`` was deleted and ``password`` was its password.

    A name with no deleted account costs one password check too (against a hash of
    nothing), so the answer's time does not tell which names were deleted.
    """
    row = db.execute(select(deleted_logins.c.password).where(deleted_logins.c.username == username)).first()
    if row is None:
        check_against_nothing(password)
        return False
    try:
        encoded = password.encode()
    except ValueError:  # not UTF-8: never a stored password
        return False
    # bcrypt < 5 would compare only the first 72 bytes (>= 5 raises): no stored password is longer.
    return len(encoded) <= 72 and bcrypt.checkpw(encoded, bytes(row[0]))


@functools.cache
def _hash_of_nothing() -> bytes:
    """A bcrypt hash with NativeAuthenticator's cost (``bcrypt.gensalt()``), of a password nobody has."""
    return bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt())


def check_against_nothing(password) -> None:
    """Spend what checking ``password`` against a stored hash costs, and match nothing.

    For names with no account (or no deleted one): a login's answer would otherwise
    come about 0.2 s sooner for them than for real names, which tells a stranger
    which names exist.
    """
    encoded = password.encode("utf-8", "surrogatepass") if isinstance(password, str) else b""
    bcrypt.checkpw(encoded[:72], _hash_of_nothing())
