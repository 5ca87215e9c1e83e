"""The form model: renderings, coercion of submitted strings, validation messages."""

import pytest
from werkzeug.datastructures import MultiDict

from host.forms import build_form, coerce, validate

SCHEMA = {
    "type": "object",
    "required": ["title", "count"],
    "properties": {
        "title": {"type": "string", "title": "Title", "minLength": 3, "maxLength": 10},
        "body": {"type": "string", "x-widget": "textarea"},
        "count": {"type": "integer", "minimum": 1, "maximum": 5},
        "ratio": {"type": "number"},
        "draft": {"type": "boolean", "default": False},
        "level": {"type": "string", "enum": ["low", "high"]},
        "size": {"type": "integer", "enum": [1, 2, 3]},
        "labels": {"type": "array", "items": {"type": "string"}},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "colors": {"type": "array", "items": {"type": "string", "enum": ["red", "blue"]}},
        "repo": {"type": "object", "x-source": "rpc_repos"},
        "topics": {"type": "array", "x-source": "rpc_topics"},
        "meta": {"type": "object", "properties": {"owner": {"type": "string"},
                                                  "stars": {"type": "integer"}}},
        "email": {"type": "string", "format": "email"},
    },
}
FORM = build_form(SCHEMA)


def test_renderings():
    widgets = {f.name: (f.widget, f.type, f.multiple) for f in FORM.fields}
    assert widgets == {
        "title": ("text", "string", False), "body": ("textarea", "string", False),
        "count": ("number", "integer", False), "ratio": ("number", "number", False),
        "draft": ("toggle", "boolean", False), "level": ("select", "string", False),
        "size": ("select", "integer", False), "labels": ("multi", "array", False),
        "ids": ("multi", "array", False), "colors": ("select", "array", True),
        "repo": ("source", "object", False), "topics": ("source", "array", True),
        "meta": ("group", "object", False), "email": ("text", "string", False)}
    meta = FORM.field("meta")
    assert [c.name for c in meta.children] == ["owner", "stars"]
    assert FORM.field("draft").has_default and FORM.field("draft").default is False
    assert FORM.field("title").required and not FORM.field("body").required


def test_coercion_of_every_type():
    values, errors = coerce(FORM, MultiDict([
        ("title", "Hello"), ("body", "multi\nline"), ("count", "3"), ("ratio", "2.5"),
        ("draft", "true"), ("level", "high"), ("size", "2"), ("labels", "a, b,,c"),
        ("ids", "[1, 2]"), ("colors", "red"), ("colors", "blue"),
        ("repo", '{"owner": "o", "name": "n"}'), ("topics", '"x"'), ("topics", '"y"'),
        ("meta.owner", "ada"), ("meta.stars", "4"), ("email", ""),
    ]))
    assert errors == []
    assert values == {
        "title": "Hello", "body": "multi\nline", "count": 3, "ratio": 2.5, "draft": True,
        "level": "high", "size": 2, "labels": ["a", "b", "c"], "ids": [1, 2],
        "colors": ["red", "blue"], "repo": {"owner": "o", "name": "n"}, "topics": ["x", "y"],
        "meta": {"owner": "ada", "stars": 4}}


def test_unchecked_toggles_are_false_and_empty_fields_absent():
    values, errors = coerce(FORM, MultiDict([("title", ""), ("meta.owner", "")]))
    assert errors == [] and values == {"draft": False}


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("count", "three", "must be a whole number"),
    ("count", "1.5", "must be a whole number"),
    ("ratio", "abc", "must be a number"),
    ("ratio", "nan", "must be a finite number"),
    ("ids", "1, x", "must be a whole number"),
    ("repo", "{not json", "is not a valid choice; pick an option again"),
])
def test_bad_strings_are_reported_per_field(name, raw, message):
    _, errors = coerce(FORM, MultiDict([(name, raw)]))
    assert [(e.field, e.message) for e in errors] == [(name, message)]


def test_validation_messages_per_field():
    errors = validate(FORM, {"title": "Hi", "count": 9, "level": "medium", "ratio": "x",
                             "email": "nope", "meta": {"stars": "many"}, "extra": 1})
    assert sorted((e.field, e.message) for e in errors) == [
        ("count", "must be at most 5"),
        ("email", "must be a valid email"),
        ("extra", "is not a field of this form"),
        ("level", "must be one of: low, high"),
        ("meta.stars", "must be a whole number"),
        ("ratio", "must be a number"),
        ("title", "must be at least 3 characters"),
    ]
    missing = validate(FORM, {})
    assert [(e.field, e.message) for e in missing] == [("title", "is required"),
                                                       ("count", "is required")]


def test_one_of_required_groups_say_which_fields():
    form = build_form({"type": "object", "properties": {"text": {"type": "string"},
                                                        "html": {"type": "string"}},
                       "anyOf": [{"required": ["text"]}, {"required": ["html"]}]})
    assert [(e.field, e.message) for e in validate(form, {})] == [
        ("", "fill in one of: text, html")]
    assert validate(form, {"html": "<p>"}) == []


def test_messages_never_echo_the_submitted_value():
    secret = "sk_live_DO_NOT_SHOW"
    form = build_form({"type": "object", "properties": {
        "key": {"type": "string", "not": {"pattern": "^sk_live_"}},
        "target": {"oneOf": [{"type": "string", "maxLength": 3},
                             {"type": "string", "minLength": 2}]},
        "tags": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
        "step": {"type": "integer", "multipleOf": 5}}})
    errors = validate(form, {"key": secret, "target": secret[:3], "tags": [secret, secret],
                             "step": 7})
    assert sorted((e.field, e.message) for e in errors) == [
        ("key", "is a value this field does not accept"),
        ("step", "must be a multiple of 5"),
        ("tags", "must not repeat an item"),
        ("target", "must match exactly one of the allowed shapes"),
    ]
