import re

import pytest
from playwright.sync_api import expect

from host.db import get_database
from host.services import accounts

from .test_actions import sign_in

pytestmark = pytest.mark.browser


def test_reloading_after_creating_a_token_creates_no_second_one(browser, hosted_server, hosted):
    """Post/redirect/get: the token is shown once on the page the create redirects to;
    reloading that page shows no secret and makes no token."""
    context = browser.new_context(base_url=hosted_server)
    page = context.new_page()
    sign_in(page)
    page.goto("/account")
    page.get_by_label("Name").fill("deploy script")
    page.get_by_role("button", name="Create token").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    secret = page.locator("#new-token").inner_text()
    assert secret.startswith("mh_")
    page.reload()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    created = page.get_by_role("row").filter(has_text="deploy script").locator("time").first
    expect(created).to_have_text("just now")  # the exact second in UTC on hover
    expect(created).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    expect(page.locator("#new-token")).to_have_count(0)
    assert secret not in page.content()
    with get_database(hosted.app).sessions() as db:
        names = [token.name for token in accounts.list_tokens(db, hosted.alice)]
    assert names.count("deploy script") == 1
    context.close()


def test_a_failed_sign_in_is_in_the_owners_audit_log(browser, hosted_server, hosted):
    context = browser.new_context(base_url=hosted_server)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill("alice@example.com")
    page.get_by_label("Password").fill("not my password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("the email or password is wrong")
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Sign in").click()
    page.goto("/audit")
    row = page.get_by_role("row").filter(has_text="login failed")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("email:alice@example.com")
    expect(row).to_contain_text("address: 127.0.0.1")
    context.close()


def test_revoking_a_token_asks_first_and_names_what_stops(browser, hosted_server, hosted):
    with get_database(hosted.app).transaction() as db:
        accounts.create_token(db, db.merge(hosted.alice), "deploy", "test")
    context = browser.new_context(base_url=hosted_server)
    page = context.new_page()
    sign_in(page)
    page.goto("/account")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Revoke token deploy").click()
    expect(page.get_by_role("button", name="Revoke token deploy")).to_be_visible()
    assert asked == ["Revoke the token deploy? Programs that use it are refused from now on; "
                     "this cannot be undone."]
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke token deploy").click()
    expect(page.get_by_role("status")).to_contain_text("Token deploy revoked.")
    context.close()

