"""Cursor pagination shared by every list: ``?limit=`` (1–200, default 50) and an
opaque ``?cursor=`` that encodes the sort key of the last item returned.

Because the cursor is a key, not an offset, items inserted while a client pages
never shift or repeat what it sees.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flask import request

from ..engine import jsonlimits
from ..errors import FieldError, ValidationError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
T = TypeVar("T")


def encode_cursor(key: Any) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The key a cursor carries; every list here sorts by a text key."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = jsonlimits.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, str):
        raise ValidationError(
            [FieldError("cursor", "not a cursor this API returned; use the `next` value as given")]
        )
    return key


def page_args() -> tuple[int, str | None]:
    """``(limit, cursor key or None)`` from the query string, validated."""
    raw = request.args.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        # isdigit() alone accepts "²" and other digits int() refuses.
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
            raise ValidationError(
                [FieldError("limit", f"must be a whole number from 1 to {MAX_LIMIT}")]
            )
        limit = int(raw)
    cursor = request.args.get("cursor")
    return limit, decode_cursor(cursor) if cursor else None


def paginate(items: Sequence[T], key: Callable[[T], Any]) -> tuple[list[T], str | None]:
    """One page of ``items`` (already sorted by ``key``) after the request's cursor."""
    limit, after = page_args()
    if after is not None:
        items = [item for item in items if key(item) > after]
    page = list(items[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, encode_cursor(key(page[-1])) if more and page else None


def paginate_rows(db: Any, query: Any, id_column: Any) -> tuple[list[Any], str | None]:
    """Newest first by id (ids sort by creation time), continuing after the cursor."""
    limit, after = page_args()
    if after is not None:
        query = query.where(id_column < after)
    rows = list(db.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id) if more and rows else None
