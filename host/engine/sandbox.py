"""Answers fabricated from a request's ``responseSchema`` (MANIFEST §8).

The first of ``examples``, ``default``, ``const`` and ``enum`` wins; otherwise
a value of the declared type is built (objects get every listed property,
arrays one item). The result is deterministic, so sandbox runs repeat exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["sample"]

_STRING_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
}


MAX_NODES = 5000


def sample(schema: Any) -> Any:
    """A value that fits ``schema`` (best effort for the keywords listed above).

    At most ``MAX_NODES`` values are built, so a hostile schema (arrays nested
    deep with large ``minItems``) cannot make the host build billions of them.
    """
    return _sample(schema, 0, [MAX_NODES])


def _sample(schema: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if not isinstance(schema, Mapping) or depth > 16 or budget[0] < 0:
        return None
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    typed = "type" in schema or "properties" in schema or "items" in schema
    for key in ("oneOf", "anyOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and not typed:
            if key == "allOf":
                merged: dict[str, Any] = {}
                for option in options:
                    value = _sample(option, depth + 1, budget)
                    if isinstance(value, dict):
                        merged.update(value)
                return merged
            return _sample(options[0], depth + 1, budget)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {name: _sample(sub, depth + 1, budget) for name, sub in properties.items()}
    if kind == "array":
        minimum = schema.get("minItems", 1)
        count = max(1, int(minimum)) if isinstance(minimum, int) else 1
        return [_sample(schema.get("items", {}), depth + 1, budget)
                for _ in range(min(count, 3))]
    if kind == "string":
        return _STRING_FORMATS.get(schema.get("format", ""), schema.get("title") or "string")
    if kind == "integer":
        minimum = schema.get("minimum", 1)
        return int(minimum) if isinstance(minimum, (int, float)) else 1
    if kind == "number":
        minimum = schema.get("minimum", 1.0)
        return float(minimum) if isinstance(minimum, (int, float)) else 1.0
    if kind == "boolean":
        return True
    return None
