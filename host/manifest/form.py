"""The form model: what a JSON Schema of parameters renders as (MANIFEST §4).

``build_form`` is pure and deterministic, so it is computed once per schema
and shared by every page and API answer that shows the form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from ..engine.schemas import validator

__all__ = ["Field", "Form", "build_form"]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Field:
    """One form field.

    ``widget`` is ``text``, ``textarea``, ``select`` (an ``enum``), ``number``,
    ``toggle``, ``multi`` (an array), ``group`` (a nested object, with
    ``children``), ``source`` (a dropdown filled by ``x-source``) or a widget
    name a plugin provides through ``x-widget``.
    """

    name: str
    title: str
    description: str
    type: str
    widget: str
    required: bool
    default: Any = None
    has_default: bool = False
    enum: tuple[Any, ...] | None = None
    source: str | None = None
    fallback: str | None = None
    children: tuple[Field, ...] = ()
    item_type: str | None = None
    secret: bool = False  # ``"writeOnly": true``: never shown again once submitted

    @property
    def multiple(self) -> bool:
        """A dropdown where several options may be chosen (an array field)."""
        return self.type == "array" and self.widget in ("source", "select")


@dataclass(frozen=True, slots=True)
class Form:
    """The fields of a form and the compiled validator of its schema."""

    fields: tuple[Field, ...]
    schema: Mapping[str, Any] = dc_field(default_factory=dict, compare=False)
    validator: Any = dc_field(default=None, compare=False, repr=False)

    def field(self, name: str) -> Field | None:
        for item in self.fields:
            if item.name == name:
                return item
        return None


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if not isinstance(kind, str):
        if "enum" in schema:
            return "string"
        if "properties" in schema:
            return "object"
        return "string"
    return kind


def _item_schema(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    items = schema.get("items")
    return items if isinstance(items, Mapping) else {}


def _widget(schema: Mapping[str, Any], kind: str) -> str:
    if schema.get("x-source") or (kind == "array" and _item_schema(schema).get("x-source")):
        return "source"
    if kind == "array" and "enum" in _item_schema(schema):
        return "select"
    custom = schema.get("x-widget")
    if isinstance(custom, str) and custom:
        return custom
    if "enum" in schema:
        return "select"
    return {
        "number": "number",
        "integer": "number",
        "boolean": "toggle",
        "array": "multi",
        "object": "group",
    }.get(kind, "text")


def _field(name: str, schema: Mapping[str, Any], required: bool) -> Field:
    kind = _type_of(schema)
    widget = _widget(schema, kind)
    default = schema.get("default", _MISSING)
    children: tuple[Field, ...] = ()
    if widget == "group":
        children = _fields(schema)
    enum = schema.get("enum")
    items = _item_schema(schema)
    if kind == "array" and "enum" in items:
        enum = items["enum"]
    return Field(
        name=name,
        title=str(schema.get("title") or name),
        description=str(schema.get("description") or ""),
        type=kind,
        widget=widget,
        required=required,
        default=None if default is _MISSING else default,
        has_default=default is not _MISSING,
        enum=tuple(enum) if isinstance(enum, list) else None,
        source=schema.get("x-source") or items.get("x-source"),
        fallback=schema.get("x-fallback"),
        secret=schema.get("writeOnly") is True,
        children=children,
        item_type=_type_of(items) if kind == "array" and items else None,
    )


def _fields(schema: Mapping[str, Any]) -> tuple[Field, ...]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return ()
    required = set(schema.get("required") or ())
    return tuple(
        _field(name, sub if isinstance(sub, Mapping) else {}, name in required)
        for name, sub in properties.items()
    )


def build_form(schema: Mapping[str, Any]) -> Form:
    """The fields of an object schema, in the order its ``properties`` list them,
    with a validator compiled once for the whole schema."""
    return Form(_fields(schema), schema, validator(schema, formats=True))
