"""The admin panel's deletion confirmation, its pure parts (no hub, no browser).

enertef-admin-panel.js decides from a fetch() call alone whether it deletes a user
(run here in Node, which the proxy already needs); the admin panel's template gives
the dialog the right words for each of the three deletion outcomes; the hub serves
the script under a digest that changes with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from enertef_hub import admin_pages
from enertef_hub.admin_pages import HubTemplatesLoader
from tests.harness.hub_templates import hub_env

SCRIPT = os.path.join(os.path.dirname(admin_pages.__file__), "templates", "enertef-admin-panel.js")
ORIGIN = "http://hub.example:8000"

# (method, url) -> the username it deletes, or None
CASES = [
    ("DELETE", f"{ORIGIN}/hub/api/users/alice?_xsrf=abc", "alice"),
    ("delete", "/hub/api/users/alice", "alice"),  # relative, any case of the method
    ("DELETE", f"{ORIGIN}/hub/api/users/alice/", "alice"),
    ("DELETE", f"{ORIGIN}/hub/api/users/al%69ce", "alice"),
    ("GET", f"{ORIGIN}/hub/api/users/alice", None),
    ("PATCH", f"{ORIGIN}/hub/api/users/alice", None),  # the panel's "Apply" (rename, admin flag)
    ("DELETE", f"{ORIGIN}/hub/api/users/alice/server", None),  # stop server
    ("DELETE", f"{ORIGIN}/hub/api/users/alice/servers/?_xsrf=abc", None),  # stop server (5.5, 6.1)
    ("DELETE", f"{ORIGIN}/hub/api/users/alice/servers/lab", None),  # delete a named server
    ("DELETE", f"{ORIGIN}/hub/api/users/alice/tokens/a1", None),
    ("DELETE", f"{ORIGIN}/hub/api/groups/team1/users", None),
    ("DELETE", f"{ORIGIN}/hub/api/users", None),
    ("DELETE", f"{ORIGIN}/hub/api/users/", None),
    ("DELETE", "http://elsewhere.example/hub/api/users/alice", None),
    ("DELETE", f"{ORIGIN}/other/hub/api/users/alice", None),
    ("DELETE", f"{ORIGIN}/hub/api/users/%E0%A4%A", None),  # undecodable
]


def node(program: str):
    exe = shutil.which("node")
    if exe is None:
        raise RuntimeError("node is not installed (configurable-http-proxy needs it too)")
    done = subprocess.run([exe, "-e", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_only_the_deletion_of_a_user_is_held():
    results = node(
        f"const s = require({json.dumps(SCRIPT)});"
        f"const cases = {json.dumps([[m, u] for m, u, _ in CASES])};"
        f"console.log(JSON.stringify(cases.map(([m, u]) => s.deletedUser(m, u, '/hub/', {json.dumps(ORIGIN)}))));"
    )
    assert results == [expected for _, _, expected in CASES]


def test_fetch_arguments_are_read_from_a_string_a_url_or_a_request():
    results = node(
        f"const s = require({json.dumps(SCRIPT)});"
        "const url = new URL('http://h/hub/api/users/bob?_xsrf=t');"
        "console.log(JSON.stringify(["
        "  s.requestOf(url, {method: 'DELETE', json: true}),"  # what JupyterHub 5.5 and 6.1 send
        "  s.requestOf('/hub/api/users/bob'),"
        "  s.requestOf(new Request('http://h/hub/api/users/bob', {method: 'DELETE'})),"
        "  s.requestOf(new Request('http://h/hub/api/users/bob', {method: 'DELETE'}), {method: 'GET'}),"
        "]));"
    )
    assert results == [
        {"method": "DELETE", "url": "http://h/hub/api/users/bob?_xsrf=t"},
        {"method": "GET", "url": "/hub/api/users/bob"},
        {"method": "DELETE", "url": "http://h/hub/api/users/bob"},
        {"method": "GET", "url": "http://h/hub/api/users/bob"},
    ]


def test_a_cancelled_deletion_is_never_sent_and_a_confirmed_one_is_sent_unchanged():
    results = node(
        f"const s = require({json.dumps(SCRIPT)});"
        "const sent = []; let answer = false;"
        "const win = {location: {origin: 'http://h'}, jhdata: {base_url: '/hub/'},"
        "  fetch: function (input, init) { sent.push([String(input), init && init.method, this === win]);"
        "                                  return Promise.resolve('response'); },"
        "  confirm: (text) => { sent.push(['asked', text]); return answer; }};"
        "const doc = {getElementById: () => null, documentElement: {setAttribute: () => {}}};"
        "s.install(win, doc); s.install(win, doc);"  # installed once, even if loaded twice
        "const url = new URL('http://h/hub/api/users/bob?_xsrf=t');"
        "let settled = false;"
        "win.fetch(url, {method: 'DELETE'}).then(() => { settled = true; });"
        "setTimeout(async () => {"
        "  await win.fetch('/hub/api/users/bob/servers/', {method: 'DELETE'});"
        "  answer = true; const r = await win.fetch(url, {method: 'DELETE'});"
        "  console.log(JSON.stringify({sent, settled, r}));"
        "}, 50);"
    )
    assert results["settled"] is False  # cancelled: the panel's promise never settles
    assert results["r"] == "response"
    assert results["sent"] == [
        ["asked", "Delete user bob?"],
        ["/hub/api/users/bob/servers/", "DELETE", True],  # not asked
        ["asked", "Delete user bob?"],
        ["http://h/hub/api/users/bob?_xsrf=t", "DELETE", True],  # as the panel made it
    ]


@pytest.mark.parametrize("outcome, says, typed", [
    ("kept", "Their data is kept", False),
    ("purged", "deleted for good", True),
    ("untouched", "enertef-hub deprovision", False),
])
def test_the_dialog_says_what_deletion_does_to_the_data(outcome, says, typed):
    env = hub_env()
    env.loader = HubTemplatesLoader(env.loader)
    env.globals.update(enertef_accounts_path="enertef/accounts", enertef_deletion=outcome,
                       enertef_static_path="enertef/static", enertef_static_version="v1")
    html = env.get_template("admin.html").render(base_url="/hub/", user=SimpleNamespace(name="x"),
                                                 parsed_scopes={"admin:users": None})
    dialog = html[html.index('<dialog id="enertef-delete-dialog"'):html.index("</dialog>")]
    assert says in dialog
    assert ('id="enertef-delete-typed"' in dialog) is typed
    assert 'class="enertef-delete-name"' in dialog  # the script fills the name in, as text
    assert '<script src="/hub/enertef/static/enertef-admin-panel.js?v=v1"></script>' in html
    # No deletion button before the script has run.
    assert "html:not([data-enertef-delete-confirm]) #delete-user" in html
    assert 'id="react-admin-hook"' in html


def test_the_script_url_changes_with_the_script():
    assert set(admin_pages.STATIC_FILES) == {"enertef-admin-panel.js"}
    version = admin_pages.static_version()
    assert len(version) == 16 and version == admin_pages.static_version()
