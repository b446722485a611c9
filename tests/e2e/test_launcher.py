"""JupyterLab's launcher as a newcomer first sees it, in Chromium through a real hub.

In a 1280x800 window (a laptop), the launcher's MLflow and TensorBoard tiles are in
view without scrolling and show their icons, and no Jupyter news pop-up asks anything
(JupyterLab's default asks every new user whether to fetch news from the internet).
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.harness.browser import log_in, screenshot
from tests.harness.forms import signup_and_approve
from tests.harness.hub import start_server
from tests.harness.names import unique_name

PASSWORD = "Launcher-e2e-passw0rd!"
WINDOW = {"width": 1280, "height": 800}

#: JupyterLab's question (@jupyterlab/apputils-extension:notification, fetchNews "none").
NEWS_QUESTION = "official Jupyter news"


def test_tiles_have_icons_above_the_fold_and_no_news_pop_up(hub, page) -> None:
    name = signup_and_approve(hub, unique_name("tiles"), PASSWORD)
    start_server(hub, name)
    page.set_viewport_size(WINDOW)
    log_in(page, hub, name, PASSWORD, f"/user/{name}/lab")
    for title in ("MLflow", "TensorBoard"):
        tile = page.locator(".jp-LauncherCard").filter(has_text=title)
        expect(tile).to_be_visible(timeout=120_000)
        # Its icon: the svg jupyter-server-proxy serves, loaded (not a letter in a box).
        icon = tile.locator("img.jp-Launcher-kernelIcon")
        expect(icon).to_be_visible()
        assert icon.evaluate("img => img.complete && img.naturalWidth > 0"), f"{title}: icon not loaded"
        # Above the fold: inside the window, with the launcher not scrolled.
        box = tile.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= WINDOW["height"], (title, box)
    assert page.locator(".jp-Launcher-body").evaluate("el => el.scrollTop") == 0
    # JupyterLab asks its news question within a second or two of loading: give it time.
    page.wait_for_timeout(5000)
    expect(page.get_by_text(NEWS_QUESTION)).to_have_count(0)
    screenshot(page, "launcher")
