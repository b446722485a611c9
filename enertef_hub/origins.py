"""Per-user origins: each user's server on a host name of its own.

Without ``JupyterHub.subdomain_host`` every user's server shares the hub's origin,
so any page a user serves (any code in her server can serve one) runs with a
visitor's hub session: it reads the hub's XSRF token and acts as the visitor,
admins included. JupyterHub's security documentation names the defence: serve
each user from ``<name>.<hub host>``. This module holds the one rule that turns
a hub URL into those settings, for the single-machine config, the e2e hub and
the documentation of the chart (``chart-values/jupyterhub.yaml`` carries the
same values literally).

``http://localhost:PORT`` needs no DNS: browsers resolve every ``*.localhost``
name to loopback. Any other host name needs wildcard DNS (``*.hub.example.org``)
and, for https, a wildcard certificate.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def is_loopback_name(hostname: str) -> bool:
    """Whether browsers treat ``hostname`` as loopback (``localhost`` or ``*.localhost``)."""
    hostname = hostname.lower().rstrip(".")
    return hostname == "localhost" or hostname.endswith(".localhost")


def user_origin_settings(hub_url: str) -> dict[str, object]:
    """``c.JupyterHub`` settings that put each user's server on ``<name>.<host of hub_url>``.

    ``hub_url`` is the URL people open for the hub, scheme included, without a path,
    e.g. ``http://localhost:8000`` or ``https://hub.example.org``. Raises ValueError
    for a URL that cannot carry user subdomains (an IP address, a path).

    Cookies: ``cookie_host_prefix_enabled`` names the hub's cookies ``__Host-...``,
    which a browser accepts only from the hub's own host (never with a ``Domain``),
    so a user's page cannot toss one at the hub. Such cookies must be ``Secure``:
    browsers allow that on https and on ``localhost`` (a potentially trustworthy
    origin), not on plain http elsewhere, where the prefix stays off.
    """
    parts = urlsplit(hub_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"hub URL {hub_url!r} must look like http://localhost:8000 or https://hub.example.org")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"hub URL {hub_url!r} must not have a path: users are served at <name>.<host>/user/<name>/")
    host = parts.hostname
    if host.replace(".", "").isdigit() or ":" in host:
        raise ValueError(
            f"hub URL {hub_url!r} is an IP address, which cannot have subdomains: use"
            " http://localhost:PORT on one machine, or a host name with wildcard DNS"
        )
    origin = f"{parts.scheme}://{parts.netloc.lower()}"
    host_prefix = parts.scheme == "https" or is_loopback_name(host)
    settings: dict[str, object] = {"subdomain_host": origin, "cookie_host_prefix_enabled": host_prefix}
    if host_prefix and parts.scheme == "http":
        # JupyterHub marks __Host- cookies Secure itself, except the OAuth state cookie of
        # users' servers on http (JupyterHub 5.5 and 6.1): without Secure the browser
        # drops it and every login to a server fails ("oauth state does not match").
        # cookie_options reach the hub's cookies and, through
        # JUPYTERHUB_COOKIE_OPTIONS, the servers'.
        settings["tornado_settings"] = {"cookie_options": {"secure": True}}
    return settings


def apply_user_origins(jupyterhub_config, hub_url: str) -> None:
    """Set :func:`user_origin_settings` on ``c.JupyterHub``, merging ``tornado_settings``."""
    for name, value in user_origin_settings(hub_url).items():
        if name == "tornado_settings":
            merged = dict(jupyterhub_config.get("tornado_settings", {}) or {})
            merged["cookie_options"] = {**merged.get("cookie_options", {}), **value["cookie_options"]}
            value = merged
        setattr(jupyterhub_config, name, value)


def user_url(hub_url: str, username: str, path: str = "") -> str:
    """URL of ``path`` in ``username``'s server when users have their own origins."""
    parts = urlsplit(hub_url)
    return f"{parts.scheme}://{username}.{parts.netloc}/user/{username}/{path.lstrip('/')}"


def loopback_bind_url(hub_url: str) -> str:
    """Where a single-machine hub listens for ``hub_url``: 127.0.0.1 for ``localhost`` URLs.

    Binding the name ``localhost`` could pick the IPv6 loopback only; other hosts
    are bound as given (a TLS proxy in front, or ``ENERTEF_HUB_BIND_URL``).
    """
    parts = urlsplit(hub_url)
    if parts.hostname and is_loopback_name(parts.hostname):
        return f"http://127.0.0.1:{parts.port or 80}"
    return hub_url
