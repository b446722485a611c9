"""Fresh names, so that runs never share accounts (PostgreSQL and MinIO outlive every test)."""

from __future__ import annotations

import random
import string


def unique_name(prefix: str) -> str:
    """``prefix`` and eight random letters or digits: a fresh valid username or team name.

    The prefix is kept as given (a test may type a capital: names are case-insensitive).
    """
    return prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
