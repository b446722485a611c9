"""Read JupyterHub's groups through its REST API (for ``enertef-hub sync``).

JupyterHub is the source of truth for teams: the admin panel and ``hub.loadGroups``
write groups there. This module only reads them, with a token that needs the
``list:groups`` and ``read:groups`` scopes (the sync service's role).
"""

from __future__ import annotations

import json
import os
import urllib.request

PAGINATION = "application/jupyterhub-pagination+json"


def fetch_groups(api_url: str | None = None, token: str | None = None, page_size: int = 200) -> dict[str, list[str]]:
    """Return ``{group name: [usernames]}`` of every group of the hub."""
    api_url = (api_url or os.environ.get("JUPYTERHUB_API_URL", "")).rstrip("/")
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        raise RuntimeError(
            "JupyterHub's API is unknown: set JUPYTERHUB_API_URL (e.g. http://hub:8081/hub/api) and"
            " JUPYTERHUB_API_TOKEN, or run this as a hub service."
        )
    groups: dict[str, list[str]] = {}
    offset = 0
    while True:
        request = urllib.request.Request(
            f"{api_url}/groups?offset={offset}&limit={page_size}",
            headers={"Authorization": f"token {token}", "Accept": PAGINATION},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.load(response)
        items = page["items"] if isinstance(page, dict) else page
        for group in items:
            groups[group["name"]] = list(group.get("users") or [])
        next_page = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
        if not next_page:
            return groups
        offset = next_page["offset"]
