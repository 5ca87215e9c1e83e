"""Evaluating JSON Schemas from untrusted manifests: nothing fetched, every regex bounded.

A manifest's schemas (``parameters``, ``auth.fields``, ``responseSchema``,
``output``, a plugin's connect form) come from third parties. jsonschema, left
to itself, resolves a ``$ref`` to ``http://…`` or ``file:…`` by fetching it with
``urllib`` — outside the egress guard — and matches ``pattern`` with Python's
backtracking ``re``, where ``^(a+)+$`` takes seconds per input. So every schema
the host evaluates goes through :func:`validator`:

* references resolve only inside the document (``#/…`` pointers and anchors) or
  to the bundled meta-schemas; any other URI is refused, never retrieved;
* ``pattern``, ``patternProperties`` and ``additionalProperties`` match with the
  ``regex`` engine under one time budget per validation, so a pathological
  pattern fails its field with a clear error instead of holding a worker.

:func:`reference_problems` and :func:`pattern_problems` are what the manifest
lint reports, at the pointer of the offending keyword, so bad schemas are
refused at load time and the run-time guards are a backstop.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import lru_cache
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import regex
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation
from jsonschema.validators import extend
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

__all__ = [
    "PATTERN_BUDGET_SECONDS",
    "PATTERN_TIMEOUT",
    "REGISTRY",
    "Unresolvable",
    "pattern_problems",
    "reference_problems",
    "validator",
]

PATTERN_BUDGET_SECONDS = 0.25
PATTERN_TIMEOUT = "patternTimeout"  # the ``validator`` of a match that ran out of time
_MIN_SLICE = 0.01


def _refuse(uri: str) -> Any:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class mypy cannot see


# Combined with the bundled meta-schemas by jsonschema itself; nothing else resolves.
REGISTRY: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]

_deadline: ContextVar[float | None] = ContextVar("minihost_pattern_deadline", default=None)


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def _search(pattern: str, text: str) -> bool | None:
    """True/False as ``re.search`` would answer, or None when the budget ran out."""
    deadline = _deadline.get()
    now = time.monotonic()
    if deadline is None:
        deadline = now + PATTERN_BUDGET_SECONDS
        _deadline.set(deadline)
    try:
        compiled = _compiled(pattern)
    except Exception:  # the lint refuses these; fail closed, never unbounded
        return None
    try:
        return compiled.search(text, timeout=max(_MIN_SLICE, deadline - now)) is not None
    except TimeoutError:
        return None


def _timeout(pattern: str) -> SchemaViolation:
    return SchemaViolation(f"matching the pattern {pattern!r} took too long",
                           validator=PATTERN_TIMEOUT, validator_value=pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "string"):
        return
    found = _search(pattern, instance)
    if found is None:
        yield _timeout(pattern)
    elif not found:
        yield SchemaViolation(f"the value does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any,
                        schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            found = _search(pattern, key)
            if found is None:
                yield _timeout(pattern)
                return
            if found:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any,
                           schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = []
    for key in instance:
        if key in declared:
            continue
        matched = False
        for pattern in patterns:
            found = _search(pattern, key)
            if found is None:
                yield _timeout(pattern)
                return
            if found:
                matched = True
                break
        if not matched:
            extras.append(key)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif additional is False and extras:
        listed = ", ".join(repr(each) for each in sorted(extras, key=str))
        error = SchemaViolation(f"Additional properties are not allowed ({listed} unexpected)")
        error.extra_names = extras  # type: ignore[attr-defined]  # for per-field messages
        yield error


_Bounded = extend(Draft202012Validator, {  # type: ignore[no-untyped-call]
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
})


class _BudgetedValidator:
    """A compiled validator whose every ``iter_errors`` call gets a fresh regex budget."""

    __slots__ = ("_inner", "schema")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.schema = inner.schema

    def iter_errors(self, instance: Any) -> Iterator[SchemaViolation]:
        token = _deadline.set(time.monotonic() + PATTERN_BUDGET_SECONDS)
        try:
            yield from self._inner.iter_errors(instance)
        finally:
            try:
                _deadline.reset(token)
            except ValueError:  # the generator finished in another context
                _deadline.set(None)

    def is_valid(self, instance: Any) -> bool:
        return next(iter(self.iter_errors(instance)), None) is None

    def validate(self, instance: Any) -> None:
        for error in self.iter_errors(instance):
            raise error


def validator(schema: Any, *, formats: bool = False) -> _BudgetedValidator:
    """The validator for ``schema``: compiled once, never fetching, regexes bounded.

    A ``$ref`` that cannot be resolved inside the document raises
    :class:`Unresolvable` while validating; the manifest lint refuses such
    references, so only hand-built schemas can meet it.
    """
    checker = Draft202012Validator.FORMAT_CHECKER if formats else None
    return _BudgetedValidator(_Bounded(schema, registry=REGISTRY, format_checker=checker))


# -- lint ---------------------------------------------------------------------------------


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _walk(schema: Any, pointer: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every subschema with its JSON pointer (keyword-aware, so a property named
    ``pattern`` is not taken for the keyword)."""
    stack: list[tuple[str, Any]] = [(pointer, schema)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, Mapping):
            continue
        yield where, node
        for key in ("properties", "patternProperties", "$defs", "definitions",
                    "dependentSchemas"):
            members = node.get(key)
            if isinstance(members, Mapping):
                for name, sub in members.items():
                    stack.append((f"{where}/{key}/{_escape(str(name))}", sub))
        for key in ("items", "additionalProperties", "unevaluatedProperties",
                    "unevaluatedItems", "propertyNames", "contains", "not", "if", "then",
                    "else", "additionalItems", "contentSchema"):
            if key in node:
                stack.append((f"{where}/{key}", node[key]))
        for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
            members = node.get(key)
            if isinstance(members, list):
                for index, sub in enumerate(members):
                    stack.append((f"{where}/{key}/{index}", sub))
        items = node.get("items")
        if isinstance(items, list):  # draft 4–7 tuple form
            for index, sub in enumerate(items):
                stack.append((f"{where}/items/{index}", sub))


def reference_problems(schema: Any, pointer: str = "") -> list[tuple[str, str]]:
    """``$ref``s that leave the document, or point nowhere inside it."""
    problems: list[tuple[str, str]] = []
    if not isinstance(schema, Mapping):
        return problems
    resolver = REGISTRY.resolver_with_root(_resource(schema))
    for where, node in _walk(schema, pointer):
        for key in ("$ref", "$dynamicRef"):
            ref = node.get(key)
            if not isinstance(ref, str):
                continue
            if not ref.startswith("#"):
                problems.append((f"{where}/{key}", f"{key} {ref!r} points outside the "
                                 "document; only references inside it (#/$defs/…) are "
                                 "allowed, so copy the schema it names into $defs"))
                continue
            try:
                resolver.lookup(ref)
            except Unresolvable:
                problems.append((f"{where}/{key}", f"{key} {ref!r} points to nothing in "
                                 "this schema; fix the pointer or add the definition"))
        if "$id" in node and where != pointer:
            problems.append((f"{where}/$id", "$id inside a schema would give its "
                             "references another base; remove it and use #/$defs/… pointers"))
    return problems


def _resource(schema: Mapping[str, Any]) -> Any:
    from referencing.jsonschema import DRAFT202012

    # The root's own $id is ignored: references are judged relative to the document.
    contents = {k: v for k, v in schema.items() if k != "$id"}
    return DRAFT202012.create_resource(contents)


def pattern_problems(schema: Any, pointer: str = "") -> list[tuple[str, str]]:
    """Patterns the bounded engine could only cut short: nested unbounded repeats
    (``(a+)+``, ``(\\w*\\s?)*``), and ``patternProperties`` beside
    ``unevaluatedProperties`` (whose matching jsonschema does on its own)."""
    problems: list[tuple[str, str]] = []
    if not isinstance(schema, Mapping):
        return problems
    for where, node in _walk(schema, pointer):
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            reason = unsafe_pattern(pattern)
            if reason:
                problems.append((f"{where}/pattern", reason))
        patterns = node.get("patternProperties")
        if isinstance(patterns, Mapping):
            for key in patterns:
                reason = unsafe_pattern(str(key))
                if reason:
                    problems.append((f"{where}/patternProperties/{_escape(str(key))}",
                                     reason))
            if "unevaluatedProperties" in node:
                problems.append((f"{where}/unevaluatedProperties", "unevaluatedProperties "
                                 "cannot be combined with patternProperties here; use "
                                 "additionalProperties instead"))
    return problems


_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)
_UNBOUNDED = sre_constants.MAXREPEAT
_LARGE = 16  # {0,1000} backtracks like * for this purpose


def unsafe_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used safely, or None when it can: it may backtrack
    exponentially, or only one of the two engines can read it. Flags that contradict
    each other (``(?a)(?u)``) make ``re`` raise ValueError rather than ``re.error``,
    which would escape jsonschema's own check of the schema."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, sre_constants.error):
        return None  # not ours to judge: the schema check reports invalid patterns
    except Exception as error:
        return f"the pattern {pattern!r} is not a usable regular expression ({error})"
    try:
        _compiled(pattern)
    except Exception as error:
        return (f"the pattern {pattern!r} cannot be checked with a time limit ({error}); "
                "write it without that construct")
    if _nested(parsed):
        return (f"the pattern {pattern!r} repeats something that itself repeats "
                "(like (a+)+), which can take exponential time on some inputs; rewrite it "
                "without the nested repetition, e.g. (a+)+ as a+")
    return None


def _nested(items: Any) -> bool:
    """A wide repeat whose body holds another wide repeat, anywhere in ``items``,
    unless a mandatory separator the inner repeats cannot match splits every
    iteration (``([a-z]+\\.)*`` is linear: each ``.`` ends one)."""
    for op, value in items:
        if op in _REPEATS:
            _low, high, body = value
            if ((high == _UNBOUNDED or high > _LARGE) and _contains_wide_repeat(body)
                    and not _separated(body)):
                return True
            if _nested(body):
                return True
        elif op == sre_constants.SUBPATTERN:
            if _nested(value[-1]):
                return True
        elif op == sre_constants.BRANCH:
            if any(_nested(branch) for branch in value[1]):
                return True
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            if _nested(value[1]):
                return True
    return False


_SPAN = 0x3000  # character sets are compared over this range (separators are ASCII)


@lru_cache(maxsize=16)
def _category(name: Any) -> frozenset[int] | None:
    tests: dict[Any, Callable[[str], bool]] = {
        sre_constants.CATEGORY_DIGIT: str.isdecimal,
        sre_constants.CATEGORY_SPACE: str.isspace,
        sre_constants.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    }
    test = tests.get(name)
    if test is None:
        return None
    return frozenset(code for code in range(_SPAN) if test(chr(code)))


def _element_chars(op: Any, value: Any) -> frozenset[int] | None:
    """The characters one single-character element can match, or None if unknown."""
    if op == sre_constants.LITERAL:
        return frozenset({value})
    if op != sre_constants.IN:
        return None
    chars: set[int] = set()
    for member, argument in value:
        if member == sre_constants.LITERAL:
            chars.add(argument)
        elif member == sre_constants.RANGE and argument[1] < _SPAN:
            chars.update(range(argument[0], argument[1] + 1))
        elif member == sre_constants.CATEGORY and _category(argument) is not None:
            chars.update(_category(argument) or ())
        else:
            return None  # negated sets, wide ranges: no proof
    return frozenset(chars)


def _matchable(items: Any) -> frozenset[int] | None:
    """Every character ``items`` can match, or None when that is unknown."""
    chars: set[int] = set()
    for op, value in items:
        if op in _REPEATS:
            inner = _matchable(value[2])
        elif op == sre_constants.SUBPATTERN:
            inner = _matchable(value[-1])
        elif op == sre_constants.BRANCH:
            inner = frozenset()
            for branch in value[1]:
                part = _matchable(branch)
                if part is None:
                    return None
                inner |= part
        elif op in (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            continue
        else:
            inner = _element_chars(op, value)
        if inner is None:
            return None
        chars |= inner
    return frozenset(chars)


def _flat(items: Any) -> list[tuple[Any, Any]]:
    """``items`` with groups spliced in: a group's content is part of the sequence."""
    flat: list[tuple[Any, Any]] = []
    for op, value in items:
        if op == sre_constants.SUBPATTERN:
            flat.extend(_flat(value[-1]))
        else:
            flat.append((op, value))
    return flat


def _separated(body: Any) -> bool:
    body = _flat(body)
    repeated: set[int] = set()
    for op, value in body:
        if op in _REPEATS and (value[1] == _UNBOUNDED or value[1] > _LARGE):
            chars = _matchable(value[2])
            if chars is None:
                return False
            repeated |= chars
    for op, value in body:
        chars = _element_chars(op, value)
        if chars is not None and chars and not chars & repeated:
            return True
    return False


def _contains_wide_repeat(items: Any) -> bool:
    for op, value in items:
        if op in _REPEATS:
            _low, high, body = value
            if high == _UNBOUNDED or high > _LARGE:
                return True
            if _contains_wide_repeat(body):
                return True
        elif op == sre_constants.SUBPATTERN:
            if _contains_wide_repeat(value[-1]):
                return True
        elif op == sre_constants.BRANCH:
            if any(_contains_wide_repeat(branch) for branch in value[1]):
                return True
    return False
