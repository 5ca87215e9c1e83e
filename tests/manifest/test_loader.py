import json
import shutil

import pytest

from host.errors import ManifestError
from host.manifest import load_manifest, manifest_schema, read_document
from host.manifest.loader import _too_deep

from ..conftest import FIXTURES


def write(tmp_path, name, text):
    folder = tmp_path / "app"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


def messages(error):
    return [str(p) for p in error.value.problems]


def test_loads_a_folder_with_json(tmp_path):
    folder = tmp_path / "weather"
    shutil.copytree(FIXTURES / "miniapps" / "weather", folder)
    manifest = load_manifest(folder)
    assert (manifest.name, manifest.version, manifest.location) == (
        "weather", "1.0.0", str(folder))


def test_loads_yaml(tmp_path):
    folder = write(tmp_path, "manifest.yaml", "\n".join([
        "name: hello", "version: 1.2.3", "title: Hello", "description: Says hello.",
        "actions: []",
    ]))
    assert load_manifest(folder).title == "Hello"


def test_invalid_json_names_line_and_column(tmp_path):
    folder = write(tmp_path, "manifest.json", '{"name": "x",\n  "version": }')
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert messages(info) == [
        f"{folder / 'manifest.json'} /: not valid JSON: Expecting value at line 2 column 14"
    ]


def test_invalid_yaml(tmp_path):
    folder = write(tmp_path, "manifest.yml", "name: [unclosed\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    [message] = messages(info)
    assert message.startswith(f"{folder / 'manifest.yml'} /: not valid YAML: ")
    assert "line 2 column 1" in message


def test_duplicate_keys_are_refused(tmp_path):
    folder = write(tmp_path, "manifest.json", '{"name": "a", "name": "b"}')
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert messages(info) == [f"{folder / 'manifest.json'} /: not valid JSON: duplicate key 'name'"]


def test_top_level_must_be_an_object(tmp_path):
    folder = write(tmp_path, "manifest.json", "[1, 2]")
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert messages(info) == [
        f"{folder / 'manifest.json'} /: a manifest must be a JSON object with name, version, "
        "title, description"
    ]


def test_folder_without_manifest(tmp_path):
    with pytest.raises(ManifestError) as info:
        read_document(tmp_path)
    assert messages(info) == [
        f"{tmp_path} /: no manifest here; add one of manifest.json, manifest.yaml, manifest.yml"
    ]


@pytest.mark.parametrize(
    ("icon", "message"),
    [
        ("missing.svg", "icon file 'missing.svg' does not exist"),
        ("../outside.svg", "the icon must be a file in the mini-app folder"),
        ("icon.gif", "the icon must be an .svg or .png file"),
    ],
)
def test_icon_checks(tmp_path, icon, message):
    doc = {"name": "hello", "version": "1.0.0", "title": "H", "description": "d", "icon": icon}
    folder = write(tmp_path, "manifest.json", json.dumps(doc))
    (folder / "icon.gif").write_text("GIF")
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert messages(info) == [f"{folder / 'manifest.json'} /icon: {message}"]


def test_published_schema_is_draft_2020_12():
    schema = manifest_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema)


def test_unsafe_yaml_is_refused(tmp_path):
    folder = write(tmp_path, "manifest.yaml", "name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    [message] = messages(info)
    assert "not valid YAML: could not determine a constructor" in message


@pytest.mark.parametrize("depth", [65, 5000])
def test_deep_nesting_is_refused(tmp_path, depth):
    folder = write(tmp_path, "manifest.json", "[" * depth + "]" * depth)
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert messages(info) == [
        f"{folder / 'manifest.json'} /: the manifest nests deeper than 64 levels"]


def nested(depth, leaf):
    """``depth`` levels of alternating lists and objects around ``leaf``."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize(("depth", "leaf", "deep"), [
    (63, 1, False), (64, 1, True), (63, [], False), (64, [], True), (64, {}, True),
    (62, [1], False), (63, [1], True), (61, {"a": [2]}, False), (62, {"a": [2]}, True),
])
def test_the_depth_limit_counts_every_level(depth, leaf, deep):
    """The document is level 1 and each value one more than its container, empty
    ones included: 64 levels are allowed, a value on a 65th is not."""
    assert _too_deep(nested(depth, leaf)) is deep
    assert _too_deep([nested(depth - 1, leaf), list(range(100))]) is deep


def test_a_repeated_key_names_the_first_repeat(tmp_path):
    folder = write(tmp_path, "manifest.json", '{"a": 1, "b": 2, "b": 3, "a": 4}')
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert messages(info) == [f"{folder / 'manifest.json'} /: not valid JSON: duplicate key 'b'"]


def test_huge_manifests_are_refused(tmp_path):
    folder = write(tmp_path, "manifest.json", " " * (2 * 1024 * 1024 + 1))
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert messages(info) == [f"{folder / 'manifest.json'} /: the manifest is larger than "
                              "2048 KB; move large examples out of it"]


def test_an_idempotency_header_is_added_to_every_request_but_gets(tmp_path):
    doc = {"name": "payer", "version": "1.0.0", "title": "Payer", "description": "Pays.",
           "allowedHosts": ["api.payer.test"],
           "actions": [{"name": "pay", "title": "Pay", "idempotency": {"header": "Idempotency-Key"},
                        "requests": [
                            {"url": "https://api.payer.test/quote", "method": "GET"},
                            {"url": "https://api.payer.test/pay", "method": "POST"},
                            {"url": "https://api.payer.test/x", "method": "POST",
                             "headers": {"idempotency-key": "own"}}]},
                       {"name": "look", "title": "Look", "idempotent": True, "requests": [
                           {"url": "https://api.payer.test/y", "method": "POST"}]},
                       {"name": "send", "title": "Send", "requests": [
                           {"url": "https://api.payer.test/z", "method": "POST"}]}]}
    manifest = load_manifest(write(tmp_path, "manifest.json", json.dumps(doc)))
    pay, look, send = manifest.actions
    headers = [[(name, getattr(value, "source", value)) for name, value in request.headers]
               for request in pay.requests]
    assert headers == [[], [("Idempotency-Key", "{{idempotencyKey}}")],
                       [("idempotency-key", "own")]]
    assert (pay.repeatable, look.repeatable, send.repeatable) == (True, True, False)
    assert (pay.idempotency_header, look.idempotent) == ("Idempotency-Key", True)
