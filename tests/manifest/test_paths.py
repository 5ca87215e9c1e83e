import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonpath_ng import jsonpath as tree
from jsonpath_ng.parser import JsonPathParser

from host.engine.paths import MISSING, PathSyntaxError, _Outside, _walk, compile_path

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


REFUSED = "(filters and scripts are not allowed; supported: $, .name, ['name'], [n], [*], " \
    "..name and $headers.Name)"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        # jsonpath-ng parses these into the same tree as a path of the subset;
        # the spelling is refused all the same, where it goes wrong.
        ("$.*", "at character 3: '.' must be followed by a member name"),
        ("$..*", "at character 4: '..' must be followed by a member name"),
        ("$.items.[0]", "at character 9: '.' must be followed by a member name"),
        ("$.'id'", "at character 3: '.' must be followed by a member name"),
        ("$. id", "at character 3: '.' must be followed by a member name"),
        ("$.id ", "at character 5: unexpected text"),
        ("$[ 0]", "at character 2: unexpected text"),
        ("$.a\n.b", "at character 4: unexpected text"),
        # nodes outside the subset
        ("$.a|$.b", "at character 4: unexpected text"),
        ("$.a&$.b", "at character 4: unexpected text"),
        ("$.a where $.b", "at character 4: unexpected text"),
        ("$[0,1]", "at character 2: unexpected text"),
        ("$['a','b']", "at character 2: unexpected text"),
        ("$.a,b", "at character 4: unexpected text"),
        ("$.a.`this`", "at character 5: '.' must be followed by a member name"),
        ("$[::2]", "at character 2: unexpected text"),
        ("$.x + 1", "at character 4: unexpected text"),
        # names keep the host's characters
        ("$.a@b", "at character 4: unexpected text"),
        ("$.@a", "at character 3: '.' must be followed by a member name"),
        ("$.\u4e2d", "at character 3: '.' must be followed by a member name"),
        ("$['open", "at character 2: unexpected text"),
    ],
)
def test_spellings_outside_the_subset_are_refused_where_they_start(path, message):
    with pytest.raises(PathSyntaxError) as info:
        compile_path(path)
    assert str(info.value) == f"path {path!r} {message} {REFUSED}"


@pytest.mark.parametrize(
    ("path", "key"),
    [("$.where", "where"), ("$.wherenot", "wherenot"), ("$.0a", "0a"), ("$.-x", "-x"),
     ("$.1-2", "1-2"), ("$.007", "007"), ("$.a-b", "a-b"), ("$.-", "-")],
)
def test_member_names_jsonpath_ng_lexes_otherwise_are_names(path, key):
    assert compile_path(path).evaluate({key: "v"}) == "v"
    assert compile_path(path.replace("$.", "$..")).evaluate([{key: "v"}]) == ["v"]


OUTSIDE = [
    tree.Where(tree.Fields("a"), tree.Fields("b")),
    tree.WhereNot(tree.Fields("a"), tree.Fields("b")),
    tree._Union(tree.Fields("a"), tree.Fields("b")),
    tree._Intersect(tree.Fields("a"), tree.Fields("b")),
    tree.Slice(1, 2),
    tree.This(),
    tree.Parent(),
    tree.Root(),
    tree.Fields("a", "b"),
    tree.Index(0, 1),
]


@pytest.mark.parametrize("node", OUTSIDE, ids=lambda node: type(node).__name__)
def test_the_tree_walk_refuses_every_other_node(node):
    """The second gate: even a tree the spelling check let through keeps to the subset."""
    with pytest.raises(_Outside) as info:
        _walk(tree.Child(tree.Child(tree.Root(), tree.Fields("x")), node))
    assert info.value.index == 1


@pytest.mark.parametrize("node", [tree.Index(0), tree.Wildcard()], ids=repr)
def test_only_a_name_follows_two_dots(node):
    with pytest.raises(_Outside):
        _walk(tree.Descendants(tree.Root(), node))


def test_a_path_is_parsed_once():
    assert compile_path("$.items[*].id") is compile_path("$.items[*].id")


def test_a_path_that_is_not_text_is_refused():
    with pytest.raises(PathSyntaxError, match="must start with '\\$'"):
        compile_path(["$.id"])  # type: ignore[arg-type]


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


NAMES = st.sampled_from(["a", "b", "id", "0", "x-y", "odd key", "it's"])
KEYED = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=30,
)
STEP = (st.tuples(st.just("key"), NAMES) | st.tuples(st.just("index"), st.integers(-4, 4))
        | st.tuples(st.just("all"), st.none())
        | st.tuples(st.just("deep"), NAMES.filter(lambda n: " " not in n and "'" not in n)))


def spelt(steps, quoted):
    """The subset's spelling of ``steps``; ``quoted`` puts every key in brackets."""
    text = "$"
    for kind, arg in steps:
        name = str(arg).replace("\\", "\\\\").replace("'", "\\'")
        if kind == "key":
            plain = not quoted and all(c.isalnum() or c in "_-" for c in arg)
            text += f".{arg}" if plain else f"['{name}']"
        elif kind == "deep":
            text += f"..['{name}']" if quoted else f"..{arg}"
        elif kind == "index":
            text += f"[{arg}]"
        else:
            text += "[*]"
    return text


@given(KEYED, st.lists(STEP, max_size=4))
def test_evaluation_agrees_with_jsonpath_ng_find(doc, steps):
    """The compiled steps give what jsonpath-ng's own (much slower) evaluation finds."""
    path = compile_path(spelt(steps, quoted=False))
    assert path.steps == tuple(steps)
    ours = path.evaluate(doc)
    if not path.multi:
        ours = [] if ours is MISSING else [ours]
    reference = JsonPathParser().parse(spelt(steps, quoted=True))
    assert ours == [match.value for match in reference.find(doc)]
