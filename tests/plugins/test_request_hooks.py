"""The request hooks — prepare_request, response_received, sandbox_response — and
system_values, through real runs against a local provider."""

import json
import textwrap

import pytest

from host.db import get_database
from host.errors import ValidationError
from host.plugins import get_plugins
from host.principal import Principal
from host.services import installations
from host.services.accounts import personal_workspace
from host.services.runs import run_action


@pytest.fixture
def plugged(tmp_path, hosted_with):
    """A host whose plugins folder holds the given modules."""

    def build(modules, manifests=None, **config):
        folder = tmp_path / "plugins"
        folder.mkdir(exist_ok=True)
        for name, body in modules.items():
            (folder / f"{name}.py").write_text(textwrap.dedent(body))
        return hosted_with(manifests, PLUGINS_DIRS=[str(folder)], **config)

    return build


def run(hosted, miniapp="keyed", action="echo", values=None, sandbox=False, **install):
    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        if miniapp == "keyed":
            install.setdefault("credentials", {"apiKey": "key-good-123"})
        installation = installations.install(hosted.app, db, who, miniapp,
                                             **install).installation
        done = run_action(hosted.app, db, who, installation, action,
                          {"text": "hi"} if values is None else values, sandbox=sandbox)
        return done, installation.id


SIGNER = """
    from host.plugins import hookimpl

    SEEN = []

    @hookimpl
    def prepare_request(request, miniapp, installation_id):
        SEEN.append((miniapp, installation_id, request.method, request.pointer))
        request.headers.append(("X-Signed", f"{request.method} {request.url}"))
        request.headers.append(("X-Secret-Sig", "s3cr3t-signature"))
        request.secret_headers = request.secret_headers | {"x-secret-sig"}
"""


def test_hook_prepare_request(plugged):
    hosted = plugged({"signer": SIGNER})
    done, installation_id = run(hosted)
    assert done.status == "succeeded" and done.output == {"echo": "hi"}
    echo = [r for r in hosted.provider.received if r.path == "/echo"][-1]
    base = hosted.provider.base
    assert echo.headers["X-Signed"] == f"POST {base}/echo"
    assert echo.headers["X-Secret-Sig"] == "s3cr3t-signature"
    seen = get_plugins(hosted.app).manager.get_plugin("signer").SEEN
    assert ("keyed", None, "GET", "/auth/test") in seen  # the credential check, pre-install
    assert ("keyed", installation_id, "POST", "/actions/0/requests/0") in seen
    [sent] = done.trace["requests"]
    assert sent["headers"]["X-Signed"] == f"POST {base}/echo"
    assert sent["headers"]["X-Secret-Sig"] == "[redacted]"
    assert "s3cr3t-signature" not in json.dumps(done.trace)


def test_a_prepare_request_that_raises_fails_the_run_and_sends_nothing(plugged):
    hosted = plugged({"signer": """
        from host.plugins import hookimpl

        @hookimpl
        def prepare_request(request, miniapp):
            if request.pointer.startswith("/actions"):
                raise ValueError("no signing key configured")
    """})
    done, _ = run(hosted)
    assert done.status == "failed"
    assert done.error == {
        "type": "plugin-failed",
        "message": "request /actions/0/requests/0: plugin signer failed in prepare_request "
                   "(ValueError: no signing key configured); nothing was sent"}
    assert [r.path for r in hosted.provider.received if r.path == "/echo"] == []
    [failure] = get_plugins(hosted.app).hook_failures.values()
    assert (failure.plugin, failure.hook, failure.count) == ("signer", "prepare_request", 1)
    client = hosted.app.test_client()
    hosted.login(client, "ops@example.com")
    page = client.get("/-/plugins").get_data(as_text=True)
    assert "<td>signer</td><td><code>prepare_request</code></td><td>1</td>" in page
    assert "ValueError: no signing key configured" in page


def test_a_plugin_cannot_send_a_request_elsewhere(plugged):
    hosted = plugged({"redirector": """
        from host.plugins import hookimpl

        @hookimpl
        def prepare_request(request):
            if request.pointer.startswith("/actions"):
                request.url = "http://metadata.google.internal/computeMetadata/v1/"
    """})
    done, _ = run(hosted)
    assert done.status == "failed" and done.error["type"] == "egress-denied"
    assert "metadata.google.internal" in done.error["message"]


def test_hook_response_received(plugged):
    hosted = plugged({"shouter": """
        import json
        from host.plugins import hookimpl

        SEEN = []

        @hookimpl
        def response_received(request, response, miniapp):
            SEEN.append((miniapp, request.pointer, response.status))
            if request.pointer.startswith("/actions"):
                body = json.loads(response.body)
                response.body = json.dumps({"text": body["text"].upper()}).encode()
    """})
    done, _ = run(hosted)
    assert done.output == {"echo": "HI"}
    assert get_plugins(hosted.app).manager.get_plugin("shouter").SEEN[-1] == (
        "keyed", "/actions/0/requests/0", 200)


def test_hook_sandbox_response(plugged):
    hosted = plugged({"fixtures": """
        from host.engine import Response
        from host.plugins import hookimpl

        @hookimpl
        def sandbox_response(request, spec):
            if request.url.endswith("/echo"):
                return Response(200, [("Content-Type", "application/json")],
                                b'{"text": "from the fixtures plugin"}', 0.0)
            return None
    """, "broken": """
        from host.plugins import hookimpl

        @hookimpl
        def sandbox_response(request):
            raise RuntimeError("fixtures store offline")
    """})
    done, _ = run(hosted, sandbox=True)
    assert (done.status, done.sandbox) == ("succeeded", True)
    assert done.output == {"echo": "from the fixtures plugin"}
    assert done.trace["requests"][0]["wouldHaveSent"] is True
    assert [r.path for r in hosted.provider.received if r.path == "/echo"] == []
    assert get_plugins(hosted.app).hook_failures == {}  # the answer came before "broken"
    ping, _ = run(hosted, miniapp="open", action="ping", values={}, sandbox=True)
    assert ping.status == "succeeded"  # nobody could answer: the generated answer
    failure = get_plugins(hosted.app).hook_failures[("broken", "sandbox_response")]
    assert failure.error == "RuntimeError: fixtures store offline"


TENANT_APP = {
    "name": "tenanted", "version": "1.0.0", "title": "Tenanted",
    "description": "Uses values a plugin adds.",
    "actions": [{"name": "hello", "title": "Hello", "requests": [{
        "url": "{{hostUrl}}/x", "method": "POST", "body": {"tenant": "{{tenant}}"}}]}],
}


def test_hook_system_values(plugged, provider, caplog):
    app_doc = json.loads(json.dumps(TENANT_APP))
    app_doc["allowedHosts"] = [f"127.0.0.1:{provider.port}"]
    app_doc["actions"][0]["requests"][0]["url"] = provider.base + "/echo-tenant"
    app_doc["actions"].append({"name": "broken", "title": "Broken", "requests": [{
        "url": provider.base + "/echo-tenant", "method": "POST", "body": {"x": "in {{flaky}}"}}]})
    hosted = plugged({"tenancy": """
        from host.plugins import hookimpl

        def flaky(installation):
            raise KeyError("region")

        @hookimpl
        def system_values(config):
            return {"tenant": lambda inst: f"{inst['miniapp']}:{inst['id']}",
                    "flaky": flaky, "hostUrl": lambda inst: "https://evil.example"}
    """}, manifests={"tenanted": app_doc})
    provider.json("/echo-tenant", "{}")
    done, installation_id = run(hosted, miniapp="tenanted", action="hello", values={})
    assert done.status == "succeeded", done.error
    sent = [r for r in hosted.provider.received if r.path == "/echo-tenant"][-1]
    assert json.loads(sent.body) == {"tenant": f"tenanted:{installation_id}"}
    assert ("plugin tenancy failed in system_values: ValueError: 'hostUrl' is a host value"
            in caplog.text)
    with pytest.raises(ValidationError) as refused:  # a setting cannot pose as the plugin's
        run(hosted, miniapp="tenanted", action="hello", values={},
            config={"tenant": "someone-else"})
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("config.tenant", "is a value the host sets itself; leave it out of config")]
    broken, _ = run(hosted, miniapp="tenanted", action="broken", values={})
    assert broken.status == "failed"
    assert "{{flaky}}" in broken.error["message"]
    assert get_plugins(hosted.app).hook_failures[("tenancy", "system_values")].error == \
        "KeyError: 'region'"


def test_the_lint_knows_plugin_values_only_when_the_plugin_is_loaded(plugged, provider):
    from host.manifest import validate_document

    doc = dict(TENANT_APP, allowedHosts=["api.example.com"])
    doc["actions"] = [{"name": "hello", "title": "Hello", "requests": [{
        "url": "https://api.example.com/x", "method": "POST", "body": {"tenant": "{{tenant}}"}}]}]
    assert [p.message for p in validate_document(doc, "m.json", system_values=["tenant"])] == []
    doc["auth"] = {"type": "none"}
    shadowing = dict(doc, auth={"type": "apiKey", "fields": {"type": "object"},
                                "config": {"tenant": "fixed"}})
    assert [(p.pointer, p.message) for p in validate_document(
        shadowing, "m.json", system_values=["tenant"])] == [(
            "/auth/config/tenant", "'tenant' is a system value the host sets; a config key "
            "cannot replace it, so give the setting another name")]
    [problem] = validate_document(doc, "m.json")
    assert problem.message.startswith("placeholder {{tenant}} in action hello is not")


def test_render_strategies_draw_the_whole_form(plugged, provider):
    from ..conftest import csrf_from

    wizard_app = {
        "name": "wizard-app", "version": "1.0.0", "title": "Wizard App",
        "description": "A form drawn by a plugin.", "allowedHosts": [f"127.0.0.1:{provider.port}"],
        "actions": [
            {"name": "greet", "title": "Greet", "renderStrategy": "wizard",
             "parameters": {"type": "object", "required": ["text"],
                            "properties": {"text": {"type": "string", "minLength": 2}}},
             "requests": [{"url": provider.base + "/echo", "method": "POST",
                           "body": {"text": "{{text}}"}, "mapping": {"echo": "$.text"}}]},
            {"name": "plain", "title": "Plain", "renderStrategy": "missing",
             "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
             "requests": [{"url": provider.base + "/echo", "method": "POST",
                           "body": {"text": "{{text}}"}}]}]}
    hosted = plugged({"wizard": """
        from markupsafe import Markup, escape
        from host.plugins import RenderStrategy, hookimpl

        def render(form, values, errors):
            fields = "".join(
                f'<label for="f-{f.name}">Step {i}: {escape(f.title)}</label>'
                f'<input type="text" id="f-{f.name}" name="{f.name}" '
                f'value="{escape(values.get(f.name) or "")}">'
                + (f'<p class="wizard-error">{escape(errors[f.name])}</p>'
                   if f.name in errors else "")
                for i, f in enumerate(form.fields, 1))
            return Markup(f'<div class="wizard">{fields}</div>')

        @hookimpl
        def form_widgets():
            return {"wizard": RenderStrategy(render, "one field per step")}
    """}, manifests={"wizard-app": wizard_app})
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    page = client.get("/miniapps/wizard-app").get_data(as_text=True)
    installed = client.post("/miniapps/wizard-app/install", data={"csrf_token": csrf_from(page)})
    form_url = installed.headers["Location"] + "/actions/greet"
    form = client.get(form_url).get_data(as_text=True)
    assert ('<div class="wizard"><label for="f-text">Step 1: text</label>'
            '<input type="text" id="f-text" name="text" value=""></div>') in form
    wrong = client.post(form_url, data={"text": "x", "csrf_token": csrf_from(form)})
    assert wrong.status_code == 422
    assert '<p class="wizard-error">must be at least 2 characters</p>' in wrong.get_data(
        as_text=True)
    ran = client.post(form_url, data={"text": "hello", "csrf_token": csrf_from(form)})
    assert ran.status_code == 302
    assert json.loads([r for r in hosted.provider.received if r.path == "/echo"][-1].body) == {
        "text": "hello"}
    plain = client.get(installed.headers["Location"] + "/actions/plain").get_data(as_text=True)
    assert 'class="wizard"' not in plain and 'name="text"' in plain  # no such strategy: auto


def test_a_plugin_error_quoting_a_credential_is_redacted_everywhere(plugged, caplog):
    hosted = plugged({"parser": """
        from host.plugins import hookimpl

        @hookimpl
        def prepare_request(request):
            if request.pointer.startswith("/actions"):
                int(dict(request.headers)["X-Api-Key"])
    """})
    done, _ = run(hosted)
    assert done.error["message"] == (
        "request /actions/0/requests/0: plugin parser failed in prepare_request (ValueError: "
        "invalid literal for int() with base 10: '[redacted]'); nothing was sent")
    failure = get_plugins(hosted.app).hook_failures[("parser", "prepare_request")]
    assert failure.error == "ValueError: invalid literal for int() with base 10: '[redacted]'"
    assert "key-good-123" not in caplog.text


def test_a_body_a_plugin_rewrites_is_what_the_trace_shows(plugged):
    hosted = plugged({"wrapper": """
        import json
        from host.plugins import hookimpl

        @hookimpl
        def prepare_request(request):
            if request.pointer.startswith("/actions"):
                request.body = json.dumps({"envelope": json.loads(request.body)}).encode()
    """})
    done, _ = run(hosted, sandbox=True)
    assert done.trace["requests"][0]["body"] == {"envelope": {"text": "hi"}}


def test_sandbox_answers_of_the_wrong_kind_are_reported_and_skipped(plugged):
    hosted = plugged({"a_good": """
        from host.engine import Response
        from host.plugins import hookimpl

        @hookimpl
        def sandbox_response(request):
            return Response(200, [("Content-Type", "application/json")], b'{"text": "ok"}',
                            0.0)
    """, "b_textual": """
        from host.engine import Response
        from host.plugins import hookimpl

        @hookimpl
        def sandbox_response(request):
            return Response(200, [], '{"text": "not bytes"}', 0.0)
    """})
    done, _ = run(hosted, sandbox=True)
    assert done.output == {"echo": "ok"}  # b_textual, asked first, was skipped
    assert get_plugins(hosted.app).hook_failures[("b_textual", "sandbox_response")].error == (
        "TypeError: answered Response with a text body, not a host.engine.Response with a "
        "bytes body; it was not used")
