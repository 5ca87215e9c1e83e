"""Meta-tests: every hook is documented with its exact signature and has a test."""

import inspect
import re
from pathlib import Path

import pytest

from host.plugins import hookspecs

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
TESTS = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
HOOKS = sorted(
    name for name, value in vars(hookspecs).items()
    if callable(value) and hasattr(value, "minihost_spec")
)


def test_there_are_hooks():
    assert {"miniapp_manifests", "register_blueprints", "register_commands"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_exact_signature(name):
    signature = str(inspect.signature(getattr(hookspecs, name))).replace("'", "")
    assert f"#### `{name}`" in DOCS
    assert f"def {name}{signature}\n" in DOCS


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_docstring(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Called" in doc


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test(name):
    assert re.search(rf"^def test_hook_{name}\b", TESTS, re.MULTILINE), (
        f"add a test named test_hook_{name} to tests/plugins/"
    )


def test_documented_hooks_exist():
    documented = set(re.findall(r"^#### `(\w+)`", DOCS, re.MULTILINE))
    assert documented == set(HOOKS)
