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
from ..services.paging import Page

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


def page_args() -> Page:
    """The page a request asks for (``?limit=``, ``?cursor=``), validated."""
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
    return Page(limit, decode_cursor(cursor) if cursor else None)


def next_cursor(key: str | None) -> str | None:
    """The ``next`` member of a list answer: a cursor for the key to continue after."""
    return encode_cursor(key) if key is not None else None


def paginate(items: Sequence[T], key: Callable[[T], Any]) -> tuple[list[T], str | None]:
    """One page of ``items`` (already sorted by ``key``) after the request's cursor."""
    page = page_args()
    if page.after is not None:
        items = [item for item in items if key(item) > page.after]
    chosen = list(items[: page.limit + 1])
    more = len(chosen) > page.limit
    chosen = chosen[: page.limit]
    return chosen, encode_cursor(key(chosen[-1])) if more and chosen else None
