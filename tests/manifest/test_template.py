from hypothesis import given
from hypothesis import strategies as st

from host.engine.template import (
    CompiledArray,
    CompiledObject,
    Placeholder,
    Template,
    compile_template,
    compile_value,
    malformed_placeholders,
    walk_templates,
)


def test_plain_strings_stay_strings():
    assert compile_template("no placeholders here") == "no placeholders here"


def test_whole_value_placeholder():
    template = compile_template("{{labels}}")
    assert isinstance(template, Template)
    assert template.whole == Placeholder("value", "labels", ("labels",))


def test_namespaces_are_separate_and_parts_keep_literals():
    template = compile_template("Bearer [[accessToken]] for {{ user.name }}!")
    assert template.parts == (
        "Bearer ",
        Placeholder("secret", "accessToken", ("accessToken",)),
        " for ",
        Placeholder("value", "user.name", ("user", "name")),
        "!",
    )
    assert template.whole is None


def test_dotted_keys_with_indexes():
    template = compile_template("{{items.0.id}}")
    assert template.whole.path == ("items", "0", "id")


def test_compile_value_walks_objects_and_arrays():
    compiled = compile_value({"a": ["{{x}}", 1, {"b": "[[y]]"}], "c": True})
    assert isinstance(compiled, CompiledObject)
    assert isinstance(compiled.items[0][1], CompiledArray)
    assert [str(p) for t in walk_templates(compiled) for p in t.placeholders] == ["{{x}}", "[[y]]"]


def test_malformed_placeholders_are_found():
    assert malformed_placeholders("{{ two words }} and [[]] and {{ok}}") == [
        "{{ two words }}",
        "[[]]",
    ]


@given(st.text(alphabet=st.characters(blacklist_characters="[]{}"), max_size=40))
def test_text_without_brackets_is_never_a_template(text):
    assert compile_template(text) == text
