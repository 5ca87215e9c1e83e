"""A fast answer to "is this a valid JSON Schema (2020-12)?" for the schemas manifests carry.

jsonschema checks a schema against the 2020-12 meta-schema, whose vocabularies
point at each other through ``$dynamicRef``; resolving those dominated a catalog
sync (about 1.3 ms per schema, a dozen schemas per manifest). :func:`conforms`
walks a schema once and applies the same constraints the meta-schema states for
each keyword it knows (types, non-empty schema arrays, non-negative integers,
unique string arrays, ``pattern`` compiling with ``re`` as the ``regex`` format
checks). It answers True only when the meta-schema certainly accepts the
schema; anything it does not model (``$id``, ``$ref``, ``$schema`` and the other
URI keywords, values that are not plain JSON) answers False, and the caller then
asks jsonschema, whose first error is the message users see. So messages never
change; only valid schemas got faster.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["conforms"]

SIMPLE_TYPES = frozenset(("array", "boolean", "integer", "null", "number", "object", "string"))

# Keywords whose value is a schema, a non-empty array of schemas, or an object of schemas.
_SCHEMA = frozenset((
    "items", "contains", "additionalProperties", "propertyNames", "if", "then", "else",
    "not", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
))
_SCHEMA_ARRAY = frozenset(("prefixItems", "allOf", "anyOf", "oneOf"))
_SCHEMA_MAP = frozenset(("properties", "$defs", "definitions", "dependentSchemas"))
# What the meta-schema does not model here: URI and anchor formats, vocabularies.
_DEFER = frozenset((
    "$id", "$schema", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
    "$recursiveAnchor", "$recursiveRef",
))


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_integer(value: Any) -> bool:
    """jsonschema's ``integer``: an int, or a float with no fraction; never a bool."""
    return type(value) is int or (type(value) is float and value.is_integer())


def _non_negative_integer(value: Any) -> bool:
    return _is_integer(value) and value >= 0


def _string_array(value: Any) -> bool:
    return (type(value) is list and all(type(item) is str for item in value)
            and len(set(value)) == len(value))


def _regex(value: Any) -> bool:
    if type(value) is not str:
        return False
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _type(value: Any) -> bool:
    if type(value) is str:
        return value in SIMPLE_TYPES
    return (type(value) is list and bool(value)
            and all(type(item) is str and item in SIMPLE_TYPES for item in value)
            and len(set(value)) == len(value))


def _dependency(value: Any) -> bool | None:
    """``dependencies`` members: a schema (None: walk it) or a string array."""
    if type(value) in (dict, bool):
        return None
    return _string_array(value)


_VALUES: dict[str, Callable[[Any], bool]] = {
    "type": _type,
    "enum": lambda value: type(value) is list,
    "examples": lambda value: type(value) is list,
    "multipleOf": lambda value: _is_number(value) and value > 0,
    "maximum": _is_number,
    "exclusiveMaximum": _is_number,
    "minimum": _is_number,
    "exclusiveMinimum": _is_number,
    "pattern": _regex,
    "required": _string_array,
    **dict.fromkeys(("maxLength", "minLength", "maxItems", "minItems", "maxContains",
                     "minContains", "maxProperties", "minProperties"), _non_negative_integer),
    **dict.fromkeys(("uniqueItems", "deprecated", "readOnly", "writeOnly"),
                    lambda value: type(value) is bool),
    **dict.fromkeys(("title", "description", "format", "contentEncoding",
                     "contentMediaType", "$comment"), lambda value: type(value) is str),
}


def conforms(schema: Any) -> bool:
    """True when ``schema`` certainly satisfies the JSON Schema 2020-12 meta-schema;
    False when it does not or when this check cannot tell (ask jsonschema then)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if type(node) is bool:
            continue
        if type(node) is not dict:
            return False
        for key, value in node.items():
            if key in _DEFER:
                return False
            check = _VALUES.get(key)
            if check is not None:
                if not check(value):
                    return False
            elif key in _SCHEMA:
                stack.append(value)
            elif key in _SCHEMA_ARRAY:
                if type(value) is not list or not value:
                    return False
                stack.extend(value)
            elif key in _SCHEMA_MAP:
                if type(value) is not dict:
                    return False
                stack.extend(value.values())
            elif key == "patternProperties":
                if type(value) is not dict or not all(_regex(name) for name in value):
                    return False
                stack.extend(value.values())
            elif key == "dependentRequired":
                if type(value) is not dict or not all(map(_string_array, value.values())):
                    return False
            elif key == "dependencies":
                if type(value) is not dict:
                    return False
                for member in value.values():
                    answer = _dependency(member)
                    if answer is None:
                        stack.append(member)
                    elif not answer:
                        return False
            # Any other keyword (const, default, x-…) may hold any value.
    return True
