import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_sign_in_install_connect_and_uninstall(browser, hosted_server, hosted):
    context = browser.new_context(base_url=hosted_server)
    page = context.new_page()
    page.goto("/miniapps/keyed")
    page.get_by_role("link", name="Sign in to install").click()
    page.get_by_label("Email").fill("alice@example.com")
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/miniapps/keyed$"))

    page.get_by_role("button", name="Install and connect").click()
    expect(page.get_by_role("heading", name="Connect Keyed Service")).to_be_visible()
    page.get_by_label("API key").fill("key-wrong-1")
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid API key")

    page.get_by_label("API key").fill("key-good-123")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#installation-status")).to_have_text("active")
    expect(page.get_by_text("Alice Corp")).to_be_visible()
    assert "key-good-123" not in page.content()

    # Uninstalling asks first, naming what is lost; saying no keeps everything.
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Uninstall").click()
    expect(page.locator("#installation-status")).to_have_text("active")
    assert asked == ["Uninstall keyed? Its stored credentials are erased for good, and flows "
                     "that use this connection stop until you install and connect Keyed "
                     "Service again."]
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Uninstall").click()
    expect(page).to_have_url(re.compile(r"/installations$"))
    expect(page.get_by_role("status")).to_contain_text("is uninstalled and its credentials "
                                                       "are erased")
    expect(page.get_by_text("Nothing installed yet.")).to_be_visible()
    context.close()
