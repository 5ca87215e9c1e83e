import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def cards(page):
    return page.get_by_role("list", name="Mini-apps").get_by_role("listitem")


def test_search_filter_and_open_a_detail_page(page, screenshot):
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/")
    expect(page.get_by_role("heading", name="Marketplace")).to_be_visible()
    expect(cards(page)).to_have_count(3)
    screenshot("grid")

    page.get_by_label("Search mini-apps").fill("channel")
    page.get_by_role("button", name="Search").click()
    expect(cards(page)).to_have_count(1)
    expect(page.get_by_role("status")).to_have_text(re.compile(r"1 of 3 mini-apps match"))

    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Category").select_option("data")
    page.get_by_role("button", name="Search").click()
    expect(cards(page)).to_have_count(1)
    expect(cards(page).first).to_contain_text("Weather Now")

    page.get_by_role("link", name="Weather Now").click()
    expect(page).to_have_url(re.compile(r"/miniapps/weather$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Weather Now")
    expect(page.get_by_role("heading", name="Hosts it may call")).to_be_visible()
    expect(page.locator(".hosts")).to_have_text("api.weather.example")
    expect(page.get_by_role("heading", name=re.compile("Current weather"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("units"))).to_contain_text(
        "one of metric, imperial")
    assert page.locator("img.app-icon").evaluate("img => img.naturalWidth") > 0
    screenshot("detail")
    assert all(url.startswith(page.url.split("/miniapps")[0]) for url in requests)


def test_detail_page_of_an_oauth_miniapp_on_a_phone(browser, live_server):
    context = browser.new_context(base_url=live_server, viewport={"width": 375, "height": 740})
    page = context.new_page()
    page.goto("/miniapps/chat")
    expect(page.get_by_text("OAuth 2.0: you sign in at")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, "the page scrolls sideways on a phone"
    context.close()


def test_keyboard_users_can_skip_to_content(page):
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
