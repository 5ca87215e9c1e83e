"""The plugin manager: pluggy project ``minihost``, one manager per application.

Plugins come from the ``minihost`` entry-point group, from the folders of
``PLUGINS_DIRS`` (the bundled ``plugins/`` by default) and from
``--plugins-dir``. A folder plugin is a package (a directory with
``__init__.py``) or a single ``.py`` module; its name is the directory or file
name. ``DISABLED_PLUGINS`` names plugins not to load. A plugin that fails to
import is recorded in :attr:`Plugins.failures` and logged; it never stops the
host from starting.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pluggy
from flask import Flask

from . import hookspecs

__all__ = ["ENTRY_POINT_GROUP", "PluginFailure", "PluginInfo", "Plugins", "get_plugins", "hookimpl"]

ENTRY_POINT_GROUP = "minihost"
hookimpl = pluggy.HookimplMarker("minihost")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    origin: str  # "entry point" | "folder <path>"
    version: str | None


@dataclass(frozen=True, slots=True)
class PluginFailure:
    name: str
    origin: str
    error: str


@dataclass
class Plugins:
    """One application's plugin manager and what loading it found."""

    manager: pluggy.PluginManager
    loaded: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    def register(self, module: object, info: PluginInfo) -> None:
        self.manager.register(module, name=info.name)
        self.loaded.append(info)

    def _fail(self, name: str, origin: str, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        log.error("plugin %s (%s) failed to load: %s", name, origin, message)
        self.failures.append(PluginFailure(name, origin, message))

    def load_entry_points(self, disabled: set[str]) -> None:
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in disabled:
                continue
            try:
                module = entry.load()
                version = entry.dist.version if entry.dist else None
                self.register(module, PluginInfo(entry.name, "entry point", version))
            except Exception as error:
                self._fail(entry.name, "entry point", error)

    def load_folder(self, folder: Path, disabled: set[str]) -> None:
        if not folder.is_dir():
            return
        for path in sorted(folder.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            if path.is_dir() and (path / "__init__.py").is_file():
                name, init = path.name, path / "__init__.py"
            elif path.suffix == ".py":
                name, init = path.stem, path
            else:
                continue
            if name in disabled or self.manager.has_plugin(name):
                continue
            origin = f"folder {folder}"
            try:
                module = _import_file(name, init, package=path.is_dir())
                version = getattr(module, "__version__", None)
                self.register(module, PluginInfo(name, origin, version))
            except Exception as error:
                self._fail(name, origin, error)


def _import_file(name: str, init: Path, package: bool) -> ModuleType:
    if "minihost_plugins" not in sys.modules:
        sys.modules["minihost_plugins"] = ModuleType("minihost_plugins")
    module_name = f"minihost_plugins.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    locations = [str(init.parent)] if package else None
    spec = importlib.util.spec_from_file_location(
        module_name, init, submodule_search_locations=locations
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def make_plugins(folders: Iterable[str], disabled: Iterable[str]) -> Plugins:
    manager = pluggy.PluginManager("minihost")
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager)
    skip = set(disabled)
    plugins.load_entry_points(skip)
    for folder in folders:
        plugins.load_folder(Path(folder), skip)
    return plugins


def get_plugins(app: Flask) -> Plugins:
    return app.extensions["minihost.plugins"]


def init_app(app: Flask, extra_dirs: Iterable[str] = ()) -> None:
    folders = [*app.config["PLUGINS_DIRS"], *extra_dirs]
    app.extensions["minihost.plugins"] = make_plugins(folders, app.config["DISABLED_PLUGINS"])


BUILTIN_WIDGETS = frozenset({"text", "textarea", "select", "number", "toggle", "multi",
                             "group", "source", "password"})


def register_extensions(app: Flask) -> None:
    """Let plugins add widgets, blueprints and commands, after the host's own are in place."""
    hook = get_plugins(app).hook
    widgets: dict[str, object] = {}
    for contributed in hook.form_widgets():
        for name, render in (contributed or {}).items():
            if name in BUILTIN_WIDGETS or not callable(render):
                log.warning("ignoring plugin widget %r: a built-in name, or not callable", name)
                continue
            widgets.setdefault(name, render)
    app.extensions["minihost.widgets"] = widgets
    app.jinja_env.globals["plugin_widgets"] = widgets
    for blueprints in hook.register_blueprints(app=app):
        for blueprint in blueprints or ():
            app.register_blueprint(blueprint)
    hook.register_commands(cli=app.cli)


def notify(app: Flask, hook_name: str, **kwargs: object) -> None:
    """Call every implementation of a notification hook, each on its own, so one
    failing plugin is logged and the others still hear about it (pluggy alone
    would stop at the first exception)."""
    plugins = app.extensions.get("minihost.plugins")
    if plugins is None:
        return
    caller = getattr(plugins.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):  # pluggy's order: last registered first
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception:
            log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)
