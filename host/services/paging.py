"""Keyset paging shared by every list the services give: newest first by id (ids sort
by creation time), continuing after the last id a caller saw.

Because the position is a key, not an offset, items inserted while a caller pages
never shift or repeat what it sees. How a page is asked for is the caller's
business: the API carries the key in an opaque cursor, pages in a ``before`` link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

__all__ = ["Page", "page_of"]


@dataclass(frozen=True, slots=True)
class Page:
    """Up to ``limit`` items whose id sorts before ``after`` (from the start when None)."""

    limit: int
    after: str | None = None


def page_of(db: Session, query: Select[Any], id_column: Any,
            page: Page | None) -> tuple[list[Any], str | None]:
    """The rows of ``query`` on ``page`` (all of them when None), newest first, and the
    key to continue after, or None on the last page."""
    if page is not None and page.after is not None:
        query = query.where(id_column < page.after)
    query = query.order_by(id_column.desc())
    if page is None:
        return list(db.scalars(query)), None
    rows = list(db.scalars(query.limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[:page.limit]
    return rows, rows[-1].id if more and rows else None
