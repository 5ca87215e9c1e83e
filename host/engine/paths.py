"""The closed ``$``-path language of response mapping (MANIFEST §2.3).

Supported: ``$``, ``.name``, ``['name']``, ``[n]`` (negative counts from the
end), ``[*]``, ``..name``, and ``$headers.Name`` for a response header. Nothing
else parses — no filters, no scripts — so a manifest can never make the host
evaluate code. Paths are compiled once when the manifest loads; evaluating one
is a short loop over pre-parsed steps.

A path with ``[*]`` or ``..`` yields a list (empty when nothing matches); any
other path yields one value, or :data:`MISSING` when the document has no such
member.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MISSING", "JsonPath", "PathSyntaxError", "compile_path"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

SUPPORTED = "supported: $, .name, ['name'], [n], [*], ..name and $headers.Name"


class PathSyntaxError(ValueError):
    """Raised at manifest load for a path outside the closed subset."""


# A step is (kind, argument): ("key", str), ("index", int), ("all", None), ("deep", str).
Step = tuple[str, Any]

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"\[(-?\d+)\]")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")
_HEADER = re.compile(r"\$headers\.([!#$%&'*+.^_`|~0-9A-Za-z-]+)")
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled path; ``source`` is the text the manifest gave."""

    source: str
    steps: tuple[Step, ...]
    header: str | None = None
    multi: bool = False

    def evaluate(self, body: Any, headers: Mapping[str, str] | None = None) -> Any:
        """The value at this path in ``body`` (or in ``headers`` for ``$headers.X``)."""
        if self.header is not None:
            if headers is None:
                return MISSING
            for name, value in headers.items():
                if name.lower() == self.header:
                    return value
            return MISSING
        if not self.multi:
            node = body
            for kind, arg in self.steps:
                node = _step_one(node, kind, arg)
                if node is MISSING:
                    return MISSING
            return node
        nodes = [body]
        for kind, arg in self.steps:
            nodes = [found for node in nodes for found in _step_all(node, kind, arg)]
        return nodes


def _step_one(node: Any, kind: str, arg: Any) -> Any:
    if kind == "key":
        if isinstance(node, dict):
            return node.get(arg, MISSING)
        return MISSING
    # index
    if isinstance(node, list) and -len(node) <= arg < len(node):
        return node[arg]
    return MISSING


def _step_all(node: Any, kind: str, arg: Any) -> list[Any]:
    if kind == "all":
        if isinstance(node, list):
            return list(node)
        if isinstance(node, dict):
            return list(node.values())
        return []
    if kind == "deep":
        found: list[Any] = []
        _descend(node, arg, found)
        return found
    value = _step_one(node, kind, arg)
    return [] if value is MISSING else [value]


def _descend(node: Any, name: str, found: list[Any]) -> None:
    if isinstance(node, dict):
        if name in node:
            found.append(node[name])
        for value in node.values():
            _descend(value, name, found)
    elif isinstance(node, list):
        for value in node:
            _descend(value, name, found)


def compile_path(source: str) -> JsonPath:
    """Parse ``source`` into a :class:`JsonPath`, or raise :class:`PathSyntaxError`."""
    if not isinstance(source, str) or not source.startswith("$"):
        raise PathSyntaxError(f"path {source!r} must start with '$' ({SUPPORTED})")
    if source.startswith("$headers"):
        header = _HEADER.fullmatch(source)
        if not header:
            raise PathSyntaxError(
                f"path {source!r}: a header path is $headers.Name with a plain header name"
            )
        return JsonPath(source, (), header=header.group(1).lower())
    steps: list[Step] = []
    position = 1
    while position < len(source):
        rest = source[position:]
        if rest.startswith(".."):
            match = _NAME.match(source, position + 2)
            if not match:
                raise _syntax(source, position + 2, "'..' must be followed by a member name")
            steps.append(("deep", match.group()))
            position = match.end()
        elif rest.startswith("."):
            match = _NAME.match(source, position + 1)
            if not match:
                raise _syntax(source, position + 1, "'.' must be followed by a member name")
            steps.append(("key", match.group()))
            position = match.end()
        elif rest.startswith("[*]"):
            steps.append(("all", None))
            position += 3
        elif (match := _INDEX.match(source, position)) is not None:
            steps.append(("index", int(match.group(1))))
            position = match.end()
        elif (match := _QUOTED.match(source, position)) is not None:
            raw = match.group(1) if match.group(1) is not None else match.group(2)
            steps.append(("key", _UNESCAPE.sub(r"\1", raw)))
            position = match.end()
        else:
            raise _syntax(source, position, "unexpected text")
    multi = any(kind in ("all", "deep") for kind, _ in steps)
    return JsonPath(source, tuple(steps), multi=multi)


def _syntax(source: str, position: int, reason: str) -> PathSyntaxError:
    return PathSyntaxError(
        f"path {source!r} at character {position + 1}: {reason} "
        f"(filters and scripts are not allowed; {SUPPORTED})"
    )
