"""The fast meta-schema check answers as jsonschema's ``check_schema`` does."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from host.manifest.metaschema import _DEFER, conforms

from ..conftest import REPO

KEYWORDS = [
    "type", "enum", "const", "examples", "default", "multipleOf", "maximum", "minimum",
    "exclusiveMaximum", "exclusiveMinimum", "pattern", "required", "maxLength", "minLength",
    "maxItems", "minItems", "maxContains", "minContains", "maxProperties", "minProperties",
    "uniqueItems", "deprecated", "readOnly", "writeOnly", "title", "description", "format",
    "contentEncoding", "contentMediaType", "$comment", "items", "contains",
    "additionalProperties", "propertyNames", "if", "then", "else", "not", "unevaluatedItems",
    "unevaluatedProperties", "contentSchema", "prefixItems", "allOf", "anyOf", "oneOf",
    "properties", "$defs", "definitions", "dependentSchemas", "patternProperties",
    "dependentRequired", "dependencies", "x-widget", "$ref", "$id",
]
TYPES = ["array", "boolean", "integer", "null", "number", "object", "string", "text"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(-3, 3, allow_nan=False),
    st.sampled_from([*TYPES, "^a+$", "(", "#/x", "a", ""]),
)


def values(schemas):
    strings = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)
    return st.one_of(
        scalars, schemas, strings, st.lists(st.sampled_from(TYPES), max_size=3),
        st.lists(schemas, max_size=2), st.dictionaries(st.sampled_from(["a", "b", "("]),
                                                       st.one_of(schemas, strings), max_size=2),
    )


schemas = st.recursive(
    st.one_of(st.booleans(), st.just({})),
    lambda inner: st.dictionaries(st.sampled_from(KEYWORDS), values(inner), max_size=4),
    max_leaves=12,
)


def typed(inner):
    """Mostly values of the right kind for each keyword, so most schemas are valid."""
    number = st.one_of(st.integers(-2, 3), st.floats(-2, 3, allow_nan=False))
    names = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)
    kinds = {
        "type": st.one_of(st.sampled_from(TYPES), st.lists(st.sampled_from(TYPES), max_size=3)),
        "minLength": number, "maxItems": number, "minContains": number, "multipleOf": number,
        "maximum": number, "exclusiveMinimum": number, "required": names,
        "pattern": st.sampled_from(["^a+$", "(", "[a-z]", "\\d"]), "uniqueItems": scalars,
        "title": scalars, "enum": st.lists(scalars, max_size=2), "items": inner,
        "not": inner, "allOf": st.lists(inner, max_size=2),
        "properties": st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
        "patternProperties": st.dictionaries(st.sampled_from(["^a", "(", "b"]), inner,
                                             max_size=2),
        "dependentRequired": st.dictionaries(st.sampled_from(["a", "b"]), names, max_size=2),
        "dependencies": st.dictionaries(st.sampled_from(["a", "b"]),
                                        st.one_of(names, inner), max_size=2),
        "x-widget": scalars,
    }
    return st.one_of(*(st.fixed_dictionaries({key: value}) for key, value in kinds.items()))


typed_schemas = st.recursive(
    st.one_of(st.booleans(), st.just({})),
    lambda inner: st.lists(typed(inner), max_size=4).map(
        lambda parts: {k: v for part in parts for k, v in part.items()}),
    max_leaves=12,
)


def jsonschema_accepts(schema):
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return False
    return True


def defers(schema):
    text = json.dumps(schema)
    return any(f'"{key}"' in text for key in _DEFER)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(schemas, typed_schemas))
def test_conforms_agrees_with_jsonschema(schema):
    """True only when jsonschema accepts; and for schemas without the URI keywords it
    leaves to jsonschema, exactly when jsonschema accepts."""
    accepted = jsonschema_accepts(schema)
    if conforms(schema):
        assert accepted
    elif not defers(schema):
        assert not accepted


def test_every_bundled_schema_takes_the_fast_path():
    found = []

    def collect(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("parameters", "responseSchema", "fields", "output") and \
                        isinstance(value, dict):
                    found.append(value)
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    for path in (REPO / "miniapps").glob("*/manifest.json"):
        collect(json.loads(path.read_text()))
    assert len(found) > 50
    assert all(conforms(schema) for schema in found)


def test_refusals_and_deferrals():
    assert not conforms({"type": "text"})
    assert not conforms({"minLength": -1})
    assert not conforms({"allOf": []})
    assert not conforms({"required": ["a", "a"]})
    assert not conforms({"pattern": "("})
    assert not conforms({"properties": {"a": 1}})
    assert not conforms({"$ref": "#/$defs/a", "$defs": {"a": {}}})  # jsonschema decides
    assert conforms({"type": ["string", "null"], "minLength": 1.0, "x-widget": "textarea",
                     "dependencies": {"a": ["b"], "b": {"required": ["a"]}}})
