"""The egress policy (MANIFEST §2.5): which rule refuses which address, and that
nothing reaches a server it must not."""

import ipaddress
import socket
import time

import pytest
from werkzeug.wrappers import Response

from host.engine import Context, EgressPolicy, GuardedClient, run_chain
from host.engine.egress import is_public_address, unwrap
from host.errors import EgressDenied

from .conftest import test_is_public
from .helpers import requests_of

PRIVATE_LITERALS = [
    "127.0.0.1", "127.1", "2130706433", "0x7f.1", "0177.0.0.1", "017700000001", "localhost",
    "[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]", "100.64.0.1", "10.0.0.1",
    "172.16.0.1", "192.168.1.1", "198.18.0.1", "[fe80::1]", "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]", "[fd12:3456::1]", "[::127.0.0.1]", "[::8.8.8.8]",
    "[::ffff:0:127.0.0.1]", "[fec0::1]",
]


def check(url, hosts, policy=None):
    return (policy or EgressPolicy()).check(url, hosts)


@pytest.mark.parametrize("host", PRIVATE_LITERALS)
def test_private_loopback_and_wrapped_addresses_are_refused(host):
    bare = host.strip("[]")
    with pytest.raises(EgressDenied) as info:
        check(f"http://{host}/x", [bare.lower()])
    message = str(info.value)
    assert "egress denied: host" in message and "resolved to" in message
    assert "address; only public addresses are allowed" in message


@pytest.mark.parametrize("host", ["169.254.169.254", "[::ffff:169.254.169.254]",
                                  "[fd00:ec2::254]", "100.100.100.200"])
def test_metadata_addresses_are_always_refused(host):
    policy = EgressPolicy(allow_private=True)
    with pytest.raises(EgressDenied) as info:
        check(f"http://{host}/latest/meta-data", [host.strip("[]")], policy)
    assert "a cloud metadata address, which is always refused" in str(info.value)


def test_metadata_names_are_refused_before_resolving():
    calls = []
    policy = EgressPolicy(allow_private=True, resolver=lambda h, p: calls.append(h) or ["1.1.1.1"])
    with pytest.raises(EgressDenied) as info:
        check("http://metadata.google.internal/computeMetadata/v1/",
              ["metadata.google.internal"], policy)
    assert str(info.value) == (
        "request : egress denied: host metadata.google.internal is a cloud metadata service, "
        "which is always refused")
    assert calls == []


@pytest.mark.parametrize("host", ["0.0.0.0", "0", "224.0.0.1", "255.255.255.255"])
def test_unspecified_and_multicast_are_refused_even_when_private_is_allowed(host):
    with pytest.raises(EgressDenied):
        check(f"http://{host}/", [host], EgressPolicy(allow_private=True))


@pytest.mark.parametrize(
    ("url", "hosts", "message"),
    [
        ("ftp://api.example.com/x", ["api.example.com"],
         "scheme 'ftp' is not allowed; only http and https are"),
        ("file:///etc/passwd", ["api.example.com"],
         "scheme 'file' is not allowed; only http and https are"),
        ("http://allowed.test@127.0.0.1/", ["allowed.test"],
         "URLs must not carry user info (user:password@)"),
        ("http://127.0.0.1#@allowed.test/", ["allowed.test"],
         "host 127.0.0.1 is not in the mini-app's allowedHosts (allowed.test)"),
        ("https://example.com.evil.test/", ["*.example.com"],
         "host example.com.evil.test is not in the mini-app's allowedHosts (*.example.com)"),
        ("https://evilexample.com/", ["*.example.com"],
         "host evilexample.com is not in the mini-app's allowedHosts (*.example.com)"),
        ("https://example.com/", ["*.example.com"],
         "host example.com is not in the mini-app's allowedHosts (*.example.com)"),
        ("https://аllowed.test/", ["allowed.test"],
         "host xn--llowed-2nf.test is not in the mini-app's allowedHosts (allowed.test)"),
        ("https://allowed.test:22/", ["allowed.test"],
         "port 22 of allowed.test is not allowed; allowedHosts must name allowed.test:22"),
    ],
)
def test_static_rules(url, hosts, message):
    policy = EgressPolicy(resolver=lambda h, p: ["93.184.216.34"])
    with pytest.raises(EgressDenied) as info:
        check(url, hosts, policy)
    assert str(info.value) == f"request : egress denied: {message}"


def test_host_matching_normalises_case_and_trailing_dots():
    policy = EgressPolicy(resolver=lambda h, p: ["93.184.216.34"])
    target = check("HTTPS://API.Example.COM./v1?q=1", ["api.example.com"], policy)
    assert (target.host, target.port, target.path, target.addresses) == (
        "api.example.com", 443, "/v1?q=1", ("93.184.216.34",))
    assert check("https://a.b.example.com/", ["*.example.com"], policy).host == "a.b.example.com"
    assert check("https://api.example.com:8443/", ["api.example.com:8443"], policy).port == 8443


def test_any_private_answer_refuses_the_name():
    policy = EgressPolicy(resolver=lambda h, p: ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(EgressDenied) as info:
        check("https://mixed.test/", ["mixed.test"], policy)
    assert str(info.value) == (
        "request : egress denied: host mixed.test resolved to 10.0.0.5, a private address; only "
        "public addresses are allowed (operators can allow private targets with "
        "EGRESS_ALLOW_PRIVATE)")


def test_unresolvable_names_are_refused():
    def fail(host, port):
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(EgressDenied) as info:
        check("https://nowhere.test/", ["nowhere.test"], EgressPolicy(resolver=fail))
    assert "host nowhere.test could not be resolved" in str(info.value)


@pytest.mark.parametrize(
    ("address", "inner"),
    [("::ffff:10.0.0.1", "10.0.0.1"), ("64:ff9b::a00:1", "10.0.0.1"),
     ("2002:a00:1::", "10.0.0.1"), ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1")],
)
def test_unwrapping(address, inner):
    assert unwrap(ipaddress.ip_address(address)) == ipaddress.ip_address(inner)
    assert not is_public_address(ipaddress.ip_address(address))


def run_action(url, hosts, client, ctx=None, **kwargs):
    compiled = requests_of([dict({"url": url, "method": "GET"}, **kwargs)], hosts=hosts)
    return run_chain(compiled, ctx or Context(), client, allowed_hosts=hosts,
                     deadline=time.monotonic() + 5)


def test_the_client_refuses_before_connecting(canary, monkeypatch):
    connects = []
    real = socket.create_connection
    monkeypatch.setattr(socket, "create_connection",
                        lambda *a, **k: connects.append(a) or real(*a, **k))
    client = GuardedClient(EgressPolicy())
    result = run_action(canary.base + "/x", [canary.address], client)
    assert isinstance(result.error, EgressDenied)
    assert canary.received == [] and connects == []


def test_rebinding_cannot_move_the_connection(public_provider, canary):
    """The name answers a public address first and loopback later: the connection
    stays on the checked address, with the name in Host."""
    answers = iter([["127.0.0.2"], ["127.0.0.1"]] * 200)
    policy = EgressPolicy(resolver=lambda h, p: next(answers), is_public=test_is_public,
                          cache_seconds=0)
    client = GuardedClient(policy)
    public_provider.json("/x", "{}")
    url = f"http://rebind.test:{public_provider.port}/x"
    hosts = [f"rebind.test:{public_provider.port}"]
    results = [run_action(url, hosts, client) for _ in range(100)]
    assert canary.received == []
    assert sum(r.ok for r in results) == 50
    assert {str(r.error).split(", ")[1] for r in results if not r.ok} == {
        "a loopback address; only public addresses are allowed (operators can allow private "
        "targets with EGRESS_ALLOW_PRIVATE)"}
    assert public_provider.received[0].headers["Host"] == f"rebind.test:{public_provider.port}"
    client.transport.close()


def test_pinned_connections_are_reused(keepalive_server):
    port = keepalive_server.server_port
    policy = EgressPolicy(resolver=lambda h, p: ["127.0.0.2"], is_public=test_is_public)
    client = GuardedClient(policy)
    for _ in range(5):
        assert run_action(f"http://pooled.test:{port}/x", [f"pooled.test:{port}"], client).ok
    assert len(keepalive_server.client_ports) == 1
    client.transport.close()


def redirecting(location, status=302):
    return lambda request: Response("", status=status, headers={"Location": location})


@pytest.mark.parametrize("target", ["canary", "file:///etc/passwd", "gopher://127.0.0.2/x",
                                    "http://other.test/x"])
def test_redirects_are_checked_at_every_hop(public_provider, canary, target):
    location = {"canary": canary.base + "/hit"}.get(target, target)
    public_provider.route("/start", redirecting(location))
    policy = EgressPolicy(resolver=lambda h, p: ["127.0.0.2"], is_public=test_is_public)
    result = run_action(f"http://allowed.test:{public_provider.port}/start",
                        [f"allowed.test:{public_provider.port}", canary.address],
                        GuardedClient(policy))
    assert isinstance(result.error, EgressDenied)
    assert canary.received == []


def test_at_most_five_redirects(provider, client):
    for hop in range(7):
        provider.route(f"/r{hop}", redirecting(f"/r{hop + 1}"))
    result = run_action(provider.base + "/r0", [provider.address], client)
    assert str(result.error) == "request /actions/0/requests/0: more than 5 redirects"
    assert len(provider.received) == 6


def test_redirect_hops_are_in_the_trace(provider, client):
    provider.route("/old", redirecting("/new", 301))
    provider.json("/new", '{"ok": true}')
    result = run_action(provider.base + "/old", [provider.address], client)
    assert result.ok
    assert result.trace[0]["redirects"] == [{"status": 301, "location": provider.base + "/new"}]


@pytest.mark.parametrize("status", [302, 307, 308])
def test_no_cross_origin_redirect_with_credentials(public_provider, provider, status):
    public_provider.route("/start", redirecting(f"http://127.0.0.1:{provider.port}/steal",
                                                status))
    provider.json("/steal", "{}")
    policy = EgressPolicy(allow_private=True, resolver=lambda h, p: ["127.0.0.2"])
    client = GuardedClient(policy)
    compiled = requests_of([{
        "url": f"http://allowed.test:{public_provider.port}/start", "method": "POST",
        "headers": {"X-Api-Key": "[[apiKey]]"}, "body": {"secret": "[[apiKey]]"}}],
        hosts=[f"allowed.test:{public_provider.port}", provider.address],
        auth={"type": "apiKey", "fields": {"type": "object",
                                           "properties": {"apiKey": {"type": "string"}}}})
    result = run_chain(compiled, Context(credentials={"apiKey": "SECRET-KEY"}), client,
                       allowed_hosts=[f"allowed.test:{public_provider.port}", provider.address],
                       deadline=time.monotonic() + 5)
    assert str(result.error) == (
        "request /actions/0/requests/0: egress denied: redirect to another origin (127.0.0.1) "
        "refused because the request carried credentials")
    assert provider.received == []


def test_same_origin_303_becomes_a_get_without_body(provider, client):
    provider.route("/create", redirecting("/result", 303))
    provider.json("/result", '{"id": 1}')
    compiled = requests_of([{"url": provider.base + "/create", "method": "POST",
                             "body": {"a": 1}}])
    result = run_chain(compiled, Context(), client, allowed_hosts=[provider.address],
                       deadline=time.monotonic() + 5)
    assert result.ok
    second = provider.received[1]
    assert (second.method, second.body, "Content-Type" in second.headers) == ("GET", b"", False)


def test_auth_steps_never_follow_redirects(provider, client):
    provider.route("/token", redirecting("/elsewhere", 307))
    compiled = requests_of([{"url": provider.base + "/token", "method": "POST", "body": {}}])
    result = run_chain(compiled, Context(), client, allowed_hosts=[provider.address],
                       deadline=time.monotonic() + 5, follow_redirects=False)
    assert str(result.error) == (
        "request /actions/0/requests/0: the provider answered 307 redirecting to "
        f"{provider.base}/elsewhere; auth steps never follow redirects, so fix the token URL")
    assert [r.path for r in provider.received] == ["/token"]


def test_ports_are_enforced_even_when_private_egress_is_on(provider, canary, client):
    """EGRESS_ALLOW_PRIVATE opens private addresses, never other ports: not directly,
    and not after a redirect to another port of the same host."""
    policy = EgressPolicy(allow_private=True)
    with pytest.raises(EgressDenied) as info:
        check(f"http://127.0.0.1:{canary.port}/x", [provider.address], policy)
    assert str(info.value) == (
        f"request : egress denied: port {canary.port} of 127.0.0.1 is not allowed; "
        f"allowedHosts must name 127.0.0.1:{canary.port}")
    provider.route("/hop", redirecting(f"http://127.0.0.1:{canary.port}/hit"))
    result = run_action(provider.base + "/hop", [provider.address], client)
    assert str(result.error) == (
        f"request /actions/0/requests/0: egress denied: port {canary.port} of 127.0.0.1 is "
        f"not allowed; allowedHosts must name 127.0.0.1:{canary.port}")
    assert canary.received == []
    assert [r.path for r in provider.received] == ["/hop"]


@pytest.mark.parametrize("host", ["[fc00::1]", "[fd00::1]", "[fe80::1]", "[::1]",
                                  "[::ffff:127.0.0.1]", "[::ffff:10.1.2.3]"])
def test_ipv6_forms_of_private_addresses_are_refused(host):
    with pytest.raises(EgressDenied) as info:
        check(f"http://{host}/x", [host.strip("[]")])
    assert "only public addresses are allowed" in str(info.value)


def test_the_resolved_name_cache_is_bounded():
    """Names come from users' settings (subdomains), so the cache cannot grow with
    them: past MAX_CACHED_NAMES it starts again."""
    from host.engine import egress

    calls = []
    policy = EgressPolicy(resolver=lambda host, port: calls.append(host) or ["1.1.1.1"])
    for index in range(egress.MAX_CACHED_NAMES):
        policy.resolve(f"t{index}.example.com", 443)
    policy.resolve("t0.example.com", 443)  # still cached
    assert len(calls) == egress.MAX_CACHED_NAMES
    policy.resolve("one-more.example.com", 443)  # the cache starts again
    policy.resolve("t0.example.com", 443)
    assert len(calls) == egress.MAX_CACHED_NAMES + 2
    assert len(policy._cache) == 2
