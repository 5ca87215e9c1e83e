"""Placeholder rules (MANIFEST §2.2) on the rendered request, without a network."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.engine import Context, render_request
from host.errors import RenderFailed

from .helpers import API_KEY_AUTH, requests_of

URL = "https://api.example.com"


def render(request, auth=API_KEY_AUTH, params=("v", "w", "user", "items", "n", "flag"), **ctx):
    [compiled] = requests_of([request], hosts=["api.example.com", "*.example.com"],
                             params=params, auth=auth)
    return render_request(compiled, Context(**ctx))


def body(outgoing):
    return json.loads(outgoing.body)


@pytest.mark.parametrize("value", [{"a": [1, 2]}, [1, "x"], 42, 4.5, True, False, "text"])
def test_whole_value_placeholders_keep_their_type(value):
    out = render({"url": URL, "method": "POST", "body": {"data": "{{v}}"}},
                 parameters={"v": value})
    assert body(out) == {"data": value}


@pytest.mark.parametrize(
    ("value", "text"),
    [("s", "x=s"), (42, "x=42"), (4.5, "x=4.5"), (True, "x=true"), (False, "x=false"),
     ({"a": [1, "b"]}, 'x={"a":[1,"b"]}'), ([1, 2], "x=[1,2]")],
)
def test_placeholders_inside_longer_strings_are_stringified(value, text):
    out = render({"url": URL, "method": "POST", "body": {"s": "x={{v}}"}},
                 parameters={"v": value})
    assert body(out) == {"s": text}


def test_dotted_keys_and_indexes():
    out = render({"url": URL, "method": "POST",
                  "body": {"name": "{{user.name}}", "first": "{{items.0.id}}",
                           "last": "{{items.-1.id}}"}},
                 parameters={"user": {"name": "Ada"}, "items": [{"id": 1}, {"id": 2}]})
    assert body(out) == {"name": "Ada", "first": 1, "last": 2}


def test_resolution_order_for_values():
    request = {"url": URL, "method": "POST",
               "body": {"a": "{{v}}", "b": "{{w}}", "c": "{{scope}}", "d": "{{hostUrl}}"}}
    auth = dict(API_KEY_AUTH, config={"scope": "from-config", "w": "config-w"})
    [compiled] = requests_of([request], hosts=["api.example.com"], params=("v",), auth=auth)
    ctx = Context(parameters={"v": "param"}, forwarded={"v": "mapped", "w": "mapped-w"},
                  config={"scope": "from-config", "w": "config-w"},
                  system={"hostUrl": "https://hub", "v": "system"})
    assert body(render_request(compiled, ctx)) == {
        "a": "param", "b": "mapped-w", "c": "from-config", "d": "https://hub"}


def test_secret_namespace_order_and_separation():
    request = {"url": URL, "method": "GET",
               "headers": {"A": "[[apiKey]]", "B": "[[token]]", "C": "[[clientSecret]]"}}
    out = render(request, credentials={"apiKey": "cred"}, metadata={"token": "meta",
                 "apiKey": "meta-key"}, client={"clientSecret": "cs"},
                 parameters={"apiKey": "from-form"})
    assert out.headers[:3] == [("A", "cred"), ("B", "meta"), ("C", "cs")]
    assert out.carries_secrets and out.secret_headers == {"a", "b", "c"}


def test_a_value_never_resolves_to_a_credential():
    [compiled] = requests_of([{"url": URL, "method": "POST", "body": {"t": "{{token}}"}}],
                             hosts=["api.example.com"], params=("token",), auth=API_KEY_AUTH)
    out = render_request(compiled, Context(credentials={"token": "secret"}))
    assert body(out) == {}
    assert not out.carries_secrets


def test_missing_whole_values_drop_their_member():
    out = render({"url": URL, "method": "POST", "headers": {"X-Opt": "{{w}}", "X-Keep": "k"},
                  "queryParams": {"opt": "{{w}}", "keep": "1"},
                  "body": {"opt": "{{w}}", "nested": {"opt": "{{w}}", "keep": 1},
                           "list": ["{{w}}", 2]}}, parameters={})
    assert ("X-Opt", "") not in out.headers and ("X-Keep", "k") in out.headers
    assert out.url == URL + "?keep=1"
    assert body(out) == {"nested": {"keep": 1}, "list": [2]}


def test_null_counts_as_missing():
    out = render({"url": URL, "method": "POST", "body": {"opt": "{{w}}"}},
                 parameters={"w": None})
    assert body(out) == {}


@pytest.mark.parametrize(
    ("request_", "where"),
    [({"url": URL + "/{{w}}", "method": "GET"}, "the URL"),
     ({"url": URL, "method": "GET", "headers": {"X": "Bearer {{w}}"}}, "header X"),
     ({"url": URL, "method": "POST", "body": {"a": {"b": "x {{w}}"}}}, "the body.a.b")],
)
def test_missing_values_inside_strings_fail_before_sending(request_, where):
    with pytest.raises(RenderFailed) as info:
        render(request_, parameters={})
    assert str(info.value) == (
        f"request /actions/0/requests/0: placeholder {{{{w}}}} in {where} has no value; fill "
        "it in, or make the manifest use it as a whole value so it can be left out")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [("../admin", "..%2Fadmin"), ("a/b", "a%2Fb"), ("a?x=1", "a%3Fx%3D1"), ("a#f", "a%23f"),
     ("%2e%2e", "%252e%252e"), ("a b", "a%20b"), ("é", "%C3%A9")],
)
def test_path_values_are_percent_encoded(value, encoded):
    out = render({"url": URL + "/items/{{v}}/x", "method": "GET"}, parameters={"v": value})
    assert out.url == f"{URL}/items/{encoded}/x"


def test_query_parameters_are_encoded_and_lists_repeat():
    out = render({"url": URL + "/s?fixed=1", "method": "GET",
                  "queryParams": {"q": "{{v}}", "tags": "{{items}}", "flag": "{{flag}}"}},
                 parameters={"v": "a&b=c d", "items": ["x", "y"], "flag": True})
    assert out.url == f"{URL}/s?fixed=1&q=a%26b%3Dc%20d&tags=x&tags=y&flag=true"


@pytest.mark.parametrize("value", ["evil.test#", "x@y", "a.b", "a/b", "", "-a", "a" * 64])
def test_host_placeholders_must_be_one_dns_label(value):
    with pytest.raises(RenderFailed) as info:
        render({"url": "https://{{v}}.example.com/x", "method": "GET"}, parameters={"v": value})
    assert "in the URL host must be one DNS label" in str(info.value)


def test_host_placeholder_label_is_lowercased():
    out = render({"url": "https://{{v}}.example.com/x", "method": "GET"},
                 parameters={"v": "Acme-1"})
    assert out.url == "https://acme-1.example.com/x"


@pytest.mark.parametrize("value", ["v\r\nX-Injected: 1", "v\n folded", "v\x00w", "v\x0bw",
                                   "v\tw", "v\x7f"])
def test_control_characters_in_headers_fail(value):
    with pytest.raises(RenderFailed) as info:
        render({"url": URL, "method": "GET", "headers": {"X-Name": "{{v}}"}},
               parameters={"v": value})
    assert str(info.value) == (
        "request /actions/0/requests/0: header X-Name would contain a control character "
        "(CR, LF, NUL, …); remove it from the value")


def test_form_encoding_keeps_one_field_per_value():
    out = render({"url": URL, "method": "POST", "bodyType": "x-www-form-urlencoded",
                  "body": {"a": "{{v}}", "n": "{{n}}", "flag": "{{flag}}", "obj": "{{user}}"}},
                 parameters={"v": "a&grant_type=client_credentials&b=", "n": 3, "flag": False,
                             "user": {"k": 1}})
    assert out.body == (b"a=a%26grant_type%3Dclient_credentials%26b%3D&n=3&flag=false"
                        b"&obj=%7B%22k%22%3A1%7D")
    assert ("Content-Type", "application/x-www-form-urlencoded") in out.headers


def test_multipart_values_cannot_forge_parts():
    out = render({"url": URL, "method": "POST", "bodyType": "formData",
                  "body": {"x": "{{v}}"}},
                 parameters={"v": '--b\r\nContent-Disposition: form-data; name="y"\r\n\r\nz'})
    content_type = dict(out.headers)["Content-Type"]
    boundary = content_type.split("boundary=")[1]
    assert out.body.count(f"--{boundary}\r\n".encode()) == 1
    assert out.body.endswith(f"--{boundary}--\r\n".encode())


def test_explicit_content_type_is_kept():
    out = render({"url": URL, "method": "POST", "headers": {"content-type": "application/vnd+json"},
                  "body": {"a": 1}})
    assert [v for k, v in out.headers if k.lower() == "content-type"] == ["application/vnd+json"]


PLACEHOLDER_LOOKING = st.sampled_from([
    "[[apiKey]]", "{{w}}", "[[acc{{w}}essToken]]", "[[[[apiKey]]]]", "［［apiKey］］",
    "{{hostUrl}}",
])


@settings(max_examples=200)
@given(st.lists(st.one_of(PLACEHOLDER_LOOKING, st.text(max_size=20)), max_size=5).map("".join))
def test_user_text_is_never_evaluated(text):
    secret = "S3CRET-VALUE-42"
    out = render({"url": URL + "/p/{{v}}", "method": "POST",
                  "queryParams": {"q": "{{v}}"}, "body": {"whole": "{{v}}", "part": "<{{v}}>"}},
                 parameters={"v": text, "w": "W"}, credentials={"apiKey": secret},
                 system={"hostUrl": "HOST"})
    assert secret.encode() not in out.body and secret not in out.url
    assert body(out) == {"whole": text, "part": f"<{text}>"}


@settings(max_examples=200)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
))
def test_type_preservation_round_trips(value):
    out = render({"url": URL, "method": "POST", "body": {"data": "{{v}}"}},
                 parameters={"v": value})
    expected = {} if value is None else {"data": value}
    assert body(out) == expected


@pytest.mark.parametrize("where", [{"body": {"a": "{{v}}"}}, {"headers": {"X-Note": "{{v}}"}},
                                   {"queryParams": {"q": "{{v}}"}}])
def test_values_that_are_not_text_fail_cleanly(where):
    with pytest.raises(RenderFailed) as info:
        render({"url": URL, "method": "POST", **where}, parameters={"v": "\ud800"})
    assert str(info.value) == (
        "request /actions/0/requests/0: a value is not valid Unicode text (it holds an unpaired "
        "surrogate) and cannot be sent; correct the value")
