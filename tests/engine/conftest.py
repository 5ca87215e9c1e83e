"""Real HTTP servers on loopback that record every request they receive."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from host.engine import EgressPolicy, GuardedClient
from host.engine.egress import is_public_address

from ..conftest import Provider, serve


@pytest.fixture
def canary() -> Iterator[Provider]:
    """A server no test may reach: any request it records is a failure."""
    yield from serve("127.0.0.1")


@pytest.fixture
def public_provider() -> Iterator[Provider]:
    """A server on 127.0.0.2, which the test policy treats as a public address."""
    yield from serve("127.0.0.2")


PUBLIC_FOR_TESTS = ipaddress.ip_address("127.0.0.2")


def test_is_public(address) -> bool:
    return address == PUBLIC_FOR_TESTS or is_public_address(address)


test_is_public.__test__ = False  # not a test function


@pytest.fixture
def client() -> Iterator[GuardedClient]:
    """A client allowed to reach the loopback test servers."""
    guarded = GuardedClient(EgressPolicy(allow_private=True), sleep=lambda s: None)
    yield guarded
    guarded.transport.close()


class _KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.client_ports.add(self.client_address[1])
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def keepalive_server() -> Iterator[ThreadingHTTPServer]:
    """A keep-alive HTTP/1.1 server on 127.0.0.2 that notes each client port."""
    server = ThreadingHTTPServer(("127.0.0.2", 0), _KeepAliveHandler)
    server.client_ports = set()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
