"""Response mapping and success conditions, compiled (MANIFEST §2.3, §2.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .paths import JsonPath

__all__ = ["ArrayMapping", "Expect", "ObjectMapping"]


@dataclass(frozen=True, slots=True)
class ObjectMapping:
    """``{"name": "$.path"}``: persisted (credentials, metadata, output) and forwarded."""

    items: tuple[tuple[str, JsonPath], ...]
    persisted = True

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.items)


@dataclass(frozen=True, slots=True)
class ArrayMapping:
    """``[{"name", "value"}]``: forwarded to the following requests only."""

    items: tuple[tuple[str, JsonPath], ...]
    persisted = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.items)


@dataclass(frozen=True, slots=True)
class Expect:
    """Success conditions of a request."""

    status: tuple[int, ...] | None
    body: tuple[tuple[JsonPath, Any], ...]
    error: JsonPath | None
