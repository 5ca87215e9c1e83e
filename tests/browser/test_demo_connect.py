import re

import pytest
from playwright.sync_api import expect

from ..auth.test_connect import demo  # noqa: F401 - the fixture: a host with the demo provider

pytestmark = pytest.mark.browser


def test_connect_the_demo_provider_in_a_browser(browser, demo, screenshot):  # noqa: F811
    context = browser.new_context(base_url=demo.test_base)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill("alice@example.com")
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Sign in").click()

    page.goto("/")
    page.get_by_role("link", name="Demo Tasks").click()
    expect(page.get_by_text("OAuth 2.0: you sign in at")).to_be_visible()
    page.get_by_role("button", name="Install and connect").click()

    expect(page.get_by_role("heading", name="Sign in to Demo Provider")).to_be_visible()
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Allow access?")).to_be_visible()
    expect(page.get_by_text("tasks:write")).to_be_visible()
    page.get_by_role("button", name="Allow").click()

    expect(page).to_have_url(re.compile(r"/installations/ins_"))
    expect(page.locator("#installation-status")).to_have_text("active")
    expect(page.get_by_text("Demo User")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Connected.")
    screenshot("connected", page)
    context.close()
