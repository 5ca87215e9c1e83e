import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.engine.paths import MISSING, PathSyntaxError, compile_path

DOC = {
    "id": 7,
    "data": {"user": {"name": "Ada", "tags": ["a", "b"]}},
    "items": [{"id": 1, "code": "x"}, {"id": 2, "code": "y"}, {"id": 3}],
    "odd key": {"with.dot": True},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DOC),
        ("$.id", 7),
        ("$.data.user.name", "Ada"),
        ("$.items[0].code", "x"),
        ("$.items[-1].id", 3),
        ("$['odd key']['with.dot']", True),
        ('$["odd key"]["with.dot"]', True),
        ("$.data.user.tags[1]", "b"),
    ],
)
def test_single_value_paths(path, expected):
    assert compile_path(path).evaluate(DOC) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.items[*].id", [1, 2, 3]),
        ("$.items[*].code", ["x", "y"]),
        ("$..id", [7, 1, 2, 3]),
        ("$..name", ["Ada"]),
        ("$.nothing[*]", []),
    ],
)
def test_multi_value_paths_give_lists(path, expected):
    assert compile_path(path).evaluate(DOC) == expected


@pytest.mark.parametrize("path", ["$.missing", "$.items[9]", "$.id.deeper", "$.items.id", "$[0]"])
def test_no_match_is_missing(path):
    assert compile_path(path).evaluate(DOC) is MISSING


def test_non_json_body_is_a_string_at_root():
    assert compile_path("$").evaluate("plain text") == "plain text"
    assert compile_path("$.x").evaluate("plain text") is MISSING


def test_header_paths_are_case_insensitive():
    path = compile_path("$headers.X-Request-Id")
    assert path.evaluate({}, {"x-request-id": "abc"}) == "abc"
    assert path.evaluate({}, {"Other": "1"}) is MISSING


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("$.items[?(@.id > 1)]", "at character 8: unexpected text"),
        ("$..[0]", "'..' must be followed by a member name"),
        ("$.", "'.' must be followed by a member name"),
        ("items", "must start with '$'"),
        ("$.a(b)", "unexpected text"),
        ("$headers", "a header path is $headers.Name"),
        ("$[1:2]", "unexpected text"),
    ],
)
def test_anything_outside_the_subset_is_rejected(path, fragment):
    with pytest.raises(PathSyntaxError) as info:
        compile_path(path)
    assert fragment in str(info.value)
    assert "filters" in str(info.value) or "must start" in str(info.value) or "header" in str(
        info.value
    )


@given(st.text(alphabet="abcXYZ_-019", min_size=1, max_size=12), st.integers(-5, 4))
def test_dot_and_bracket_forms_agree(name, index):
    doc = {name: [{"v": i} for i in range(5)]}
    dotted = compile_path(f"$.{name}[{index}].v").evaluate(doc)
    quoted = compile_path(f"$['{name}'][{index}]['v']").evaluate(doc)
    assert dotted == quoted == doc[name][index]["v"]
