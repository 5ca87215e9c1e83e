"""A host with the tracker and mailer mini-apps installed (as ``linear`` and ``mail``)
on a live local provider that counts what it receives."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from host import executor

from ..conftest import Hosted, Provider, build_hosted, serve
from .manifests import mailer, tracker


class Tracker:
    """The provider's issue tracker and mail service: numbered issues, comments, mail."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.lock = threading.Lock()
        self.issues = 0
        self.fail_issues = 0  # answer this many issue creations with a 500
        provider.route("/issues", self.issue)
        provider.route("/issues/ISS-1/comments", self.comment)
        provider.route("/issues/ISS-2/comments", self.comment)
        provider.route("/mail", lambda r: Response('{"id": "msg-1"}', mimetype="application/json"))

    def issue(self, request: Request) -> Response:
        if request.method == "GET":
            return Response(json.dumps({"items": [{"id": "ISS-1", "title": "one"},
                                                  {"id": "ISS-2", "title": "two"}]}),
                            mimetype="application/json")
        with self.lock:
            if self.fail_issues > 0:
                self.fail_issues -= 1
                return Response('{"message": "tracker is down"}', status=500,
                                mimetype="application/json")
            self.issues += 1
            number = self.issues
        return Response(json.dumps({"id": f"ISS-{number}",
                                    "url": f"https://tracker.test/ISS-{number}"}),
                        status=201, mimetype="application/json")

    def comment(self, request: Request) -> Response:
        return Response(json.dumps({"id": "c-1"}), status=201, mimetype="application/json")

    def received(self, method: str, path: str) -> list[Any]:
        return [r for r in self.provider.received if r.method == method and r.path == path]


@pytest.fixture
def flowhost(tmp_path: Path, provider: Provider) -> Iterator[Hosted]:
    built = build_hosted(tmp_path, provider, manifests={
        "tracker": tracker(provider.base), "mailer": mailer(provider.base)},
        FLOW_WORKERS=2)
    built.tracker = Tracker(provider)  # type: ignore[attr-defined]
    for miniapp, name in (("tracker", "linear"), ("mailer", "mail")):
        answer = built.api("POST", "/api/v1/installations", built.alice_token,
                           json={"miniapp": miniapp, "name": name,
                                 "credentials": {"apiKey": "key-good-123"}})
        assert answer.status_code == 201, answer.get_json()
    yield built
    executor.stop(built.app)
    built.app.extensions["minihost.db"].engine.dispose()


@pytest.fixture
def upstream() -> Iterator[Provider]:
    """A real HTTP server on 127.0.0.1 that the tests' mini-apps call."""
    yield from serve("127.0.0.1")
