"""Loading folder plugins: each folder's modules are its own, in one process."""

import sys
import textwrap

import pytest

from host import create_app
from host.db import get_database
from host.plugins import get_plugins
from host.services import instance as instance_service

from ..conftest import make_config


@pytest.fixture
def make_app(tmp_path):
    """``make_app(*plugin_folders)``: an application of its own (database and
    instance folder) whose ``PLUGINS_DIRS`` are the given folders."""
    apps = []

    def build(*folders):
        home = tmp_path / f"app{len(apps)}"
        home.mkdir()
        app = create_app(make_config(home, PLUGINS_DIRS=[str(f) for f in folders]),
                         instance_path=home)
        instance_service.migrate(app)
        apps.append(app)
        return app

    yield build
    for app in apps:
        get_database(app).engine.dispose()


def write(path, body):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))


SAYS = """
    from host.plugins import hookimpl

    WHO = {who!r}

    @hookimpl
    def miniapp_manifests(config):
        return [{{"name": "from-" + WHO}}]

    @hookimpl
    def register_commands(cli):
        @cli.command()
        def who():
            print(WHO)
"""


def manifests(app):
    return [answer for _, answer in get_plugins(app).call_each("miniapp_manifests",
                                                               config=app.config)]


def test_two_apps_with_their_own_p_py_each_run_their_own(tmp_path, make_app):
    write(tmp_path / "one" / "p.py", SAYS.format(who="one"))
    write(tmp_path / "two" / "p.py", SAYS.format(who="two"))
    first = make_app(tmp_path / "one")
    second = make_app(tmp_path / "two")
    # Both exist side by side; each one's hooks, at start-up and afterwards, are
    # its own folder's code.
    assert first.test_cli_runner().invoke(args=["who"]).output == "one\n"
    assert second.test_cli_runner().invoke(args=["who"]).output == "two\n"
    assert manifests(first) == [[{"name": "from-one"}]]
    assert manifests(second) == [[{"name": "from-two"}]]
    one = get_plugins(first).manager.get_plugin("p")
    two = get_plugins(second).manager.get_plugin("p")
    assert (one.__file__, two.__file__) == (str(tmp_path / "one" / "p.py"),
                                            str(tmp_path / "two" / "p.py"))
    assert one.__name__.startswith("minihost_plugins.p_") and one.__name__ != two.__name__
    assert sys.modules[one.__name__] is one and sys.modules[two.__name__] is two


def test_apps_loading_the_same_folder_share_its_modules(tmp_path, make_app):
    write(tmp_path / "one" / "p.py", SAYS.format(who="one"))
    first, again = make_app(tmp_path / "one"), make_app(tmp_path / "one" / ".." / "one")
    assert get_plugins(first).manager.get_plugin("p") is \
        get_plugins(again).manager.get_plugin("p")


PACKAGE = """
    from host.plugins import hookimpl

    from .helper import ANSWER

    @hookimpl
    def register_commands(cli):
        @cli.command()
        def answer():
            print(ANSWER)
"""


def test_package_plugins_of_two_folders_import_their_own_helpers(tmp_path, make_app):
    for folder, answer in (("one", 1), ("two", 2)):
        write(tmp_path / folder / "pkg" / "__init__.py", PACKAGE)
        write(tmp_path / folder / "pkg" / "helper.py", f"ANSWER = {answer}\n")
    first, second = make_app(tmp_path / "one"), make_app(tmp_path / "two")
    assert first.test_cli_runner().invoke(args=["answer"]).output == "1\n"
    assert second.test_cli_runner().invoke(args=["answer"]).output == "2\n"
    helper = get_plugins(second).manager.get_plugin("pkg").__name__ + ".helper"
    assert sys.modules[helper].__file__ == str(tmp_path / "two" / "pkg" / "helper.py")


def test_a_package_that_fails_half_way_leaves_no_module_behind(tmp_path, make_app):
    write(tmp_path / "one" / "pkg" / "__init__.py", """
        from .helper import ANSWER

        raise RuntimeError(f"broken after importing {ANSWER}")
    """)
    write(tmp_path / "one" / "pkg" / "helper.py", "ANSWER = 1\n")
    app = make_app(tmp_path / "one")
    [failure] = get_plugins(app).failures
    assert (failure.name, failure.error) == ("pkg", "RuntimeError: broken after importing 1")
    assert [name for name, module in list(sys.modules.items())
            if (getattr(module, "__file__", None) or "").startswith(str(tmp_path))] == []
