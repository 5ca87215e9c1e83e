"""Installing and managing mini-apps through the pages."""

import re

from ..conftest import csrf_from


def signed_in(hosted, email="alice@example.com"):
    client = hosted.app.test_client()
    hosted.login(client, email)
    return client


def post(client, path, page_path, **data):
    token = csrf_from(client.get(page_path).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data})


def test_install_a_none_miniapp_from_the_marketplace(hosted):
    client = signed_in(hosted)
    detail = client.get("/miniapps/open").get_data(as_text=True)
    assert ">Install</button>" in detail
    response = post(client, "/miniapps/open/install", "/miniapps/open")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="installation-status">active<' in page
    assert "Open Data is installed." in page


def test_anonymous_visitors_are_asked_to_sign_in(hosted):
    page = hosted.app.test_client().get("/miniapps/keyed").get_data(as_text=True)
    assert "Sign in to install" in page and "Install and connect" not in page


def test_connect_form_renders_from_the_fields(hosted):
    client = signed_in(hosted)
    response = post(client, "/miniapps/keyed/install", "/miniapps/keyed")
    assert response.headers["Location"] == "/miniapps/keyed/connect"
    page = client.get("/miniapps/keyed/connect").get_data(as_text=True)
    assert '<label for="f-apiKey">API key <span class="required"' in page
    assert re.search(r'<input type="password" id="f-apiKey" name="apiKey" required', page)


def test_refused_credentials_show_the_provider_message_and_keep_nothing(hosted):
    client = signed_in(hosted)
    response = post(client, "/miniapps/keyed/connect", "/miniapps/keyed/connect",
                    apiKey="key-wrong-1")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Keyed Service did not accept the credentials: Invalid API key" in page
    assert "key-wrong-1" not in page
    assert client.get("/installations").get_data(as_text=True).count("<tr>") == 0


def test_field_errors_are_shown_at_the_field(hosted):
    client = signed_in(hosted)
    response = post(client, "/miniapps/keyed/connect", "/miniapps/keyed/connect", apiKey="short")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert '<p class="field-error" id="f-apiKey-error">must be at least 8 characters</p>' in page
    assert 'aria-invalid="true"' in page
    assert hosted.provider.received == []


def test_basic_connect_keeps_the_username_not_the_password(hosted):
    client = signed_in(hosted)
    response = post(client, "/miniapps/basicapp/connect", "/miniapps/basicapp/connect",
                    username="ada", password="wrong-pw")
    page = response.get_data(as_text=True)
    assert 'name="username" required aria-required="true" value="ada"' in page
    assert "wrong-pw" not in page
    ok = post(client, "/miniapps/basicapp/connect", "/miniapps/basicapp/connect",
              username="ada", password="s3cret-pw")
    detail = client.get(ok.headers["Location"]).get_data(as_text=True)
    assert "<code>basicAuth</code>, <code>password</code>, <code>username</code>" in detail
    assert "s3cret-pw" not in detail


def test_detail_shows_metadata_runs_and_uninstall(hosted):
    client = signed_in(hosted)
    created = post(client, "/miniapps/keyed/connect", "/miniapps/keyed/connect",
                   apiKey="key-good-123")
    path = created.headers["Location"]
    page = client.get(path).get_data(as_text=True)
    assert "<code>account</code>: Alice Corp" in page
    assert "auth registration" in page
    installation_id = path.rsplit("/", 1)[1]
    audit = client.get(f"/installations/{installation_id}/audit").get_data(as_text=True)
    assert "installed" in audit and "registered" in audit
    gone = post(client, f"/installations/{installation_id}/uninstall", path)
    assert gone.headers["Location"] == "/installations"
    assert client.get(path).status_code == 404


def test_another_workspace_cannot_see_the_pages(hosted):
    alice = signed_in(hosted)
    created = post(alice, "/miniapps/open/install", "/miniapps/open")
    path = created.headers["Location"]
    bob = signed_in(hosted, "bob@example.com")
    for suffix in ("", "/audit", "/connect"):
        assert bob.get(path + suffix).status_code == 404
    assert post(bob, path + "/uninstall", "/installations").status_code == 404
    assert alice.get(path).status_code == 200


def test_only_plain_fields_are_filled_back_in_after_an_error(hosted):
    from types import SimpleNamespace

    from host.forms import build_form
    from host.web.installations import _submitted_values

    form = build_form({"type": "object", "properties": {
        "subdomain": {"type": "string", "x-widget": "text"},
        "apiKey": {"type": "string", "x-widget": "password"},
        "signingKey": {"type": "string", "x-widget": "date"},
        "region": {"type": "string", "enum": ["eu", "us"]}}})
    manifest = SimpleNamespace(auth=SimpleNamespace(form=form))
    data = {"subdomain": "acme", "apiKey": "k-secret", "signingKey": "s-secret", "region": "eu"}
    with hosted.app.test_request_context("/", method="POST", data=data):
        assert _submitted_values(manifest) == {"subdomain": "acme", "region": "eu"}


def test_rename_from_the_installation_page(hosted):
    client = signed_in(hosted)
    location = post(client, "/miniapps/open/install", "/miniapps/open").headers["Location"]
    page = client.get(location).get_data(as_text=True)
    assert 'id="installation-name" name="name" value="open"' in page
    renamed = post(client, f"{location}/rename", location, name="public-data")
    assert renamed.status_code == 302
    page = client.get(location).get_data(as_text=True)
    assert "Renamed to public-data." in page and 'value="public-data"' in page
    refused = post(client, f"{location}/rename", location, name="Public Data")
    page = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert ("Not renamed: the name must be 1 to 64 lower-case letters, digits, &#39;-&#39; or "
            "&#39;_&#39;, starting with a letter or digit.") in page
    assert 'value="public-data"' in page
