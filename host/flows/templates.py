"""Rendering a flow's compiled templates against a run's values.

The rules are MANIFEST.md §2.2's, over the names FLOWS.md §2 lists (``input``,
``tasks``, ``item``/``index``, ``event``, ``run``, ``flow``): a string that is exactly
one placeholder keeps the value's type, one inside longer text is stringified, a
dotted key reaches into objects and lists, and a substituted value is never scanned
again. A whole placeholder with no value leaves its member out (``None`` at the top),
as a manifest's does; one inside longer text is an error that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine.render import stringify
from ..engine.template import CompiledArray, CompiledObject, Placeholder, Template

__all__ = ["MISSING", "TemplateError", "lookup", "render"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class TemplateError(Exception):
    """A placeholder inside longer text had no value."""


def lookup(scope: Mapping[str, Any], placeholder: Placeholder) -> Any:
    value: Any = scope
    for step in placeholder.path:
        if isinstance(value, Mapping):
            value = value.get(step, MISSING)
        elif isinstance(value, list) and step.lstrip("-").isdigit():
            index = int(step)
            value = value[index] if -len(value) <= index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return MISSING if value is None else value


def _render(compiled: Any, scope: Mapping[str, Any]) -> Any:
    if isinstance(compiled, Template):
        whole = compiled.whole
        if whole is not None:
            return lookup(scope, whole)
        out = []
        for part in compiled.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = lookup(scope, part)
            if value is MISSING:
                raise TemplateError(f"{part} in {compiled.source!r} has no value")
            out.append(stringify(value))
        return "".join(out)
    if isinstance(compiled, CompiledObject):
        result = {}
        for key, item in compiled.items:
            value = _render(item, scope)
            if value is not MISSING:
                result[key] = value
        return result
    if isinstance(compiled, CompiledArray):
        return [v for v in (_render(item, scope) for item in compiled.items) if v is not MISSING]
    return compiled


def render(compiled: Any, scope: Mapping[str, Any]) -> Any:
    """The value of ``compiled``; ``MISSING`` when it is a whole placeholder with no
    value. Raises :class:`TemplateError` for a missing value inside text."""
    return _render(compiled, scope)
