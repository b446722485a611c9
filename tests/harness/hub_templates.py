"""Stand-ins for JupyterHub's page templates, to render ours on top of them without a hub."""

from __future__ import annotations

from jinja2 import DictLoader, Environment

#: A minimal ``page.html`` with the blocks our templates fill or extend.
HUB_PAGE = (
    "<nav>{% block nav_bar_left_items %}<li>Home</li>{% endblock nav_bar_left_items %}</nav>"
    "{% block announcement %}{% endblock %}{% block main %}{% endblock %}"
)


def hub_env(page=HUB_PAGE) -> Environment:
    """A Jinja environment with the hub's ``page.html``, ``admin.html`` and ``home.html`` (minimal ones)."""
    return Environment(loader=DictLoader({
        "page.html": page,
        "admin.html": '{% extends "page.html" %}{% block main %}<div id="react-admin-hook"></div>{% endblock %}',
        "home.html": '{% extends "page.html" %}{% block main %}home{% endblock %}',
    }), autoescape=True)
