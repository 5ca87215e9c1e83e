"""Building compiled requests for engine tests from small manifest fragments."""

from __future__ import annotations

from typing import Any

from host.manifest import compile_manifest


def manifest(requests: list[dict[str, Any]], hosts=("127.0.0.1",), params=None, auth=None,
             sources=None):
    properties = {name: {} for name in (params or ())}
    doc = {
        "name": "engine-test",
        "version": "1.0.0",
        "title": "Engine test",
        "description": "d",
        "allowedHosts": list(hosts),
        "actions": [{"name": "act", "title": "Act",
                     "parameters": {"type": "object", "properties": properties},
                     "requests": requests}],
    }
    if auth:
        doc["auth"] = auth
    if sources:
        doc["sources"] = sources
    return compile_manifest(doc, allow_private=True)  # engine tests talk to loopback


def requests_of(requests, **kwargs):
    return manifest(requests, **kwargs).action("act").requests


API_KEY_AUTH = {"type": "apiKey", "fields": {"type": "object", "properties": {
    "apiKey": {"type": "string"}, "token": {"type": "string"}, "other": {"type": "string"}}}}
