"""Routing: a deep link opened first on a fresh server still goes through app.py's navigation."""

from __future__ import annotations

from tests.e2e.conftest import assert_no_exception, running_app, wait_for_app


def test_deep_link_first_on_a_fresh_server_shows_the_app_navigation(page, e2e_workspace):
    with running_app(e2e_workspace) as url:
        page.goto(f"{url}/training")
        wait_for_app(page)
        page.get_by_role("heading", name="Training").first.wait_for()
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Dataset overview" in nav and "common" not in nav
        assert_no_exception(page)
