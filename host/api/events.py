"""``/api/v1/events``: internal events sent by the workspace's application, and every
event received (FLOWS.md §4, §9)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from ..db import session as db_session
from ..identity import require_principal
from ..services import events, installations
from .body import json_object
from .pagination import next_cursor, page_args


def send() -> tuple[dict[str, Any], int, dict[str, str]]:
    principal = require_principal()
    answer = events.send_internal(current_app, principal, json_object())
    db = db_session()
    event = events.get_event(db, principal, str(answer.event_id))
    return (events.event_object(db, event), answer.status,
            {"Location": f"/api/v1/events/{event.id}"})


def list_all() -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = request.args.get("installation")
    if installation:
        installations.get_installation(db, principal, installation)  # 404 for another's
    rows, after = events.list_events(db, principal, installation or None,
                                     request.args.get("type") or None, page_args())
    return {"items": [events.event_object(db, row) for row in rows],
            "next": next_cursor(after)}


def get_one(event_id: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    return events.event_object(db, events.get_event(db, principal, event_id))


def register(blueprint: Blueprint) -> None:
    blueprint.add_url_rule("/events", view_func=send, methods=["POST"], endpoint="events_send")
    blueprint.add_url_rule("/events", view_func=list_all, methods=["GET"],
                           endpoint="events_list")
    blueprint.add_url_rule("/events/<event_id>", view_func=get_one, methods=["GET"],
                           endpoint="event_get")
