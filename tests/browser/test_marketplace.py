import re
import threading

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

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


@pytest.fixture
def many_page(browser, many_app):
    server = make_server("127.0.0.1", 0, many_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    context = browser.new_context(base_url=f"http://127.0.0.1:{server.server_port}")
    yield context.new_page()
    context.close()
    server.shutdown()
    thread.join(timeout=5)


def test_pages_of_a_large_catalog_by_keyboard(many_page, screenshot):
    page = many_page
    page.goto("/")
    expect(cards(page)).to_have_count(24)
    expect(page.get_by_role("status")).to_have_text("32 mini-apps, showing 1–24")
    pages = page.get_by_role("navigation", name="Pages")
    expect(pages).to_contain_text("Page 1 of 2")
    expect(pages.get_by_role("link", name="Previous page")).to_have_count(0)
    screenshot("paged", page)

    pages.get_by_role("link", name="Next page").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/\?page=2$"))
    expect(cards(page)).to_have_count(8)
    expect(cards(page).last).to_contain_text("Weather Now")
    expect(page.get_by_role("status")).to_have_text("32 mini-apps, showing 25–32")

    page.get_by_label("Search mini-apps").fill("weather")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("status")).to_have_text("30 of 32 mini-apps match, showing 1–24")
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Next page").click()
    expect(cards(page)).to_have_count(6)
    expect(page.get_by_label("Search mini-apps")).to_have_value("weather")
    page.get_by_role("link", name="Previous page").click()
    expect(page.get_by_role("status")).to_have_text("30 of 32 mini-apps match, showing 1–24")
