"""From submitted values to validated parameters (MANIFEST §4).

Pages submit strings; :func:`coerce` turns them into the schema's types
(numbers, booleans, lists from comma-separated text or JSON, nested groups,
JSON-encoded option objects). The API submits JSON, which is only validated.
:func:`validate` runs the form's compiled JSON Schema validator and reports
errors per field, with messages a person can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema.exceptions import ValidationError as SchemaViolation

from ..engine import jsonlimits
from ..engine.schemas import PATTERN_TIMEOUT, Unresolvable
from ..errors import FieldError
from ..manifest.form import Field, Form

__all__ = ["coerce", "describe_error", "validate"]

_TYPE_NAMES = {"string": "text", "integer": "a whole number", "number": "a number",
               "boolean": "true or false", "array": "a list", "object": "an object",
               "null": "empty"}


def _coerce_scalar(field: Field, kind: str, raw: str) -> Any:
    if kind == "integer":
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind == "number":
        try:
            number = float(raw.strip())
        except ValueError:
            raise ValueError("must be a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return int(number) if number.is_integer() and "." not in raw else number
    if kind == "boolean":
        return raw.strip().lower() in ("on", "true", "1", "yes")
    return raw


def _getall(data: Any, name: str) -> list[str]:
    if hasattr(data, "getlist"):
        return [v for v in data.getlist(name)]
    value = data.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _coerce_field(field: Field, data: Any, prefix: str, errors: list[FieldError]) -> Any:
    name = prefix + field.name
    if field.widget == "group":
        group = {}
        for child in field.children:
            value = _coerce_field(child, data, name + ".", errors)
            if value is not _ABSENT:
                group[child.name] = value
        return group if group or field.required else _ABSENT
    raw_values = _getall(data, name)
    if field.type == "boolean":
        return bool(raw_values) and _coerce_scalar(field, "boolean", raw_values[-1])
    if not raw_values or all(v == "" for v in raw_values):
        return _ABSENT
    try:
        if field.widget == "source" or (field.type in ("object", "array")
                                        and raw_values[0].lstrip().startswith(("{", "["))):
            # Options carry JSON; a text field standing in for a failed source
            # (x-fallback) carries what the user typed.
            lenient = field.widget == "source" and field.type == "string"
            decoded = [_json(v, lenient) for v in raw_values if v != ""]
            if field.type == "array":
                flat: list[Any] = []
                for item in decoded:
                    flat.extend(item if isinstance(item, list) else [item])
                return flat
            return decoded[-1]
        if field.type == "array":
            items = [part.strip() for raw in raw_values for part in raw.split(",")]
            item_type = field.item_type or "string"
            return [_coerce_scalar(field, item_type, item) for item in items if item]
        if field.enum is not None:
            for option in field.enum:
                if str(option) == raw_values[-1] or (isinstance(option, bool)
                                                     and str(option).lower() == raw_values[-1]):
                    return option
        return _coerce_scalar(field, field.type, raw_values[-1])
    except ValueError as error:
        errors.append(FieldError(name, str(error)))
        return _ABSENT


def _json(text: str, lenient: bool = False) -> Any:
    try:
        return jsonlimits.loads(text)
    except jsonlimits.TooDeep:
        raise ValueError(f"nests deeper than {jsonlimits.MAX_DEPTH} levels") from None
    except ValueError:
        if lenient:
            return text
        raise ValueError("is not a valid choice; pick an option again") from None


class _Absent:
    pass


_ABSENT = _Absent()


def coerce(form: Form, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """Typed values from submitted strings; fields left empty are absent."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for field in form.fields:
        value = _coerce_field(field, data, "", errors)
        if value is not _ABSENT:
            values[field.name] = value
    return values, errors


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe_error(error: SchemaViolation) -> str:
    """A person-readable message for one JSON Schema violation."""
    kind: Any = error.validator
    value: Any = error.validator_value
    if kind == "type":
        kinds = value if isinstance(value, list) else [value]
        return "must be " + " or ".join(str(_TYPE_NAMES.get(k, k)) for k in kinds)
    if kind == "enum":
        return "must be one of: " + ", ".join(str(v) for v in value)
    if kind == "const":
        return f"must be {value!r}"
    if kind == "minLength":
        return "is required" if value == 1 else f"must be at least {value} characters"
    if kind == "maxLength":
        return f"must be at most {value} characters"
    if kind in ("minimum", "exclusiveMinimum"):
        return f"must be {'more than' if kind.startswith('exclusive') else 'at least'} {value}"
    if kind in ("maximum", "exclusiveMaximum"):
        return f"must be {'less than' if kind.startswith('exclusive') else 'at most'} {value}"
    if kind == "minItems":
        return f"needs at least {value} item{'s' if value != 1 else ''}"
    if kind == "maxItems":
        return f"takes at most {value} item{'s' if value != 1 else ''}"
    if kind == "pattern":
        return f"must match the pattern {value}"
    if kind == PATTERN_TIMEOUT:
        return ("took too long to check against the pattern of this field; enter a shorter "
                "value, or ask the mini-app's author to simplify the pattern")
    if kind == "format":
        return f"must be a valid {value}"
    if kind == "multipleOf":
        return f"must be a multiple of {value}"
    if kind == "uniqueItems":
        return "must not repeat an item"
    # jsonschema's own wording quotes the submitted value, which may be a secret
    # and may be huge; say what failed without echoing it.
    return _GENERIC.get(kind, "is not valid here")


_GENERIC = {
    "not": "is a value this field does not accept",
    "oneOf": "must match exactly one of the allowed shapes",
    "anyOf": "must match one of the allowed shapes",
    "allOf": "does not meet every rule of this field",
    "minProperties": "needs more entries",
    "maxProperties": "has too many entries",
    "contains": "needs an item of the expected kind",
    "dependentRequired": "is missing a value it depends on",
}


def validate(form: Form, values: Mapping[str, Any]) -> list[FieldError]:
    """Per-field errors of ``values`` against the form's schema (empty when valid).

    Top-level names the form does not have are refused, so a caller cannot slip
    an undeclared parameter into a request.
    """
    errors: list[FieldError] = []
    known = {field.name for field in form.fields}
    for name in values:
        if name not in known:
            errors.append(FieldError(name, "is not a field of this form"))
    try:
        violations: list[Any] = list(form.validator.iter_errors(dict(values)))
    except Unresolvable as error:
        return [*errors, FieldError("", f"this form's schema refers to {error.ref!r}, which "
                                        "is not part of it; tell the mini-app's author")]
    for violation in violations:
        path = list(violation.absolute_path)
        if violation.validator == "required":
            present = violation.instance if isinstance(violation.instance, Mapping) else {}
            for name in violation.validator_value:
                if name not in present:
                    errors.append(FieldError(_path([*path, name]), "is required"))
        elif violation.validator in ("anyOf", "oneOf") and not path:
            choices = [sorted(sub.get("required", [])) for sub in violation.validator_value
                       if isinstance(sub, Mapping)]
            names = ", ".join(" and ".join(c) for c in choices if c)
            message = f"fill in one of: {names}" if names else describe_error(violation)
            errors.append(FieldError("", message))
        elif (violation.validator == "additionalProperties"
              and isinstance(violation.instance, Mapping)):
            for name in getattr(violation, "extra_names", ()):
                errors.append(FieldError(_path([*path, name]), "is not a field of this form"))
        else:
            errors.append(FieldError(_path(path), describe_error(violation)))
    unique: dict[tuple[str, str], FieldError] = {}
    for item in errors:
        unique.setdefault((item.field, item.message), item)
    return list(unique.values())
