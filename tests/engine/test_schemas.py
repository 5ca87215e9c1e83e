"""Schemas from manifests never fetch anything and never backtrack without bound.

A canary server on 127.0.0.1 counts what reaches it: a ``$ref`` in any schema slot
of a manifest must be refused by the lint at its pointer, and evaluating such a
schema anyway (a form built by hand, a sandbox answer) must not reach it either.
"""

from __future__ import annotations

import copy
import time

import pytest

from host.engine.sandbox import sample
from host.engine.schemas import pattern_problems, reference_problems, unsafe_pattern
from host.forms import build_form, validate
from host.manifest import validate_document


@pytest.fixture
def canary(provider):
    provider.json("/x.json", '{"type": "string"}')
    return provider


def slots(ref: str) -> dict[str, tuple[dict, str]]:
    """A manifest per schema slot with a ``$ref`` to ``ref`` in it, and the pointer
    where the lint must report it."""
    base = {
        "name": "refs", "version": "1.0.0", "title": "Refs", "description": "d",
        "allowedHosts": ["api.example.com"],
        "actions": [{"name": "go", "title": "Go",
                     "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
                     "requests": [{"url": "https://api.example.com/x", "method": "GET"}]}],
    }
    bad = {"$ref": ref}
    out = {}
    doc = copy.deepcopy(base)
    doc["actions"][0]["parameters"]["properties"]["a"] = bad
    out["parameters"] = (doc, "/actions/0/parameters/properties/a/$ref")
    doc = copy.deepcopy(base)
    doc["actions"][0]["output"] = {"type": "object", "properties": {"id": bad}}
    out["output"] = (doc, "/actions/0/output/properties/id/$ref")
    doc = copy.deepcopy(base)
    doc["actions"][0]["requests"][0]["responseSchema"] = {"type": "object", "$defs": {
        "x": bad}}
    out["responseSchema"] = (doc, "/actions/0/requests/0/responseSchema/$defs/x/$ref")
    doc = copy.deepcopy(base)
    doc["auth"] = {"type": "apiKey", "fields": {"type": "object", "properties": {
        "key": {"allOf": [bad]}}}}
    out["auth.fields"] = (doc, "/auth/fields/properties/key/allOf/0/$ref")
    doc = copy.deepcopy(base)
    doc["auth"] = {"type": "basic", "fields": {"type": "object", "properties": {
        "tenant": {"type": "array", "items": bad}}}}
    out["basic fields"] = (doc, "/auth/fields/properties/tenant/items/$ref")
    return out


@pytest.mark.parametrize("scheme", ["http", "file"])
@pytest.mark.parametrize("slot", ["parameters", "output", "responseSchema", "auth.fields",
                                  "basic fields"])
def test_the_lint_refuses_references_outside_the_document(canary, scheme, slot):
    ref = f"{canary.base}/x.json" if scheme == "http" else "file:///etc/passwd"
    doc, pointer = slots(ref)[slot]
    problems = {p.pointer: p.message for p in validate_document(doc, "m.json")}
    assert pointer in problems, problems
    assert f"$ref {ref!r} points outside the document" in problems[pointer]
    assert canary.received == []


def test_a_dangling_internal_pointer_is_refused():
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    assert reference_problems(schema, "/p") == [(
        "/p/properties/a/$ref",
        "$ref '#/$defs/missing' points to nothing in this schema; fix the pointer or add "
        "the definition")]


def test_internal_references_still_work():
    form = build_form({"type": "object", "$defs": {"code": {"type": "string", "maxLength": 3}},
                       "properties": {"a": {"$ref": "#/$defs/code"}}})
    assert reference_problems(form.schema) == []
    assert validate(form, {"a": "abc"}) == []
    assert [e.message for e in validate(form, {"a": "abcd"})] == ["must be at most 3 characters"]


def test_evaluating_a_remote_reference_fetches_nothing(canary):
    """A schema that never went through the lint (built by hand) still fetches nothing:
    the field fails with a message, the canary sees no request."""
    form = build_form({"type": "object", "properties": {"a": {"$ref": f"{canary.base}/x.json"}}})
    errors = validate(form, {"a": 1})
    assert [(e.field, e.message) for e in errors] == [(
        "", f"this form's schema refers to '{canary.base}/x.json', which is not part of it; "
            "tell the mini-app's author")]
    assert sample({"$ref": f"{canary.base}/x.json"}) is None
    assert canary.received == []


def test_a_remote_schema_keyword_is_not_fetched(canary):
    doc, _ = slots("#/$defs/none")["parameters"]
    doc["actions"][0]["parameters"] = {"$schema": f"{canary.base}/x.json", "type": "object"}
    validate_document(doc, "m.json")
    form = build_form(doc["actions"][0]["parameters"])
    assert validate(form, {}) == []
    assert canary.received == []


# -- ReDoS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"^(a*)*$", r"^(\w+\s?)*$", r"(.*a){20}",
                                     r"^(x+x+)+y$", r"^(?=(a+)+)b"])
def test_nested_repetition_is_refused(pattern):
    assert unsafe_pattern(pattern) == (
        f"the pattern {pattern!r} repeats something that itself repeats (like (a+)+), which "
        "can take exponential time on some inputs; rewrite it without the nested repetition, "
        "e.g. (a+)+ as a+")


@pytest.mark.parametrize("pattern", [r"^[a-z]+$", r"^(ab)+$", r"^(\d{3}-)+$",
                                     r"^([a-z]+\.)*[a-z]+$", r"^([a-z0-9-]+,)*$", r"^(\w+@)+$",
                                     r"^[A-Z]{2}\d{2}[A-Z0-9]{1,30}$"])
def test_separated_or_flat_patterns_pass(pattern):
    assert unsafe_pattern(pattern) is None


def test_the_lint_reports_the_pattern_at_its_pointer():
    doc, _ = slots("#/x")["parameters"]
    doc["actions"][0]["parameters"]["properties"]["a"] = {"type": "string",
                                                          "pattern": "^(a+)+$"}
    problems = {p.pointer: p.message for p in validate_document(doc, "m.json")}
    assert problems["/actions/0/parameters/properties/a/pattern"].startswith(
        "parameters of go: the pattern '^(a+)+$' repeats something that itself repeats")


@pytest.mark.parametrize(("pattern", "reason"), [
    ("(?a)(?u)x", "ASCII and UNICODE flags are incompatible"),
])
def test_a_pattern_whose_flags_contradict_is_a_problem_not_a_crash(pattern, reason):
    """re raises ValueError (not re.error) for these, which jsonschema's own check of
    the schema does not catch: the lint reports it at its pointer instead."""
    doc, _ = slots("#/x")["parameters"]
    doc["actions"][0]["parameters"]["properties"]["a"] = {"type": "string",
                                                          "pattern": pattern}
    problems = {p.pointer: p.message for p in validate_document(doc, "m.json")}
    assert problems["/actions/0/parameters/properties/a/pattern"] == (
        f"parameters of go: the pattern {pattern!r} is not a usable regular expression "
        f"({reason})")


def test_pattern_properties_beside_unevaluated_properties_are_refused():
    schema = {"type": "object", "patternProperties": {"^x-": {"type": "string"}},
              "unevaluatedProperties": False}
    assert pattern_problems(schema) == [(
        "/unevaluatedProperties", "unevaluatedProperties cannot be combined with "
        "patternProperties here; use additionalProperties instead")]


@pytest.mark.parametrize("schema, values", [
    ({"type": "string", "pattern": "^(a|a)+$"}, {"a": "a" * 40 + "!"}),
    ({"type": "object", "patternProperties": {"^(a|a)+$": {"type": "string"}}},
     {"a": {"a" * 40 + "!": "x"}}),
    ({"type": "object", "properties": {}, "patternProperties": {"^(a|a)+$": {}},
      "additionalProperties": False}, {"a": {"a" * 40 + "!": "x"}}),
])
def test_validation_is_bounded(schema, values):
    """A pattern the lint cannot see through (overlapping alternatives) is cut short:
    the field fails with a clear message. The budget is 0.25 s; unbounded, this input
    would take days, so a generous bound proves the cut without timing the machine."""
    form = build_form({"type": "object", "properties": {"a": schema}})
    started = time.monotonic()
    errors = validate(form, values)
    elapsed = time.monotonic() - started
    assert elapsed < 10.0
    assert [e.message for e in errors][:1] == [
        "took too long to check against the pattern of this field; enter a shorter value, "
        "or ask the mini-app's author to simplify the pattern"]


def test_ordinary_patterns_give_the_usual_answers():
    form = build_form({"type": "object", "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "tags": {"type": "object", "patternProperties": {"^x-": {"type": "integer"}},
                 "additionalProperties": False}}})
    assert validate(form, {"code": "ABC", "tags": {"x-a": 1}}) == []
    assert [(e.field, e.message) for e in validate(form, {"code": "abc", "tags": {
        "x-a": "one", "y": 2}})] == [
        ("code", "must match the pattern ^[A-Z]{3}$"),
        ("tags.x-a", "must be a whole number"),
        ("tags.y", "is not a field of this form")]
