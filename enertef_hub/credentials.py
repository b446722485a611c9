"""Per-user secrets derived from one hub key.

A user's database password and MinIO secret key are HMACs of the hub's secret key
(``ENERTEF_SECRET_KEY``) over who they are for. Nothing secret is stored: the same
inputs give the same secret on every spawn (long-running work keeps working), and
bumping the *generation* (an admin's rotation) or the *incarnation* (a deleted and
re-created account) gives an unrelated one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from .naming import UserResources

_ALPHABET_SAFE = str.maketrans({"-": "a", "_": "b"})


def derive_secret(key: str, purpose: str, resources: UserResources, generation: int, length: int = 40) -> str:
    """Return a secret of ``length`` letters and digits for one purpose of one user.

    ``purpose`` separates the database password from the MinIO key so that one
    never reveals the other. The result is URL- and shell-safe on purpose: it goes
    into connection URIs and environment variables.
    """
    if not key:
        raise ValueError("the secret key is empty")
    message = f"{purpose}\0{resources.username}\0{resources.incarnation}\0{generation}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    digest += hmac.new(key.encode(), message + b"\1", hashlib.sha256).digest()
    text = base64.urlsafe_b64encode(digest).decode().rstrip("=").translate(_ALPHABET_SAFE)
    return text[:length]
