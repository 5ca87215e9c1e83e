"""Redaction never lets a secret of any content into a trace or an error."""

import base64
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.engine import Context, EgressPolicy, SandboxClient, run_chain
from host.engine.redact import REDACTED, Redactor, secret_values
from host.engine.render import operator_client

from .helpers import API_KEY_AUTH, requests_of

REQUESTS = requests_of([{
    "url": "https://api.example.com/p/[[apiKey]]/{{v}}",
    "method": "POST",
    "headers": {"Authorization": "Bearer [[apiKey]]", "X-Note": "n-[[token]]-{{v}}"},
    "queryParams": {"k": "[[apiKey]]", "both": "[[token]]{{v}}"},
    "body": {"whole": "[[apiKey]]", "inside": "x [[token]] y", "list": ["[[apiKey]]"],
             "user": "{{v}}"},
    "responseSchema": {"type": "object", "properties": {"echo": {"type": "string"}}},
    "mapping": {"echo": "$.echo"},
}], hosts=["api.example.com"], params=("v",), auth=API_KEY_AUTH)

SECRET = st.text(alphabet=st.characters(blacklist_characters="\x00"), min_size=1, max_size=24)
METADATA_FIELDS = {"request", "method"}  # the manifest's own pointer and method


def strings(value, key=None):
    """Every string of a trace (keys included), skipping the request's own labels."""
    if isinstance(value, str):
        if key not in METADATA_FIELDS:
            yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v, key)


def run(api_key, token, user):
    ctx = Context(parameters={"v": user}, credentials={"apiKey": api_key, "token": token})
    result = run_chain(REQUESTS, ctx, SandboxClient(EgressPolicy()),
                       allowed_hosts=["api.example.com"], deadline=time.monotonic() + 5)
    texts = list(strings(result.trace))
    if result.error is not None:
        texts.append(str(result.error))
    return [text.replace(REDACTED, "\x00") for text in texts]


def occurrences(texts, secret):
    return sum(text.count(secret) for text in texts)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(api_key=SECRET, token=SECRET, user=st.text(max_size=30))
def test_no_secret_reaches_any_trace_field(api_key, token, user):
    """Whatever their content, secrets appear in what survives redaction no more
    often than in the same trace made with stand-in secrets: only where the
    manifest's or the user's own text happens to contain them."""
    real = run(api_key, token, user)
    stand_in = run("\ue000", "\ue001", user)
    for secret in (api_key, token):
        assert occurrences(real, secret) <= occurrences(stand_in, secret), (secret, real)


def test_non_secret_credential_names_stay_readable():
    values = secret_values({"accessToken": "abcdef", "tokenType": "bot", "scope": "repo",
                            "expiresAt": 1_900_000_000, "expiresIn": 3600})
    assert values == ["abcdef"]
    assert Redactor(values).text("the bot may use repo") == "the bot may use repo"


def test_encoded_forms_are_redacted():
    redactor = Redactor(["a b/c&d\"é"])
    assert redactor.text("q=a+b%2Fc%26d%22%C3%A9 and a%20b%2Fc%26d%22%C3%A9") == (
        f"q={REDACTED} and {REDACTED}")
    assert redactor.text(json.dumps({"k": 'a b/c&d"é'})) == '{"k": "[redacted]"}'


def test_operator_client_basic_auth():
    values = operator_client("my id", "s3cr:et")
    assert values["clientBasicAuth"] == "Basic " + base64.b64encode(b"my+id:s3cr%3Aet").decode()
    assert operator_client("id", None) == {"clientId": "id"}


def test_credentials_mapped_mid_chain_are_hidden_in_later_requests(provider, client):
    provider.json("/register", '{"secret": "S3CR3T-WEBHOOK-KEY"}')
    provider.json("/confirm", "{}")
    from host.manifest import compile_manifest

    doc = {"name": "x-app", "version": "1.0.0", "title": "X", "description": "d",
           "allowedHosts": [provider.address], "actions": [{"name": "a", "title": "A",
           "requests": [
               {"url": provider.base + "/register", "method": "POST", "body": {},
                "mapping": {"hookSecret": "$.secret"}},
               {"url": provider.base + "/confirm?s={{hookSecret}}", "method": "POST",
                "headers": {"X-Sig": "{{hookSecret}}"}, "body": {"k": "{{hookSecret}}"}}]}]}
    compiled = compile_manifest(doc, allow_private=True).action("a").requests
    result = run_chain(compiled, Context(), client, allowed_hosts=[provider.address],
                       deadline=time.monotonic() + 5, persist="credentials")
    assert result.ok, result.error
    assert provider.received[-1].headers["X-Sig"] == "S3CR3T-WEBHOOK-KEY"
    assert "S3CR3T-WEBHOOK-KEY" not in json.dumps(result.trace)


def test_secrets_are_redacted_before_long_texts_are_cut(provider, client):
    secret = "sk_live_" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    provider.json("/x", json.dumps({"message": "x" * 480 + secret}), status=400)
    compiled = requests_of([{"url": provider.base + "/x", "method": "GET",
                             "headers": {"X-Key": "[[apiKey]]"}}],
                           hosts=[provider.address], auth=API_KEY_AUTH)
    result = run_chain(compiled, Context(credentials={"apiKey": secret}), client,
                       allowed_hosts=[provider.address], deadline=time.monotonic() + 5)
    text = str(result.error) + (result.error.provider_message or "")
    assert "sk_live_ABCDEFGHIJ" not in text and REDACTED in text


def test_redirect_locations_are_redacted(provider, client):
    from werkzeug.wrappers import Response

    provider.route("/v1", lambda r: Response("", status=301, headers={
        "Location": "/v2?key=" + r.args["key"]}))
    provider.json("/v2", "{}")
    compiled = requests_of([{"url": provider.base + "/v1", "method": "GET",
                             "queryParams": {"key": "[[apiKey]]"}}],
                           hosts=[provider.address], auth=API_KEY_AUTH)
    result = run_chain(compiled, Context(credentials={"apiKey": "sk_redirect_secret"}), client,
                       allowed_hosts=[provider.address], deadline=time.monotonic() + 5)
    assert result.ok
    assert result.trace[0]["redirects"][0]["location"].endswith("/v2?key=[redacted]")


@pytest.mark.parametrize("body", ["[" * 200000, "[" * 65 + "]" * 65,
                                  '{"a": ' * 70 + "1" + "}" * 70])
def test_answers_nested_past_the_limit_fail_the_request(provider, client, body):
    provider.json("/deep", body)
    compiled = requests_of([{"url": provider.base + "/deep", "method": "GET",
                             "mapping": {"all": "$"}}], hosts=[provider.address])
    result = run_chain(compiled, Context(), client, allowed_hosts=[provider.address],
                       deadline=time.monotonic() + 5)
    assert not result.ok
    assert str(result.error) == ("request /actions/0/requests/0: the provider's answer nests "
                                 "deeper than 64 levels, so it was not used")
    assert result.error.slug == "response-too-deep"


def test_answers_at_the_limit_are_read(provider, client):
    provider.json("/deep", "[" * 64 + "]" * 64)
    compiled = requests_of([{"url": provider.base + "/deep", "method": "GET",
                             "mapping": {"all": "$"}}], hosts=[provider.address])
    result = run_chain(compiled, Context(), client, allowed_hosts=[provider.address],
                       deadline=time.monotonic() + 5)
    assert result.ok
