"""Running actions in a real browser: dependent dropdowns, errors at fields, run pages,
failing sources (fallback and retry) and sandbox runs."""

import re

import pytest
from playwright.sync_api import expect

from ..auth.test_connect import demo  # noqa: F401 - a host with the demo provider

pytestmark = pytest.mark.browser


def sign_in(page, email="alice@example.com"):
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Sign in").click()


def connect_demo(page):
    page.goto("/miniapps/demo-tasks")
    page.get_by_role("button", name="Install and connect").click()
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("demo")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Allow").click()
    expect(page.locator("#installation-status")).to_have_text("active")


def test_a_choice_made_before_the_script_ran_still_loads_its_dependents(browser,
                                                                         demo):  # noqa: F811
    context = browser.new_context(base_url=demo.test_base)
    page = context.new_page()
    sign_in(page)
    connect_demo(page)
    held = []
    page.route("**/static/minihost.js", lambda route: held.append(route))  # held back
    page.get_by_role("link", name="Complete task").click()
    project, task = page.get_by_label("Project"), page.get_by_label("Task")
    project.select_option(label="Home")  # no script yet: no change event is heard
    expect(task.locator("option")).to_have_text(["— choose project first —"])
    assert len(held) == 1
    held[0].continue_()
    expect(task.locator("option")).to_have_text(["— choose —", "Buy milk", "Water the plants"])
    context.close()


def test_complete_a_task_with_dependent_dropdowns(browser, demo, screenshot):  # noqa: F811
    context = browser.new_context(base_url=demo.test_base)
    page = context.new_page()
    sign_in(page)
    connect_demo(page)
    page.get_by_role("link", name="Complete task").click()

    project, task = page.get_by_label("Project"), page.get_by_label("Task")
    expect(task.locator("option")).to_have_text(["— choose project first —"])
    project.select_option(label="Home")
    expect(task.locator("option")).to_have_text(["— choose —", "Buy milk", "Water the plants"])

    before = len(demo.recorder.token_bodies)
    page.get_by_role("button", name="Run Complete task").click()
    expect(page.locator("#f-task-error")).to_have_text("is required")
    expect(page.get_by_label("Project")).to_have_value(re.compile("prj_"))
    expect(page.get_by_label("Project").locator("option:checked")).to_have_text("Home")
    screenshot("field-error", page)

    page.get_by_label("Task").select_option(label="Buy milk")
    page.get_by_role("button", name="Run Complete task").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#output-table")).to_contain_text("Buy milk")
    expect(page.locator("#output-table")).to_contain_text("true")
    trace = page.locator(".trace-entry")
    expect(trace).to_contain_text("/complete")
    trace.get_by_text("Headers").click()
    expect(trace.locator("td", has_text="[redacted]")).to_be_visible()
    assert "Bearer at" not in page.content() and len(demo.recorder.token_bodies) == before
    screenshot("run", page)

    page.get_by_role("link", name="Run again with these values").click()
    expect(page.get_by_label("Project").locator("option:checked")).to_have_text("Home")
    # The task is done now, so it is no longer offered: the field says so.
    expect(page.get_by_label("Task").locator("option:checked")).to_have_text("— choose —")
    expect(page.locator("#f-task-help")).to_have_text(
        "Your earlier choice is not among the options any more: choose again.")
    context.close()


def test_a_failing_source_falls_back_to_typing(browser, demo, screenshot):  # noqa: F811
    context = browser.new_context(base_url=demo.test_base)
    page = context.new_page()
    sign_in(page)
    connect_demo(page)
    demo.recorder.fail.add("/demo-provider/api/projects")
    page.get_by_role("link", name="Create task").click()
    project = page.get_by_label("Project")
    expect(project).to_have_attribute("data-fallback", "true")
    expect(page.locator("#f-project-help")).to_contain_text("type the value instead")
    demo.recorder.fail.clear()
    home = demo.extensions["demo_provider"]["store"].one(
        "SELECT id FROM projects WHERE name = 'Home'")["id"]
    project.fill(home)
    page.locator("#f-title").fill("Fix the fence")
    expect(page.locator("input[type=date]#f-due")).to_be_visible()  # the date_widget plugin
    page.locator("#f-due").fill("2026-12-24")
    page.get_by_role("button", name="Run Create task").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.locator("#output-table")).to_contain_text("2026-12-24")
    screenshot("fallback-run", page)
    context.close()


def test_sandbox_runs_in_the_browser(browser, demo):  # noqa: F811
    context = browser.new_context(base_url=demo.test_base)
    page = context.new_page()
    sign_in(page)
    connect_demo(page)
    page.get_by_role("link", name="List tasks").click()
    page.get_by_label("Project").select_option(label="Work")
    page.get_by_label("Sandbox run").check()
    page.get_by_role("button", name="Run List tasks").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.get_by_text("sandbox: nothing was sent")).to_be_visible()
    expect(page.locator(".would-have-sent")).to_have_text("would have sent")
    context.close()


def test_a_failing_dependent_source_can_be_retried(browser, hosted_server, hosted, screenshot):
    context = browser.new_context(base_url=hosted_server)
    page = context.new_page()
    sign_in(page)
    page.goto("/miniapps/board")
    page.get_by_role("button", name="Install").click()
    page.get_by_role("link", name="Add card").click()
    hosted.provider.json("/boards/b2/lists", '{"message": "lists are offline"}', status=500)
    page.get_by_label("Board").select_option(label="Bugs")
    error = page.locator(".source-error")
    expect(error).to_contain_text("lists are offline")
    screenshot("source-error", page)
    hosted.provider.json("/boards/b2/lists", '[{"id": "l3", "name": "Triage"}]')
    error.get_by_role("button", name="Retry").click()
    expect(page.get_by_label("List").locator("option")).to_have_text(["— choose —", "Triage"])
    expect(page.locator(".source-error")).to_have_count(0)
    page.get_by_label("Board").select_option(label="Roadmap")
    expect(page.get_by_label("List").locator("option")).to_have_text(
        ["— choose —", "Now", "Next"])
    context.close()


def test_every_invalid_input_turns_red_and_the_date_picker_looks_like_the_rest(
        browser, demo, screenshot):  # noqa: F811
    """A text input the server found invalid has the error colour (a rule for text
    inputs once outranked the error rule); the plugin's date picker has the inputs'
    border and help that says what it shows."""
    context = browser.new_context(base_url=demo.test_base)
    page = context.new_page()
    sign_in(page)
    connect_demo(page)
    page.get_by_role("link", name="Create task").click()
    due = page.get_by_label("Due date")
    title = page.get_by_label("Title")
    border = "e => getComputedStyle(e).borderTopColor + ' ' + getComputedStyle(e).borderTopWidth"
    assert due.evaluate(border) == title.evaluate(border) == "rgb(154, 163, 178) 1px"
    expect(due).to_have_accessible_description("The day it is due: pick it in the calendar")
    # Submit what the server refuses (the browser's own checks set aside, as a browser
    # without them would).
    page.locator("form.action-form, form").first.evaluate("form => { form.noValidate = true }")
    title.fill("")
    page.get_by_role("button", name="Run Create task").click()
    expect(page.locator("#f-title-error")).to_be_visible()
    assert page.get_by_label("Title").evaluate(border) == "rgb(180, 35, 24) 1px"
    screenshot("invalid-text", page)
    context.close()
