"""The bundled hmac_signing plugin, loaded from the repository's plugins/ folder
into a real host, against a local provider that verifies signatures itself."""

import dataclasses
import functools
import hashlib
import hmac
import json
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.wrappers import Request, Response

from host import create_app
from host.db import get_database
from host.errors import PluginFailed
from host.plugins import get_plugins, make_plugins
from host.principal import Principal
from host.services import installations
from host.services.accounts import personal_workspace
from host.services.runs import run_action

from ..conftest import REPO, make_config

SECRET = "whsec_test-Sh4red-s3cret"
TOLERANCE = 300
HEADER_FORMAT = re.compile(r"t=(\d+),v1=([0-9a-f]+)")


@pytest.fixture
def bundled(hosted_with):
    """A host whose plugins are the repository's bundled ones, with ``config``."""

    def build(manifests=None, **config):
        return hosted_with(manifests, PLUGINS_DIRS=[str(REPO / "plugins")], **config)

    return build


def settings(**miniapps):
    return {"hmac_signing": {"miniapps": miniapps}}


def expected_signature(secret, timestamp, method, target, body, algorithm="sha256"):
    payload = f"{timestamp}.{method}.{target}.".encode() + body
    return hmac.new(secret.encode(), payload, getattr(hashlib, algorithm)).hexdigest()


def verifier(secret, header="X-Signature", algorithm="sha256", answer=None):
    """A provider route that checks the signature from the raw request, as the
    README tells providers to, and answers 401 when it is wrong or stale."""
    checked = []

    def handle(request: Request) -> Response:
        raw_target = request.environ["RAW_URI"]
        match = HEADER_FORMAT.fullmatch(request.headers.get(header, ""))
        ok = False
        if match:
            timestamp, received = int(match[1]), match[2]
            expected = expected_signature(secret, timestamp, request.method, raw_target,
                                          request.get_data(), algorithm)
            ok = hmac.compare_digest(expected, received) and \
                abs(time.time() - timestamp) <= TOLERANCE
        checked.append((raw_target, ok))
        if not ok:
            return Response('{"message": "signature verification failed"}', status=401,
                            mimetype="application/json")
        if answer is not None:
            return answer(request)
        return Response(json.dumps({"text": request.get_json()["text"]}),
                        mimetype="application/json")

    handle.checked = checked
    return handle


def install(hosted, miniapp="keyed", **kwargs):
    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        if miniapp == "keyed":
            kwargs.setdefault("credentials", {"apiKey": "key-good-123"})
        return installations.install(hosted.app, db, who, miniapp, **kwargs).installation.id


def run(hosted, installation_id, action="echo", values=None):
    from host.db import Installation

    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        installation = db.get(Installation, installation_id)
        return run_action(hosted.app, db, who, installation, action,
                          {"text": "hi"} if values is None else values)


def received(hosted, path):
    return [r for r in hosted.provider.received if r.path == path]


def test_a_listed_miniapp_is_signed_and_the_provider_verifies_it(bundled):
    hosted = bundled(PLUGIN_SETTINGS=settings(keyed={"secret": SECRET}))
    assert get_plugins(hosted.app).hooks_of("hmac_signing") == ["prepare_request"]
    check = verifier(SECRET)
    hosted.provider.route("/echo", check)
    before = int(time.time())
    installation_id = install(hosted)
    done = run(hosted, installation_id)
    after = int(time.time())
    assert (done.status, done.output) == ("succeeded", {"echo": "hi"})
    assert check.checked == [("/echo", True)]
    [echo] = received(hosted, "/echo")
    assert echo.body == b'{"text":"hi"}'
    header = echo.headers["X-Signature"]
    timestamp, signature = HEADER_FORMAT.fullmatch(header).groups()
    assert before <= int(timestamp) <= after
    assert header == f"t={timestamp},v1=" + expected_signature(
        SECRET, timestamp, "POST", "/echo", b'{"text":"hi"}')
    assert len(signature) == 64
    # Every request of the mini-app is signed: the credential check and the
    # registration while installing too (GET without a body signs b"").
    [me] = received(hosted, "/me")
    t = HEADER_FORMAT.fullmatch(me.headers["X-Signature"])[1]
    assert me.headers["X-Signature"] == f"t={t},v1=" + expected_signature(
        SECRET, t, "GET", "/me", b"")
    [hooks] = received(hosted, "/hooks")
    t = HEADER_FORMAT.fullmatch(hooks.headers["X-Signature"])[1]
    assert hooks.headers["X-Signature"] == f"t={t},v1=" + expected_signature(
        SECRET, t, "POST", "/hooks", hooks.body)
    # The signature is redacted like a credential (it must not follow a redirect to
    # another origin); the secret is nowhere.
    [sent] = done.trace["requests"]
    assert sent["headers"]["X-Signature"] == "[redacted]"
    assert header.split(",v1=")[1] not in json.dumps(done.trace)
    assert sent["headers"]["X-Api-Key"] == "[redacted]"
    assert SECRET not in json.dumps(done.trace)
    assert get_plugins(hosted.app).hook_failures == {}


def test_sha512_a_chosen_header_and_the_target_exactly_as_sent(bundled, provider):
    # A URL whose query urllib3 re-encodes on the wire (%2f becomes %2F, the space
    # and é are percent-encoded): the signature covers the request line as sent.
    doc = {"name": "orders", "version": "1.0.0", "title": "Orders",
           "description": "Signed with SHA-512.",
           "allowedHosts": [f"127.0.0.1:{provider.port}"],
           "actions": [{"name": "echo", "title": "Echo", "parameters": {
               "type": "object", "properties": {"text": {"type": "string"}}},
               "requests": [{"url": provider.base + "/echo?raw=a%2fb&note={{text}}",
                             "method": "POST",
                             "headers": {"x-hub-signature": "set by the manifest"},
                             "body": {"text": "{{text}}"},
                             "mapping": {"echo": "$.text"}}]}]}
    hosted = bundled(manifests={"orders": doc}, PLUGIN_SETTINGS=settings(orders={
        "secret": SECRET, "header": "X-Hub-Signature", "algorithm": "sha512"}))
    check = verifier(SECRET, header="X-Hub-Signature", algorithm="sha512")
    hosted.provider.route("/echo", check)
    done = run(hosted, install(hosted, "orders"), values={"text": "café au lait"})
    assert (done.status, done.output) == ("succeeded", {"echo": "café au lait"}), done.error
    [echo] = received(hosted, "/echo")
    target = "/echo?raw=a%2Fb&note=caf%C3%A9%20au%20lait"
    assert check.checked == [(target, True)]
    assert echo.body == '{"text":"café au lait"}'.encode()
    header = echo.headers["X-Hub-Signature"]  # the manifest's value was replaced
    t, signature = HEADER_FORMAT.fullmatch(header).groups()
    assert len(signature) == 128
    assert signature == expected_signature(SECRET, t, "POST", target, echo.body, "sha512")
    assert [name for name, _ in done.trace["requests"][0]["headers"].items()
            if name.lower() == "x-hub-signature"] == ["X-Hub-Signature"]


def test_the_url_is_sent_as_signed_whatever_it_holds(bundled, provider):
    """Placeholders, a lower-case escape, a ``%`` that starts no escape, brackets
    and non-ASCII text: the plugin writes path and query percent-encoded before
    signing, and the provider receives exactly that request line."""
    doc = {"name": "files", "version": "1.0.0", "title": "Files",
           "description": "Signed paths.", "allowedHosts": [f"127.0.0.1:{provider.port}"],
           "actions": [{"name": "echo", "title": "Echo", "parameters": {
               "type": "object", "properties": {"name": {"type": "string"},
                                                "text": {"type": "string"}}},
               "requests": [{"url": provider.base + "/files/{{name}}/a%2fb?q={{text}}&raw=%zz",
                             "method": "GET", "mapping": {"echo": "$.text"}}]}]}
    hosted = bundled(manifests={"files": doc},
                     PLUGIN_SETTINGS=settings(files={"secret": SECRET}))
    check = verifier(SECRET, answer=lambda request: Response(
        '{"text": "ok"}', mimetype="application/json"))
    hosted.provider.route("/files/café menu/a/b", check)
    done = run(hosted, install(hosted, "files"),
               values={"name": "café menu", "text": "100% sure [x]"})
    assert (done.status, done.output) == ("succeeded", {"echo": "ok"}), done.error
    target = "/files/caf%C3%A9%20menu/a%2Fb?q=100%25%20sure%20%5Bx%5D&raw=%25zz"
    assert check.checked == [(target, True)]
    assert done.trace["requests"][0]["url"] == provider.base + target


ALLOWED = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-F]{2})*")


@functools.cache
def plugin_module():
    return make_plugins([str(REPO / "plugins")], [], {}).manager.get_plugin("hmac_signing")


@given(path=st.text(), query=st.text())
def test_the_target_is_fully_encoded_and_encoding_it_again_changes_nothing(path, query):
    plugin = plugin_module()
    url, target = plugin.on_the_wire(f"https://api.example.com/{path}?{query}".replace("#", ""))
    wire_path, _, wire_query = target.partition("?")
    assert wire_path.startswith("/") and ALLOWED.fullmatch(wire_path)
    assert ALLOWED.fullmatch(wire_query.replace("?", "%3F"))
    assert plugin.on_the_wire(url) == (url, target)
    assert url == "https://api.example.com" + target


def test_requests_of_other_miniapps_are_untouched(bundled):
    hosted = bundled(PLUGIN_SETTINGS=settings(open={"secret": SECRET}))
    done = run(hosted, install(hosted))
    assert (done.status, done.output) == ("succeeded", {"echo": "hi"})
    for path in ("/me", "/hooks", "/echo"):
        [request] = received(hosted, path)
        assert "X-Signature" not in request.headers
    assert "X-Signature" not in done.trace["requests"][0]["headers"]
    ping = run(hosted, install(hosted, "open"), action="ping", values={})
    assert ping.status == "succeeded"
    [request] = received(hosted, "/ping")
    assert request.headers["X-Signature"].startswith("t=")


def test_without_settings_nothing_is_signed(bundled):
    hosted = bundled()
    done = run(hosted, install(hosted))
    assert done.status == "succeeded"
    assert all("X-Signature" not in r.headers for r in hosted.provider.received)
    assert get_plugins(hosted.app).hook_failures == {}


def test_a_secret_the_provider_does_not_share_fails_the_run_with_its_401(bundled):
    hosted = bundled(PLUGIN_SETTINGS=settings(keyed={"secret": "not-what-the-provider-has"}))
    check = verifier(SECRET)
    hosted.provider.route("/echo", check)
    done = run(hosted, install(hosted))
    assert done.status == "failed"
    assert done.error == {"type": "upstream-failed",
                          "message": "request /actions/0/requests/0 (POST) failed with HTTP "
                                     "401: signature verification failed",
                          "request": "/actions/0/requests/0", "providerStatus": 401,
                          "providerMessage": "signature verification failed"}
    assert check.checked == [("/echo", False)]
    assert "not-what-the-provider-has" not in json.dumps(done.trace)


def test_a_stale_signature_is_refused_by_the_provider(bundled, monkeypatch):
    hosted = bundled(PLUGIN_SETTINGS=settings(keyed={"secret": SECRET}))
    check = verifier(SECRET)
    hosted.provider.route("/echo", check)
    installation_id = install(hosted)
    plugin = get_plugins(hosted.app).manager.get_plugin("hmac_signing")
    monkeypatch.setattr(plugin, "clock", lambda: time.time() - TOLERANCE - 60)  # 6 min slow
    done = run(hosted, installation_id)
    assert done.status == "failed"
    assert (done.error["providerStatus"], done.error["providerMessage"]) == (
        401, "signature verification failed")
    assert check.checked == [("/echo", False)]


MISSING_SECRET = ('PLUGIN_SETTINGS["hmac_signing"]["miniapps"]["keyed"]["secret"] is missing; '
                  "write the secret shared with the provider, as a non-empty string: "
                  '{"secret": "…"}')


@pytest.fixture
def restart(bundled, tmp_path):
    """``restart(hosted, **config)``: the same host — database, vault key, mini-apps,
    people — started again with other settings, as an operator would after editing
    ``minihost.cfg``."""
    started = []

    def start(hosted, **config):
        app = create_app(make_config(
            tmp_path, MINIAPPS_DIRS=hosted.app.config["MINIAPPS_DIRS"],
            VAULT_KEYS=hosted.app.config["VAULT_KEYS"], EGRESS_ALLOW_PRIVATE=True,
            ACTION_TIMEOUT=2, PLUGINS_DIRS=[str(REPO / "plugins")], **config),
            instance_path=tmp_path)
        started.append(app)
        return dataclasses.replace(hosted, app=app)

    yield start
    for app in started:
        get_database(app).engine.dispose()


def refused(hosted, message):
    """The plugin is listed as not loaded with ``message``."""
    plugins = get_plugins(hosted.app)
    assert [(f.name, f.error) for f in plugins.failures] == [
        ("hmac_signing", f"ValueError: {message}")]
    assert "hmac_signing" not in [p.name for p in plugins.loaded]


def test_a_missing_secret_fails_the_run_naming_the_plugin_and_sends_nothing(bundled, restart,
                                                                            caplog):
    installed = bundled()
    installation_id = install(installed)  # installed while the host had no settings
    hosted = restart(installed, PLUGIN_SETTINGS=settings(keyed={"header": "X-Signature"}))
    refused(hosted, MISSING_SECRET)
    assert ("plugin hmac_signing (folder " in caplog.text and
            f"is not loaded, its settings are wrong: {MISSING_SECRET}; until they are fixed "
            "each of its hooks fails with this message" in caplog.text)
    done = run(hosted, installation_id)
    assert done.status == "failed"
    assert done.error == {
        "type": "plugin-failed",
        "message": "request /actions/0/requests/0: plugin hmac_signing failed in "
                   f"prepare_request (ValueError: {MISSING_SECRET}); nothing was sent"}
    assert received(hosted, "/echo") == []
    failure = get_plugins(hosted.app).hook_failures[("hmac_signing", "prepare_request")]
    assert (failure.error, failure.count) == (f"ValueError: {MISSING_SECRET}", 1)


def test_a_bad_setting_also_stops_installing(bundled):
    hosted = bundled(PLUGIN_SETTINGS=settings(keyed={"header": "X-Signature"}))
    with pytest.raises(PluginFailed) as raised:  # the host's setup, not the credentials
        install(hosted)
    assert str(raised.value) == ("request /auth/test: plugin hmac_signing failed in "
                                 f"prepare_request (ValueError: {MISSING_SECRET}); nothing was "
                                 "sent")
    assert received(hosted, "/me") == []


BAD = [
    ({"keyed": {"secret": ""}},
     '["miniapps"]["keyed"]["secret"] is empty; write the secret shared with the provider, as '
     'a non-empty string: {"secret": "…"}'),
    ({"keyed": {"secret": 12345}},
     '["miniapps"]["keyed"]["secret"] is of type int; write the secret shared with the '
     'provider, as a non-empty string: {"secret": "…"}'),
    ({"keyed": {"secret": SECRET, "algorithm": "md5"}},
     '["miniapps"]["keyed"]["algorithm"] is \'md5\'; write "sha256" (the default) or '
     '"sha512"'),
    ({"keyed": {"secret": SECRET, "header": "X Signature"}},
     '["miniapps"]["keyed"]["header"] is \'X Signature\'; write a header name such as '
     '"X-Signature" (the default)'),
    ({"keyed": {"secret": SECRET, "header": "HOST"}},
     '["miniapps"]["keyed"]["header"] is \'HOST\'; write a header name such as '
     '"X-Signature" (the default)'),
    ({"keyed": {"secret": SECRET, "secrets": SECRET}},
     '["miniapps"]["keyed"] has unknown setting(s) \'secrets\'; the settings are \'secret\' '
     "(required), 'header' and 'algorithm'"),
    ({"keyed": None},
     '["miniapps"]["keyed"] is of type NoneType; write a dict such as {"secret": "…", '
     '"header": "X-Signature", "algorithm": "sha256"}'),
]


@pytest.mark.parametrize("miniapps, message", BAD)
def test_bad_settings_name_the_setting_and_never_the_secret(bundled, restart, caplog,
                                                            miniapps, message):
    installed = bundled()
    installation_id = install(installed)
    hosted = restart(installed, PLUGIN_SETTINGS=settings(**miniapps))
    refused(hosted, f'PLUGIN_SETTINGS["hmac_signing"]{message}')
    done = run(hosted, installation_id)
    assert done.error["message"] == (
        "request /actions/0/requests/0: plugin hmac_signing failed in prepare_request "
        f'(ValueError: PLUGIN_SETTINGS["hmac_signing"]{message}); nothing was sent')
    assert SECRET not in done.error["message"] and SECRET not in caplog.text
    assert received(hosted, "/echo") == []


ABOVE = [
    ({"hmac_signing": {"miniapp": {"keyed": {"secret": SECRET}}}},
     'PLUGIN_SETTINGS["hmac_signing"] has unknown setting(s) \'miniapp\'; the only setting is '
     "'miniapps' (required). "
     'PLUGIN_SETTINGS["hmac_signing"]["miniapps"] is missing; write a dict from mini-app name '
     "to its signing settings, for example "
     '{"hmac_signing": {"miniapps": {"<mini-app name>": {"secret": "…"}}}}'),
    ({"hmac_signing": {"miniapps": ["keyed"]}},
     'PLUGIN_SETTINGS["hmac_signing"]["miniapps"] is of type list; write a dict from mini-app '
     "name to its signing settings, for example "
     '{"hmac_signing": {"miniapps": {"<mini-app name>": {"secret": "…"}}}}'),
    (settings(keyed={"secret": SECRET, "algorithm": "md5"}),
     f'PLUGIN_SETTINGS["hmac_signing"]{BAD[2][1]}'),
]


@pytest.mark.parametrize("plugin_settings, message", ABOVE)
def test_any_mistake_stops_every_miniapp(bundled, restart, plugin_settings, message):
    """The plugin is not loaded, so the host cannot tell which requests it would
    have signed: none is sent, whichever mini-app it belongs to."""
    installed = bundled()
    keyed, ping = install(installed), install(installed, "open")
    hosted = restart(installed, PLUGIN_SETTINGS=plugin_settings)
    refused(hosted, message)
    for installation_id, action, values in ((keyed, "echo", None), (ping, "ping", {})):
        done = run(hosted, installation_id, action, values)
        assert done.error["message"].endswith(
            f"plugin hmac_signing failed in prepare_request (ValueError: {message}); "
            "nothing was sent")
    assert received(hosted, "/echo") == received(hosted, "/ping") == []


def test_the_readme_documents_the_scheme_and_its_messages():
    readme = (REPO / "plugins" / "hmac_signing" / "README.md").read_text()
    assert 'signed payload = f"{t}.{METHOD}.{path_and_query}.".encode("utf-8") + body' in readme
    assert "hmac.compare_digest(expected, received)" in readme
    assert "TOLERANCE = 5 * 60" in readme
    assert MISSING_SECRET in readme.replace('"acme-orders"', '"keyed"')
    for _, message in BAD[2:4] + BAD[5:6] + ABOVE[1:2]:
        assert message.replace('"keyed"', '"acme-orders"') in readme


def test_the_readme_verification_snippet_accepts_what_the_plugin_sends(bundled):
    readme = (REPO / "plugins" / "hmac_signing" / "README.md").read_text()
    snippet = readme.split("## Verifying", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    verify = namespace["verify"]
    hosted = bundled(PLUGIN_SETTINGS=settings(keyed={"secret": SECRET}))
    done = run(hosted, install(hosted))
    assert done.status == "succeeded"
    [echo] = received(hosted, "/echo")
    header = echo.headers["X-Signature"]
    assert verify(SECRET, header, "POST", "/echo", echo.body) is True
    assert verify(SECRET, header, "POST", "/echo", echo.body + b" ") is False
    assert verify("another", header, "POST", "/echo", echo.body) is False
    assert verify(SECRET, header, "PUT", "/echo", echo.body) is False
    assert verify(SECRET, "v1=abc", "POST", "/echo", echo.body) is False
    old = int(time.time()) - 301
    stale = f"t={old},v1=" + expected_signature(SECRET, old, "POST", "/echo", echo.body)
    assert verify(SECRET, stale, "POST", "/echo", echo.body) is False
