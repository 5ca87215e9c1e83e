"""Action forms, run pages and run history in the pages."""

import re

import pytest

from ..conftest import csrf_from


@pytest.fixture
def board(hosted):
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    page = client.get("/miniapps/board").get_data(as_text=True)
    created = client.post("/miniapps/board/install", data={"csrf_token": csrf_from(page)})
    return client, created.headers["Location"].rsplit("/", 1)[1]


def form_path(installation):
    return f"/installations/{installation}/actions/addCard"


def test_the_form_renders_every_field(hosted, board):
    client, installation = board
    detail = client.get(f"/installations/{installation}").get_data(as_text=True)
    assert f'href="{form_path(installation)}">Add card</a>' in detail
    page = client.get(form_path(installation)).get_data(as_text=True)
    assert '<option value="{&#34;id&#34;: &#34;b1&#34;' in page  # object values travel as JSON
    assert re.search(r'<select id="f-list" name="list" required aria-required="true" '
                     r'aria-describedby="f-list-help" data-source="/api/v1/installations/'
                     rf'{installation}/sources/rpc_lists" data-depends-on="board" '
                     r'data-waiting="true">', page)
    assert "— choose board first —" in page
    assert ('The options could not be loaded (Board did not return the options for '
            'rpc_columns: columns are down for maintenance); type the value instead.') in page
    assert re.search(r'<input type="text" id="f-column" name="column" aria-describedby='
                     r'"f-column-help" data-fallback="true"', page)
    assert '<option value="2" selected>2</option>' in page
    assert '<textarea id="f-details-notes" name="details.notes"' in page
    assert 'Separate values with commas, or give a JSON list.' in page
    assert '<script src="/static/minihost.js" defer></script>' in page


def test_errors_at_the_fields_keep_the_values_and_send_nothing(hosted, board):
    client, installation = board
    before = len(hosted.provider.received)
    page = client.get(form_path(installation)).get_data(as_text=True)
    response = client.post(form_path(installation), data={
        "csrf_token": csrf_from(page), "board": '{"id": "b1", "name": "Roadmap"}',
        "title": "", "estimate": "lots", "tags": "a, b"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Nothing was sent: correct the fields marked below." in html
    assert '<p class="field-error" id="f-list-error">is required</p>' in html
    assert '<p class="field-error" id="f-estimate-error">must be a number</p>' in html
    assert 'value="lots"' in html and 'value="a, b"' in html
    assert '<option value="&#34;l1&#34;">Now</option>' in html  # lists for the chosen board
    sent = [r.path for r in hosted.provider.received[before:]]
    assert not any(path.endswith("/cards") for path in sent)


def test_a_run_shows_output_trace_and_can_run_again(hosted, board):
    client, installation = board
    page = client.get(form_path(installation)).get_data(as_text=True)
    response = client.post(form_path(installation), data={
        "csrf_token": csrf_from(page), "board": '{"id": "b1", "name": "Roadmap", '
        '"owner": {"login": "ada"}}', "list": '"l1"', "title": "Ship it", "urgent": "true",
        "details.points": "5"})
    assert response.status_code == 302
    run_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="run-status">succeeded<' in run_page
    assert "<th scope=\"row\"><code>cardId</code></th><td>card-7</td>" in run_page
    assert "/boards/b1/lists/l1/cards" in run_page and "HTTP 201" in run_page
    rerun = re.search(r'href="([^"]+rerun=[^"]+)">Run again with these values', run_page)
    prefilled = client.get(rerun.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert 'value="Ship it"' in prefilled
    assert '<option value="&#34;l1&#34;" selected>Now</option>' in prefilled
    history = client.get(f"/installations/{installation}/runs?status=succeeded")
    assert "action addCard" in history.get_data(as_text=True)
    failed_only = client.get(f"/installations/{installation}/runs?status=failed&action=addCard")
    assert "No runs match." in failed_only.get_data(as_text=True)


def test_a_sandbox_run_marks_what_would_have_been_sent(hosted, board):
    client, installation = board
    page = client.get(form_path(installation)).get_data(as_text=True)
    before = len(hosted.provider.received)
    response = client.post(form_path(installation), data={
        "csrf_token": csrf_from(page), "board": '{"id": "b1"}', "list": '"l1"',
        "title": "Try", "__sandbox": "true"})
    run_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "sandbox: nothing was sent" in run_page and "would have sent" in run_page
    assert len(hosted.provider.received) == before


def test_other_workspaces_get_404_on_run_pages(hosted, board):
    client, installation = board
    page = client.get(form_path(installation)).get_data(as_text=True)
    response = client.post(form_path(installation), data={
        "csrf_token": csrf_from(page), "board": '{"id": "b1"}', "list": '"l1"', "title": "x"})
    run_path = response.headers["Location"]
    bob = hosted.app.test_client()
    hosted.login(bob, "bob@example.com")
    for path in (run_path, form_path(installation), f"/installations/{installation}/runs"):
        assert bob.get(path).status_code == 404, path
