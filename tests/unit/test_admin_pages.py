"""The admin pages' pure parts: the template loader that extends the hub's pages, the
admin landing URL, and the state an account is shown in (no hub, no services)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from jinja2 import ChoiceLoader, DictLoader, Environment, FileSystemLoader

from enertef_hub import admin_pages
from enertef_hub.admin_pages import AccountsBase, HubTemplatesLoader, admin_default_url, install_admin_pages
from tests.harness.hub_templates import HUB_PAGE, hub_env


def render(env, name, **ns):
    env.globals.update(enertef_accounts_path="enertef/accounts", enertef_deletion="kept")
    return env.get_template(name).render(base_url="/hub/", **ns)


@pytest.mark.parametrize("scopes, shown", [({"admin:users": None, "admin-ui": None}, True), ({"self": None}, False)])
def test_every_hub_page_links_the_admin_pages_for_admins_only(scopes, shown):
    env = hub_env()
    env.loader = HubTemplatesLoader(env.loader)
    html = render(env, "home.html", user=SimpleNamespace(name="x"), parsed_scopes=scopes)
    assert "<li>Home</li>" in html and "home" in html  # the hub's own items and page stay
    assert ('href="/hub/enertef/accounts"' in html) is shown
    assert ('href="/hub/authorize"' in html) is shown


def test_an_operators_own_page_html_is_extended_not_replaced():
    env = hub_env(page=HUB_PAGE.replace("<nav>", "<nav class='operator'>"))
    env.loader = HubTemplatesLoader(env.loader)
    html = render(env, "home.html", user=SimpleNamespace(name="x"), parsed_scopes={"admin:users": None})
    assert "class='operator'" in html and "Accounts" in html


def test_the_admin_panel_says_deletion_keeps_the_data():
    env = hub_env()
    env.loader = HubTemplatesLoader(env.loader)
    html = render(env, "admin.html", user=SimpleNamespace(name="x"), parsed_scopes={"admin:users": None})
    assert 'id="react-admin-hook"' in html
    assert "keeps their data" in html and "/hub/enertef/accounts" in html


def test_install_wraps_both_environments_once_and_sets_the_admin_landing():
    envs = {"jinja2_env": hub_env(), "jinja2_env_sync": hub_env()}
    app = SimpleNamespace(tornado_settings={**envs, "default_url": ""})
    auth = SimpleNamespace(revoke_on_delete=True, workbench=SimpleNamespace(purge_on_delete=False))
    install_admin_pages(app, auth)
    install_admin_pages(app, auth)
    for env in envs.values():
        assert isinstance(env.loader, HubTemplatesLoader)
        assert not isinstance(env.loader.inner, HubTemplatesLoader)
    assert app.tornado_settings["default_url"] is admin_default_url

    # An operator's own default_url is left alone.
    app = SimpleNamespace(tornado_settings={**envs, "default_url": "/hub/home"})
    install_admin_pages(app, auth)
    assert app.tornado_settings["default_url"] == "/hub/home"


def test_admins_land_on_the_accounts_page_others_where_jupyterhub_sends_them():
    def handler(user, scopes=()):
        return SimpleNamespace(current_user=user, parsed_scopes=dict.fromkeys(scopes),
                               hub=SimpleNamespace(base_url="/hub/"))

    assert admin_default_url(handler(SimpleNamespace(admin=True))) == "/hub/enertef/accounts"
    assert admin_default_url(handler(SimpleNamespace(admin=False), ["admin:users"])) == "/hub/enertef/accounts"
    assert admin_default_url(handler(SimpleNamespace(admin=False), ["self"])) == ""
    assert admin_default_url(handler(None)) == ""


@pytest.mark.parametrize("hub_account, approved, states, shown", [
    (True, True, ["active"], "active"),
    (True, False, ["active"], "suspended"),
    (False, None, ["deleted"], "deleted, data kept"),
    (False, None, ["deleted", "purged"], "deleted, data kept"),
    (False, None, ["purged"], "purged"),
    (True, True, ["deleted"], "active, no store yet"),
    (True, False, [], "waiting for approval"),
    (True, None, [], "no store yet"),
])
def test_account_state(hub_account, approved, states, shown):
    entry = {"name": "alice", "hub_account": hub_account, "approved": approved, "teams": [],
             "incarnations": [{"incarnation": n + 1, "state": s} for n, s in enumerate(states)]}
    (finished,) = AccountsBase._finish({"alice": entry})
    assert finished["state"] == shown
    assert [i["state"] for i in finished["kept"]] == [s for s in states if s == "deleted"]


def test_deletion_outcome_follows_the_settings():
    def auth(revoke, purge):
        return SimpleNamespace(revoke_on_delete=revoke, workbench=SimpleNamespace(purge_on_delete=purge))

    assert admin_pages.deletion_outcome(auth(True, False)) == "kept"
    assert admin_pages.deletion_outcome(auth(True, True)) == "purged"
    assert admin_pages.deletion_outcome(auth(False, True)) == "untouched"


def accounts_named(*names_states):
    return [{"name": name, "state": state} for name, state in names_states]


def test_a_page_of_accounts_with_search_state_filter_and_counts():
    accounts = accounts_named(*((f"user{n:04d}", "deleted, data kept" if n % 10 == 0 else "active")
                                for n in range(1500)))
    page, total, counts, offset = admin_pages.select_page(accounts)
    assert [a["name"] for a in page] == [f"user{n:04d}" for n in range(100)] and (total, offset) == (1500, 0)
    assert counts == {"active": 1350, "deleted, data kept": 150}

    page, total, _, offset = admin_pages.select_page(accounts, offset=1400, limit=250)
    assert (page[0]["name"], len(page), total, offset) == ("user1400", 100, 1500, 1400)
    page, _, _, offset = admin_pages.select_page(accounts, offset=99999)  # past the end: the last page
    assert (page[0]["name"], len(page), offset) == ("user1400", 100, 1400)
    page, total, _, _ = admin_pages.select_page(accounts, limit=None)
    assert len(page) == total == 1500

    page, total, counts, _ = admin_pages.select_page(accounts, query=" USER014", state="deleted, data kept")
    assert [a["name"] for a in page] == ["user0140"]  # user0140-user0149 match, one of them deleted
    assert total == 1 and counts["deleted, data kept"] == 150  # counts are of every account

    assert admin_pages.select_page([], query="x") == ([], 0, {}, 0)


def test_the_accounts_page_shows_where_it_is_and_links_the_pages_around():
    # The hub's loader finds our templates too (TemplatesMixin); page.html is a minimal one.
    env = Environment(loader=HubTemplatesLoader(ChoiceLoader([
        DictLoader({"page.html": HUB_PAGE}), FileSystemLoader(admin_pages.TEMPLATE_DIR)])), autoescape=True)
    accounts = [{"name": f"user{n:04d}", "state": "active", "admin": False, "running": False, "teams": [],
                 "last_activity": "never", "incarnations": [], "active": None, "approved": True}
                for n in range(100, 200)]
    html = render(env, "enertef-accounts.html", accounts=accounts, total=1500,
                  counts={"active": 1400, "deleted, data kept": 100}, states=admin_pages.STATES,
                  listing={"query": "user", "state": "active", "offset": 100, "limit": 100},
                  deletion="kept", accounts_url="/hub/enertef/accounts", minio_scanned=None)
    html = " ".join(html.split())
    assert "101–200 of 1500 accounts matching “user” (active)" in html
    assert 'href="/hub/enertef/accounts?q=user&amp;state=active&amp;start=0&amp;per_page=100">Previous' in html
    assert 'href="/hub/enertef/accounts?q=user&amp;state=active&amp;start=200&amp;per_page=100">Next' in html
    assert '<option value="deleted, data kept" >deleted, data kept (100)</option>' in html
    assert '<option value="active" selected>active (1400)</option>' in html
    assert 'id="account-user0100"' in html and 'id="account-user0199"' in html


@pytest.mark.parametrize("args, expected", [
    ({}, {"query": "", "state": "", "offset": 0, "limit": 100}),
    ({"q": " Alice ", "state": "purged", "start": "200", "per_page": "50"},
     {"query": "alice", "state": "purged", "offset": 200, "limit": 50}),
    ({"state": "nonsense", "start": "-5", "per_page": "x"}, {"query": "", "state": "", "offset": 0, "limit": 100}),
    ({"per_page": "all"}, {"query": "", "state": "", "offset": 0, "limit": 100}),
    ({"per_page": "999999", "start": "y"}, {"query": "", "state": "", "offset": 0, "limit": 500}),
])
def test_the_listing_is_read_from_the_query_string_and_bounded(args, expected):
    handler = SimpleNamespace(get_argument=lambda name, default="": args.get(name, default))
    assert AccountsBase._listing(handler) == expected
