"""JSON from outside the host, parsed with a bound on nesting.

Python's parser recurses once per level and everything after it (redaction,
validation, rendering, storing) walks values recursively too, so a body of a
thousand ``[`` is a crash waiting to happen, and on an endpoint anyone can reach.
Every JSON the host takes in — API bodies, form values, query values, provider
answers, webhooks later — goes through :func:`loads`, which refuses more than
:data:`MAX_DEPTH` levels before anything can recurse on it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "TooDeep", "depth_exceeds", "loads"]

MAX_DEPTH = 64


class TooDeep(ValueError):
    """The JSON nests deeper than :data:`MAX_DEPTH` levels."""

    def __init__(self) -> None:
        super().__init__(f"the JSON nests deeper than {MAX_DEPTH} levels")


_CONTAINERS = (dict, list)


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when a parsed value nests deeper than ``limit``: a walk, level by level and
    without recursion, over the containers only (scalars are dropped as each level is
    gathered, in C, so a long flat list costs next to nothing)."""
    if type(value) not in _CONTAINERS:
        return False
    level = [value]
    for _ in range(limit):
        deeper: list[Any] = []
        for node in level:
            values = node.values() if type(node) is dict else node
            deeper += [v for v in values if type(v) in _CONTAINERS]
        if not deeper:
            return False
        level = deeper
    return True


def loads(text: str | bytes, **kwargs: Any) -> Any:
    """``json.loads``, raising :class:`TooDeep` (a ``ValueError``) past the limit.

    The parser itself stops with a RecursionError long before the stack is at risk;
    the walk that enforces the limit runs only when the text has more opening
    brackets than the limit (counted at C speed), so small answers pay nothing."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise TooDeep() from None
    if isinstance(text, bytes):
        opening = text.count(b"[") + text.count(b"{")
    else:
        opening = text.count("[") + text.count("{")
    if opening > MAX_DEPTH and depth_exceeds(value):
        raise TooDeep()
    return value
