"""Sandbox mode (MANIFEST §8): every bundled action runs end to end with no socket."""

import json
import socket
import time
from pathlib import Path

import pytest

from host.engine import Context, EgressPolicy, SandboxClient, run_chain
from host.engine.sandbox import sample
from host.errors import EgressDenied
from host.manifest import load_manifest

from ..conftest import bundled_auth_types
from .helpers import requests_of

MINIAPPS = Path(__file__).resolve().parents[2] / "miniapps"
BUNDLED = sorted(p for p in MINIAPPS.iterdir() if (p / "manifest.json").exists())


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a socket was opened in sandbox mode")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def fake_values(manifest):
    """Credentials for every [[name]] the manifest uses, and its config."""
    names = set()
    for action in manifest.actions:
        for request in action.requests:
            text = json.dumps([request.url.source, [h for h in request.headers if isinstance(
                h[1], str)]], default=str)
            names.update(part.split("]]")[0] for part in text.split("[[")[1:])
    raw = json.dumps(dict(manifest.raw))
    names.update(part.split("]]")[0] for part in raw.split("[[")[1:])
    return {name.split(".")[0]: f"fake-{name}" for name in names}


ACTIONS = [(folder.name, action.name) for folder in BUNDLED
           for action in load_manifest(folder, bundled_auth_types()).actions]


@pytest.mark.parametrize(("miniapp", "action"), ACTIONS)
def test_every_bundled_action_runs_in_sandbox_without_a_socket(no_network, miniapp, action):
    manifest = load_manifest(MINIAPPS / miniapp, bundled_auth_types())
    compiled = manifest.action(action)
    parameters = sample(compiled.parameters)
    ctx = Context(parameters=parameters, credentials=fake_values(manifest),
                  config=dict(manifest.auth.config),
                  system={"hostUrl": "https://minihost.example", "installationId": "ins_1",
                          "uid": "usr_1", "webhookUrl": "https://minihost.example/hooks/x/y"})
    result = run_chain(compiled.requests, ctx, SandboxClient(EgressPolicy()),
                       allowed_hosts=manifest.allowed_hosts, deadline=time.monotonic() + 5)
    assert result.ok, result.error
    assert all(entry["wouldHaveSent"] for entry in result.trace)
    assert len(result.trace) == len(compiled.requests)


def test_sandbox_answers_from_the_response_schema(no_network):
    compiled = requests_of([{
        "url": "https://api.example.com/x", "method": "POST", "body": {"a": 1},
        "expect": {"status": [201], "body": {"$.ok": True}},
        "responseSchema": {"type": "object", "properties": {
            "ok": {"const": True}, "id": {"type": "integer", "examples": [42]},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "when": {"type": "string", "format": "date-time"}}},
        "mapping": {"id": "$.id", "tag": "$.tags[0]", "when": "$.when"}}],
        hosts=["api.example.com"])
    result = run_chain(compiled, Context(), SandboxClient(EgressPolicy()),
                       allowed_hosts=["api.example.com"], deadline=time.monotonic() + 5)
    assert result.ok, result.error
    assert result.values == {"id": 42, "tag": "a", "when": "2026-01-01T00:00:00Z"}
    assert result.trace[0]["status"] == 201 and result.trace[0]["wouldHaveSent"] is True
    assert result.trace[0]["body"] == {"a": 1}


def test_sandbox_still_enforces_allowed_hosts(no_network):
    compiled = requests_of([{"url": "https://api.example.com/x", "method": "GET"}],
                           hosts=["api.example.com"])
    result = run_chain(compiled, Context(), SandboxClient(EgressPolicy()),
                       allowed_hosts=["other.example.com"], deadline=time.monotonic() + 5)
    assert isinstance(result.error, EgressDenied)


def test_a_plugin_can_supply_sandbox_answers(no_network):
    from host.engine import Response

    compiled = requests_of([{"url": "https://api.example.com/x", "method": "GET",
                             "mapping": {"v": "$.v"}}], hosts=["api.example.com"])
    client = SandboxClient(EgressPolicy(), responder=lambda out, spec: Response(
        200, [("Content-Type", "application/json")], b'{"v": "from plugin"}', 0.0))
    result = run_chain(compiled, Context(), client, allowed_hosts=["api.example.com"],
                       deadline=time.monotonic() + 5)
    assert result.values == {"v": "from plugin"}


@pytest.mark.parametrize(
    ("schema", "value"),
    [({"type": "string"}, "string"), ({"type": "integer", "minimum": 3}, 3),
     ({"type": "number"}, 1.0), ({"type": "boolean"}, True), ({"type": "null"}, None),
     ({"default": "d", "examples": ["e"]}, "e"), ({"const": 5}, 5), ({"enum": ["x", "y"]}, "x"),
     ({"type": ["null", "string"]}, "string"),
     ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 1),
     ({"allOf": [{"properties": {"a": {"const": 1}}}, {"properties": {"b": {"const": 2}}}]},
      {"a": 1, "b": 2}),
     ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, [1, 1])],
)
def test_sample_values(schema, value):
    assert sample(schema) == value


def test_hostile_schemas_cannot_explode():
    import time

    schema = {"type": "string"}
    for _ in range(17):
        schema = {"type": "array", "items": schema, "minItems": 3}
    started = time.monotonic()
    value = sample(schema)
    assert time.monotonic() - started < 10  # bounded; unbounded would be 3**17 nodes
    assert json.dumps(value).count("string") <= 5000
