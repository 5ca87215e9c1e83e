"""Pagination (FLOWS.md §6): following a list across pages — by a cursor the answer
names, a page number, an offset, or the ``Link: rel="next"`` header — always bounded
by ``maxPages`` and the chain's deadline.

The same block works on a source's request, an action's last request and a data
source's list. Each next page is the first request again with one query parameter
changed (or, for ``link``, the URL the provider gave, which passes the egress check
like any other).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from .paths import MISSING, JsonPath
from .render import stringify

__all__ = ["DEFAULT_MAX_PAGES", "Pagination", "count_items", "next_page"]

DEFAULT_MAX_PAGES = 100
_LINK = re.compile(r'<([^>]*)>\s*;([^,]*)')
_REL_NEXT = re.compile(r'rel\s*=\s*"?([^";]*)"?', re.I)


@dataclass(frozen=True, slots=True)
class Pagination:
    """A compiled ``pagination`` block."""

    type: str  # cursor | page | offset | link
    param: str | None = None
    next: JsonPath | None = None  # cursor: where the next cursor is
    items: JsonPath | None = None  # page/offset: the list whose emptiness ends it
    start: int = 1
    max_pages: int = DEFAULT_MAX_PAGES
    location: str = "query"  # where param goes: the query, or the JSON body ("a.b" nests)


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _link_next(header: str | None, base: str) -> str | None:
    for target, params in _LINK.findall(header or ""):
        for rel in _REL_NEXT.findall(params):
            if "next" in rel.lower().split():
                return str(urljoin(base, target.strip()))
    return None


def count_items(pagination: Pagination, body: Any, items: JsonPath | None) -> int | None:
    """How many items a page holds (None when it cannot be told)."""
    path = pagination.items or items
    if path is None:
        return None
    found = path.evaluate(body)
    if isinstance(found, list):
        return len(found)
    return 0 if found is MISSING or found is None else 1


def _with_member(body: bytes | None, path: str, value: Any) -> bytes:
    """A JSON body with the member at ``path`` (dots nest) set to ``value``."""
    document = json.loads(body) if body else {}
    if not isinstance(document, dict):
        document = {}
    target = document
    *parents, last = path.split(".")
    for name in parents:
        found = target.get(name)
        if not isinstance(found, dict):
            found = target[name] = {}
        target = found
    target[last] = value
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def next_page(pagination: Pagination, url: str, request_body: bytes | None, page: int,
              body: Any, headers: dict[str, str], items: JsonPath | None = None,
              taken: int = 0) -> tuple[str, bytes | None] | None:
    """The URL and body of the page after this one (page number ``page``, from 1,
    having seen ``taken`` items so far), or None when this was the last one."""
    kind = pagination.type
    if kind == "link":
        found = _link_next(headers.get("link"), url)
        return None if found is None else (found, request_body)
    value: Any
    if kind == "cursor":
        assert pagination.next is not None
        value = pagination.next.evaluate(body, headers)
        if value is MISSING or value is None or value == "" or value is False:
            return None
    else:
        if count_items(pagination, body, items) == 0:
            return None  # an empty page ends a page- or offset-numbered list
        value = pagination.start + (page if kind == "page" else taken)
    assert pagination.param is not None
    if pagination.location == "body":
        return url, _with_member(request_body, pagination.param, value)
    return _with_param(url, pagination.param, stringify(value)), request_body
