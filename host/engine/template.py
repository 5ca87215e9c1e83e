"""Placeholder templates (MANIFEST §2.2), compiled once when a manifest loads.

``[[key]]`` names something the installation holds (credentials, metadata, the
operator's client); ``{{key}}`` names a non-persisted value (parameters,
earlier mappings, ``auth.config``, system values). The two namespaces never mix.
A template is split into literal text and :class:`Placeholder` parts at load
time, so rendering a request is a walk over prepared pieces — and a value
substituted at run time is never scanned again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "UrlTemplate",
    "compile_url",
    "CompiledArray",
    "CompiledObject",
    "Placeholder",
    "Template",
    "compile_template",
    "compile_value",
    "malformed_placeholders",
    "walk_templates",
]

Namespace = Literal["secret", "value"]

_KEY = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*"
_PLACEHOLDER = re.compile(rf"\[\[\s*({_KEY})\s*\]\]|\{{\{{\s*({_KEY})\s*\}}\}}")
_LOOSE = re.compile(r"\[\[[^\[\]]*\]\]|\{\{[^{}]*\}\}")


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``[[key]]`` (namespace ``secret``) or ``{{key}}`` (namespace ``value``)."""

    namespace: Namespace
    key: str
    path: tuple[str, ...]

    @property
    def root(self) -> str:
        return self.path[0]

    def __str__(self) -> str:
        return f"[[{self.key}]]" if self.namespace == "secret" else f"{{{{{self.key}}}}}"


@dataclass(frozen=True, slots=True)
class Template:
    """A string with placeholders, split into literal and placeholder parts."""

    source: str
    parts: tuple[str | Placeholder, ...]

    @property
    def whole(self) -> Placeholder | None:
        """The placeholder when the string is exactly one (type-preserving)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Placeholder):
            return self.parts[0]
        return None

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(part for part in self.parts if isinstance(part, Placeholder))


@dataclass(frozen=True, slots=True)
class CompiledObject:
    """A JSON object whose string members may hold templates."""

    items: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CompiledArray:
    items: tuple[Any, ...]


def compile_template(text: str) -> Template | str:
    """A :class:`Template` when ``text`` holds placeholders, else ``text`` itself."""
    parts: list[str | Placeholder] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        if match.group(1) is not None:
            key, namespace = match.group(1), "secret"
        else:
            key, namespace = match.group(2), "value"
        parts.append(Placeholder(namespace, key, tuple(key.split("."))))  # type: ignore[arg-type]
        position = match.end()
    if not parts:
        return text
    if position < len(text):
        parts.append(text[position:])
    return Template(text, tuple(parts))


def compile_value(value: Any) -> Any:
    """Compile every string of a JSON value; objects and arrays become frozen nodes."""
    if isinstance(value, str):
        return compile_template(value)
    if isinstance(value, dict):
        return CompiledObject(tuple((k, compile_value(v)) for k, v in value.items()))
    if isinstance(value, list):
        return CompiledArray(tuple(compile_value(v) for v in value))
    return value


def walk_templates(compiled: Any) -> list[Template]:
    """Every :class:`Template` inside a compiled value, in document order."""
    found: list[Template] = []
    stack = [compiled]
    while stack:
        node = stack.pop()
        if isinstance(node, Template):
            found.append(node)
        elif isinstance(node, CompiledObject):
            stack.extend(value for _, value in reversed(node.items))
        elif isinstance(node, CompiledArray):
            stack.extend(reversed(node.items))
    return found


def malformed_placeholders(text: str) -> list[str]:
    """Bracket pairs that look like placeholders but are not valid ones."""
    return [m.group() for m in _LOOSE.finditer(text) if not _PLACEHOLDER.fullmatch(m.group())]


# -- URLs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UrlTemplate:
    """A URL whose placeholders know, from the literal text before them, whether
    they sit in the ``host``, the ``path``, the ``query`` or the ``fragment``.

    Knowing the zone at load time decides how a value is checked and encoded,
    and a value can never move itself into another zone. Literal pieces are
    kept as plain strings.
    """

    source: str
    parts: tuple[str | tuple[str, Placeholder], ...]

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(part[1] for part in self.parts if isinstance(part, tuple))


def _zone_after(zone: str, text: str, tail: str) -> tuple[str, str]:
    for char in text:
        tail = (tail + char)[-3:]
        if zone == "scheme":
            if tail == "://":
                zone = "host"
        elif zone == "host" and char in "/?#":
            zone = {"/": "path", "?": "query", "#": "fragment"}[char]
        elif zone == "path" and char in "?#":
            zone = "query" if char == "?" else "fragment"
        elif zone == "query" and char == "#":
            zone = "fragment"
    return zone, tail


def compile_url(text: str) -> UrlTemplate:
    compiled = compile_template(text)
    pieces = compiled.parts if isinstance(compiled, Template) else (text,)
    zone, tail = "scheme", ""
    parts: list[str | tuple[str, Placeholder]] = []
    for piece in pieces:
        if isinstance(piece, Placeholder):
            parts.append((zone, piece))
        else:
            parts.append(piece)
            zone, tail = _zone_after(zone, piece, tail)
    return UrlTemplate(text, tuple(parts))
