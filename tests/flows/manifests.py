"""Small mini-apps for flow tests: a tracker and a mailer on a local test server."""

from __future__ import annotations

from typing import Any


def _api_key(base: str) -> dict[str, Any]:
    return {"type": "apiKey",
            "fields": {"type": "object", "required": ["apiKey"], "properties": {
                "apiKey": {"type": "string", "title": "API key"}}},
            "test": {"url": base + "/me", "method": "GET",
                     "headers": {"X-Api-Key": "[[apiKey]]"}}}


def tracker(base: str = "http://127.0.0.1:9") -> dict[str, Any]:
    host = base.split("//", 1)[1]
    return {
        "name": "tracker", "version": "1.0.0", "title": "Tracker",
        "description": "Issues on a local test server.", "allowedHosts": [host],
        "auth": _api_key(base),
        "actions": [
            {"name": "createIssue", "title": "Create issue",
             "idempotency": {"header": "Idempotency-Key"},
             "parameters": {"type": "object", "required": ["title"], "properties": {
                 "title": {"type": "string", "minLength": 1},
                 "priority": {"type": "integer", "minimum": 0, "maximum": 4},
                 "description": {"type": "string"}}},
             "requests": [{"url": base + "/issues", "method": "POST",
                           "headers": {"X-Api-Key": "[[apiKey]]"},
                           "body": {"title": "{{title}}", "priority": "{{priority}}",
                                    "description": "{{description}}"},
                           "mapping": {"id": "$.id", "url": "$.url"},
                           "responseSchema": {"type": "object", "properties": {
                               "id": {"type": "string"}, "url": {"type": "string"}}}}],
             "output": {"type": "object", "properties": {
                 "id": {"type": "string"}, "url": {"type": "string"}}}},
            {"name": "listIssues", "title": "List issues",
             "parameters": {"type": "object", "properties": {
                 "status": {"type": "string", "enum": ["open", "closed"]}}},
             "requests": [{"url": base + "/issues?status={{status}}", "method": "GET",
                           "headers": {"X-Api-Key": "[[apiKey]]"},
                           "mapping": {"items": "$.items"},
                           "responseSchema": {"type": "object", "properties": {
                               "items": {"type": "array", "items": {"type": "object"}}}}}],
             "output": {"type": "object", "properties": {
                 "items": {"type": "array", "items": {"type": "object", "properties": {
                     "id": {"type": "string"}, "title": {"type": "string"}}}}}}},
            {"name": "fileAndLabel", "title": "File and label",
             "parameters": {"type": "object", "required": ["title"], "properties": {
                 "title": {"type": "string"}}},
             "requests": [{"url": base + "/slow-issues", "method": "POST",
                           "headers": {"X-Api-Key": "[[apiKey]]"},
                           "body": {"title": "{{title}}"}, "mapping": {"id": "$.id"}},
                          {"url": base + "/issues/{{id}}/labels", "method": "POST",
                           "headers": {"X-Api-Key": "[[apiKey]]"},
                           "body": {"label": "bug"}, "mapping": {"label": "$.label"}}],
             "output": {"type": "object", "properties": {"label": {"type": "string"}}}},
            {"name": "comment", "title": "Comment",
             "parameters": {"type": "object", "required": ["issue", "text"], "properties": {
                 "issue": {"type": "string"}, "text": {"type": "string"}}},
             "requests": [{"url": base + "/issues/{{issue}}/comments", "method": "POST",
                           "headers": {"X-Api-Key": "[[apiKey]]"},
                           "body": {"text": "{{text}}"}, "mapping": {"id": "$.id"},
                           "responseSchema": {"type": "object", "properties": {
                               "id": {"type": "string"}}}}],
             "output": {"type": "object", "properties": {"id": {"type": "string"}}}},
        ],
    }


def mailer(base: str = "http://127.0.0.1:9") -> dict[str, Any]:
    host = base.split("//", 1)[1]
    return {
        "name": "mailer", "version": "1.0.0", "title": "Mailer",
        "description": "Mail on a local test server.", "allowedHosts": [host],
        "auth": _api_key(base),
        "actions": [
            {"name": "send", "title": "Send email",
             "parameters": {"type": "object", "required": ["to", "subject"], "properties": {
                 "to": {"type": "string", "format": "email"},
                 "subject": {"type": "string"}, "text": {"type": "string"}}},
             "requests": [{"url": base + "/mail", "method": "POST",
                           "headers": {"X-Api-Key": "[[apiKey]]"},
                           "body": {"to": "{{to}}", "subject": "{{subject}}",
                                    "text": "{{text}}"},
                           "mapping": {"messageId": "$.id"},
                           "responseSchema": {"type": "object", "properties": {
                               "id": {"type": "string"}}}}],
             "output": {"type": "object", "properties": {"messageId": {"type": "string"}}}},
        ],
    }
