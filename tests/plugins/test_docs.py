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


EXAMPLE = Path(__file__).parent / "example_pkg"
BUNDLED = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "plugins").iterdir()
                 if (p / "__init__.py").is_file())


def _block_after(label: str, fence: str) -> str:
    after = DOCS[DOCS.index(label):]
    shown = after[after.index(f"```{fence}\n") + len(fence) + 4:]
    return shown[:shown.index("```")]


def test_the_guide_shows_the_example_package_as_it_is():
    """The tutorial's files are the ones tests/plugins/example_pkg installs and runs:
    the twenty-line plugin, then what "Add an auth type" appends to it."""
    module = _block_after("`minihost_hello.py`:", "python")
    appended = _block_after("Append to\n`minihost_hello.py`", "python")
    assert module + "\n" + appended == (EXAMPLE / "minihost_hello.py").read_text()
    assert len([line for line in module.splitlines() if line.strip()]) <= 20
    assert _block_after("`setup.cfg`", "ini") == (EXAMPLE / "setup.cfg").read_text()
    assert _block_after("`pyproject.toml`:", "toml") == (EXAMPLE / "pyproject.toml").read_text()


def test_every_bundled_plugin_is_in_the_guide():
    documented = set(re.findall(r"^\| `(\w+)` \| `", DOCS, re.MULTILINE))
    assert documented == set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_plugin_implements_only_real_hooks(name):
    """check_pending(): every hookimpl names a hook of the contract."""
    from host.plugins import make_plugins

    plugins = make_plugins([str(EXAMPLE.parents[2] / "plugins")],
                           [other for other in BUNDLED if other != name])
    assert [p.name for p in plugins.loaded] == [name] and plugins.failures == []
    plugins.manager.check_pending()
    assert plugins.hooks_of(name)
    module = plugins.manager.get_plugin(name)
    assert module.__doc__ and module.__version__ and module.MINIHOST_REQUIRES
    assert (EXAMPLE.parents[2] / "plugins" / name / "README.md").is_file()


def test_the_example_package_implements_only_real_hooks():
    from host.plugins import make_plugins

    plugins = make_plugins([str(EXAMPLE)], [])
    assert [p.name for p in plugins.loaded] == ["minihost_hello"]
    plugins.manager.check_pending()
