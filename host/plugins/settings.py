"""A plugin's ``SETTINGS_SCHEMA``: its ``PLUGIN_SETTINGS`` entry, checked once at start-up.

Each plugin used to check its settings by hand, inside its hooks, with its own
wording and its own gaps. A plugin now declares the JSON Schema of its entry
as ``SETTINGS_SCHEMA`` and the host checks the entry when the plugin registers,
through the same validator as manifests (:func:`host.engine.schemas.validator`:
no ``$ref`` is ever fetched, patterns run under a time budget), so a hook only
ever sees settings of the declared shape.

Messages name the setting as it is written in the configuration
(``PLUGIN_SETTINGS["hmac_signing"]["miniapps"]["acme"]["secret"]``), what is
wrong with it, and the fix: the ``description`` of the setting's schema, which
plugins therefore phrase as what to write. A value under ``"writeOnly": true``
is never quoted, so a mistyped secret does not end up in the log.

A plugin whose settings do not match is not loaded. In its place the host
registers a stand-in (:func:`refusing`) whose every hook raises the settings
message: wherever the plugin would have been called the call fails, reported
like any plugin failure. A contribution is left out, and a request a signing
plugin would have signed fails its run rather than going out unsigned.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import pluggy
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation
from jsonschema.exceptions import best_match

from ..engine.schemas import pattern_problems, reference_problems, validator

__all__ = ["refusing", "schema_problem", "settings_problem"]

_SHOWN = 80  # characters of a wrong value quoted in a message


def schema_problem(schema: object) -> str | None:
    """What is wrong with a plugin's ``SETTINGS_SCHEMA`` itself, or ``None``.

    A wrong schema is the plugin author's mistake, so the message points into
    the schema (a JSON pointer), not into the operator's settings."""
    if not isinstance(schema, Mapping):
        return f"SETTINGS_SCHEMA is a {type(schema).__name__}; write a JSON Schema object (a dict)"
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    invalid = best_match(meta.iter_errors(schema))
    if invalid is not None:
        return f"SETTINGS_SCHEMA{_at(_pointer(invalid.absolute_path))}: {invalid.message}"
    for where, problem in reference_problems(schema) + pattern_problems(schema):
        return f"SETTINGS_SCHEMA{_at(where)}: {problem}"
    return None


def settings_problem(name: str, schema: Mapping[str, Any], settings: object) -> str | None:
    """Every way plugin ``name``'s ``settings`` miss its ``schema``, one sentence
    each, or ``None`` when they match."""
    problems: list[tuple[list[str], str]] = []
    for error in validator(schema).iter_errors(settings):
        problems.extend(_problems(f'PLUGIN_SETTINGS["{name}"]', error))
    if not problems:
        return None
    return ". ".join(text for _, text in sorted(problems, key=lambda item: item[0]))


def refusing(manager: pluggy.PluginManager, module: object, message: str) -> ModuleType:
    """A stand-in for ``module``: the same hooks, in the same order (``tryfirst``,
    ``trylast``, ``specname`` kept), each raising ``ValueError(message)``."""
    stand_in = ModuleType(getattr(module, "__name__", "refused"),
                          "Refuses every hook call: its plugin's settings are wrong.")
    for attribute in dir(module):
        opts = manager.parse_hookimpl_opts(module, attribute)
        if opts is None:
            continue

        def refuse(**_: Any) -> None:
            raise ValueError(message)

        marker = pluggy.HookimplMarker(manager.project_name)
        setattr(stand_in, attribute, marker(
            tryfirst=bool(opts.get("tryfirst")), trylast=bool(opts.get("trylast")),
            optionalhook=bool(opts.get("optionalhook")), specname=opts.get("specname"),
        )(refuse))
    return stand_in


def _problems(root: str, error: SchemaViolation) -> Iterator[tuple[list[str], str]]:
    """``(sort key, sentence)`` for one violation (a ``required`` one may name
    several missing settings)."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    where = root + "".join(f"[{part}]" if isinstance(part, int) else f'["{part}"]'
                           for part in path)
    key = [str(part) for part in path]
    if error.validator == "required" and isinstance(error.instance, Mapping):
        properties = schema.get("properties") or {}
        required: Any = error.validator_value
        for missing in required:
            if missing not in error.instance:
                described = (properties.get(missing) or {}).get("description")
                fix = f"; {described}" if described else ""
                yield [*key, str(missing)], f'{where}["{missing}"] is missing{fix}'
        return
    extras = getattr(error, "extra_names", None)
    if error.validator == "additionalProperties" and extras:
        unknown = ", ".join(repr(str(extra)) for extra in sorted(extras, key=str))
        yield key, f"{where} has unknown setting(s) {unknown}; {_known(schema)}"
        return
    yield key, f"{where} {_found(error, schema)}{_fix(error, schema)}"


def _found(error: SchemaViolation, schema: Mapping[str, Any]) -> str:
    instance = error.instance
    if error.validator == "type":
        return f"is of type {type(instance).__name__}"
    if error.validator in ("minLength", "minItems", "minProperties") and not instance:
        return "is empty"
    if schema.get("writeOnly"):
        return "is not accepted"
    shown = repr(instance)
    return f"is {shown if len(shown) <= _SHOWN else shown[:_SHOWN - 1] + '…'}"


def _fix(error: SchemaViolation, schema: Mapping[str, Any]) -> str:
    described = schema.get("description")
    if described:
        return f"; {described}"
    if schema.get("writeOnly"):  # jsonschema's own message would quote the value
        return f" (it fails {error.validator!r})"
    return f" ({error.message})"


def _known(schema: Mapping[str, Any]) -> str:
    """``the settings are 'a' (required), 'b' and 'c'``, from the schema."""
    required = set(schema.get("required") or ())
    names = [f"{name!r}{' (required)' if name in required else ''}"
             for name in schema.get("properties") or {}]
    if not names:
        return "this takes no settings"
    if len(names) == 1:
        return f"the only setting is {names[0]}"
    return f"the settings are {', '.join(names[:-1])} and {names[-1]}"


def _pointer(path: Sequence[Any]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _at(pointer: str) -> str:
    return f" at {pointer}" if pointer else ""
