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


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, min_size=1, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, min_size=1, max_size=4),
    max_leaves=25,
)


@st.composite
def document_and_location(draw):
    """A JSON document and the keys/indexes leading to one of its values."""
    doc = draw(JSON)
    steps, node = [], doc
    while isinstance(node, (dict, list)) and draw(st.booleans()):
        if isinstance(node, dict):
            key = draw(st.sampled_from(sorted(node)))
            steps.append(key)
            node = node[key]
        else:
            index = draw(st.integers(-len(node), len(node) - 1))
            steps.append(index)
            node = node[index]
    return doc, steps, node


def to_path(steps):
    parts = []
    for step in steps:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        else:
            escaped = step.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{escaped}']")
    return "$" + "".join(parts)


@given(document_and_location())
def test_mapping_finds_any_value_of_generated_json(case):
    doc, steps, value = case
    assert compile_path(to_path(steps)).evaluate(doc) == value


@given(JSON)
def test_wildcards_list_every_member(doc):
    result = compile_path("$[*]").evaluate(doc)
    expected = list(doc.values()) if isinstance(doc, dict) else doc if isinstance(
        doc, list) else []
    assert result == expected
