"""The plugin manager: pluggy project ``minihost``, one manager per application.

Plugins come from the ``minihost`` entry-point group, from the folders of
``PLUGINS_DIRS`` (the bundled ``plugins/`` by default) and from
``--plugins-dir``. A folder plugin is a package (a directory with
``__init__.py``) or a single ``.py`` module; its name is the directory or file
name. Its module is imported as ``minihost_plugins.<name>_<hash>``, the hash
being of the folder's resolved path (:mod:`.loading`): applications loading the
same folder share its modules, and two folders each holding ``p.py`` never run
each other's code.
``DISABLED_PLUGINS`` names plugins not to load. A plugin may declare the
host versions it works with as ``MINIHOST_REQUIRES = ">=0.1"`` (a PEP 440
specifier), and the shape of its ``PLUGIN_SETTINGS`` entry as a JSON Schema,
``SETTINGS_SCHEMA``, checked once while it registers (:mod:`.settings`).

A plugin that fails to import, needs another host version, or raises in a hook
is reported — logged, and listed on ``/-/plugins`` (load failures also by
``minihost plugins list``) — and never stops the host from starting, a page from
rendering or a run from being recorded. Hooks are therefore called through
:meth:`Plugins.call_each` (the request hooks by ``host.outbound``),
which calls each implementation on its own, rather than through pluggy's relay,
which stops at the first exception. Everything else is pluggy's: the call order
(``tryfirst``/``trylast``, then the plugin registered last first), arguments by
name, and ``firstresult``.

Hook wrappers (``@hookimpl(wrapper=True)``, old-style ``hookwrapper=True``) are
refused when a plugin registers (:func:`.loading.refuse_wrappers` says why);
``tryfirst``/``trylast`` give the ordering wrappers are otherwise used for.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from flask import Flask
from markupsafe import Markup
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ..manifest import RESERVED_PARAMETERS
from ..version import __version__
from . import hookspecs
from .contract import AuthFlow, AuthType, RenderStrategy
from .loading import import_file, refuse_wrappers
from .settings import refusing, schema_problem, settings_problem

__all__ = [
    "ENTRY_POINT_GROUP",
    "AuthFlow",
    "AuthType",
    "HookFailure",
    "PluginFailure",
    "PluginInfo",
    "Plugins",
    "RenderStrategy",
    "describe",
    "get_plugins",
    "hookimpl",
    "notify",
    "plugin_settings",
]

ENTRY_POINT_GROUP = "minihost"
hookimpl = pluggy.HookimplMarker("minihost")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    origin: str  # "entry point <dist>" | "folder <path>"
    version: str | None


@dataclass(frozen=True, slots=True)
class PluginFailure:
    """A plugin that did not load."""

    name: str
    origin: str
    error: str


@dataclass(slots=True)
class HookFailure:
    """A loaded plugin that raised in a hook: how often, and the latest error."""

    plugin: str
    hook: str
    error: str
    count: int = 1
    last_at: float = field(default_factory=time.time)


@dataclass
class Plugins:
    """One application's plugin manager and what loading and calling it found."""

    manager: pluggy.PluginManager
    settings: Mapping[str, Any] = field(default_factory=dict)  # PLUGIN_SETTINGS
    loaded: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    hook_failures: dict[tuple[str, str], HookFailure] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    # -- loading -------------------------------------------------------------------------

    def register(self, module: object, info: PluginInfo) -> None:
        """Register ``module`` as plugin ``info.name``, or raise saying why not."""
        required = getattr(module, "MINIHOST_REQUIRES", None)
        if required is not None:
            try:
                allowed = SpecifierSet(str(required)).contains(__version__, prereleases=True)
            except InvalidSpecifier:
                raise ValueError(f"MINIHOST_REQUIRES = {required!r} is not a version "
                                 "specifier such as '>=0.1'") from None
            if not allowed:
                raise RuntimeError(f"needs Minihost {required}; this host is {__version__}")
        refuse_wrappers(self.manager, module)
        schema = getattr(module, "SETTINGS_SCHEMA", None)
        if schema is not None:
            problem = schema_problem(schema)
            if problem is not None:
                raise ValueError(problem)
            if info.name in self.settings:
                problem = settings_problem(info.name, schema, self.settings[info.name])
                if problem is not None:
                    self._refuse(module, info, problem)
                    return
        self.manager.register(module, name=info.name)
        self.loaded.append(info)

    def _refuse(self, module: object, info: PluginInfo, problem: str) -> None:
        """Leave a plugin with wrong settings out, listed as not loaded, and hold
        its hooks with a stand-in that fails each call with ``problem`` (see
        :mod:`host.plugins.settings` for why it is not simply skipped)."""
        self.manager.register(refusing(self.manager, module, problem), name=info.name)
        log.error("plugin %s (%s) is not loaded, its settings are wrong: %s; until they are "
                  "fixed each of its hooks fails with this message", info.name, info.origin,
                  problem)
        self.failures.append(PluginFailure(info.name, info.origin, f"ValueError: {problem}"))

    def _fail(self, name: str, origin: str, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        log.error("plugin %s (%s) failed to load: %s", name, origin, message)
        self.failures.append(PluginFailure(name, origin, message))

    def load_entry_points(self, disabled: set[str]) -> None:
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in disabled or self.manager.has_plugin(entry.name):
                continue
            origin = f"entry point {entry.dist.name}" if entry.dist else "entry point"
            try:
                module = entry.load()
                version = entry.dist.version if entry.dist else None
                self.register(module, PluginInfo(entry.name, origin, version))
            except Exception as error:
                self._fail(entry.name, origin, error)

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
                module = import_file(folder, name, init, package=path.is_dir())
                version = getattr(module, "__version__", None)
                self.register(module, PluginInfo(name, origin, version))
            except Exception as error:
                self._fail(name, origin, error)

    # -- calling -------------------------------------------------------------------------

    def implemented(self, hook_name: str) -> bool:
        return bool(getattr(self.hook, hook_name).get_hookimpls())

    def hooks_of(self, name: str) -> list[str]:
        """The hooks plugin ``name`` implements, sorted."""
        plugin = self.manager.get_plugin(name)
        callers = self.manager.get_hookcallers(plugin) if plugin is not None else None
        return sorted(caller.name for caller in callers or ())

    def report(self, plugin: str, hook_name: str, error: BaseException,
               redact: Callable[[str], str] | None = None) -> str:
        """Log a plugin's failure in a hook and keep it for the plugins page.

        ``redact`` hides the secrets the hook was handed (a request's credentials):
        its error may quote them. The traceback is then left out of the log, as it
        repeats the message."""
        message = f"{type(error).__name__}: {error}"
        if redact is not None:
            message = redact(message)
            log.error("plugin %s failed in %s: %s", plugin, hook_name, message)
        else:
            log.error("plugin %s failed in %s: %s", plugin, hook_name, message, exc_info=error)
        with self._lock:
            known = self.hook_failures.get((plugin, hook_name))
            if known is None:
                self.hook_failures[(plugin, hook_name)] = HookFailure(plugin, hook_name, message)
            else:
                known.error, known.count, known.last_at = message, known.count + 1, time.time()
        return message

    def call_each(self, hook_name: str, /, **kwargs: Any) -> list[tuple[str, Any]]:
        """Every implementation's answer as ``(plugin name, answer)``, in pluggy's
        call order, ``None`` answers included so callers can tell who answered.

        One that raises is reported and skipped; the others still run. For a
        ``firstresult`` hook the calls stop at the first answer that is not
        ``None``, as pluggy's would: the list holds that one answer, or nothing."""
        caller = getattr(self.hook, hook_name)
        first = bool(caller.spec is not None and caller.spec.opts.get("firstresult"))
        answers: list[tuple[str, Any]] = []
        for impl in reversed(caller.get_hookimpls()):
            try:
                answer = _invoke(impl, kwargs)
            except Exception as error:
                self.report(impl.plugin_name, hook_name, error)
                continue
            if first:
                if answer is not None:
                    return [(impl.plugin_name, answer)]
                continue
            answers.append((impl.plugin_name, answer))
        return answers

    def call_all(self, hook_name: str, failed: Callable[[str, str], Exception],
                 redact: Callable[[str], str] | None = None, /, **kwargs: Any) -> None:
        """Every implementation, in pluggy's call order, for a hook whose every answer
        the host needs (signing a request): the first that raises is reported
        (``redact`` hides what it was handed) and ``failed(plugin, message)`` is
        raised, so nothing goes on without it."""
        for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
            try:
                _invoke(impl, kwargs)
            except Exception as error:
                message = self.report(impl.plugin_name, hook_name, error, redact)
                raise failed(impl.plugin_name, message) from None

    def call_first(self, hook_name: str, refuse: Callable[[Any], str | None], /,
                   **kwargs: Any) -> Any:
        """The first answer that is not ``None`` and that ``refuse`` finds nothing wrong
        with (``firstresult`` whose answers the host checks): one that raises, or
        whose answer ``refuse`` explains away, is reported and the next is asked."""
        for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
            try:
                answer = _invoke(impl, kwargs)
            except Exception as error:
                self.report(impl.plugin_name, hook_name, error)
                continue
            if answer is None:
                continue
            problem = refuse(answer)
            if problem is None:
                return answer
            self.report(impl.plugin_name, hook_name, TypeError(problem))
        return None


def _invoke(impl: pluggy.HookImpl, kwargs: Mapping[str, Any]) -> Any:
    """One implementation, with its arguments by name as pluggy passes them (those
    with defaults only when given)."""
    return impl.function(*[kwargs[name] for name in impl.argnames],
                         **{name: kwargs[name] for name in impl.kwargnames if name in kwargs})


def make_plugins(folders: Iterable[str], disabled: Iterable[str],
                 settings: Mapping[str, Any] | None = None,
                 defaults: Iterable[tuple[str, object]] = ()) -> Plugins:
    """Load every plugin, checking each one's ``settings`` entry (``PLUGIN_SETTINGS``)
    against its ``SETTINGS_SCHEMA``.

    The host's own ``defaults`` are registered first: pluggy calls plugins registered
    later first, and names (auth types) are claimed in registration order, so the
    defaults can be added to but never replaced. They are the host's code, so they
    are not listed as plugins and cannot be disabled."""
    manager = pluggy.PluginManager("minihost")
    manager.add_hookspecs(hookspecs)
    for name, module in defaults:
        manager.register(module, name=name)
    plugins = Plugins(manager, dict(settings or {}))
    skip = set(disabled)
    plugins.load_entry_points(skip)
    for folder in folders:
        plugins.load_folder(Path(folder), skip)
    return plugins


def describe(plugins: Plugins) -> dict[str, Any]:
    """What is loaded and what went wrong, for ``/-/plugins`` and ``minihost plugins list``."""
    return {
        "plugins": [{"name": info.name, "version": info.version, "origin": info.origin,
                     "hooks": plugins.hooks_of(info.name)} for info in plugins.loaded],
        "notLoaded": [{"name": f.name, "origin": f.origin, "error": f.error}
                      for f in plugins.failures],
        "hookFailures": [{"plugin": f.plugin, "hook": f.hook, "error": f.error,
                          "count": f.count,
                          "lastAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f.last_at))}
                         for f in sorted(plugins.hook_failures.values(),
                                         key=lambda f: (f.plugin, f.hook))],
    }


def get_plugins(app: Flask) -> Plugins:
    return app.extensions["minihost.plugins"]


def plugin_settings(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Plugin ``name``'s entry of ``PLUGIN_SETTINGS`` (empty when it has none)."""
    settings = (config.get("PLUGIN_SETTINGS") or {}).get(name)
    return settings if isinstance(settings, Mapping) else {}


def init_app(app: Flask, extra_dirs: Iterable[str] = (),
             defaults: Iterable[tuple[str, object]] = ()) -> None:
    folders = [*app.config["PLUGINS_DIRS"], *extra_dirs]
    app.extensions["minihost.plugins"] = make_plugins(folders, app.config["DISABLED_PLUGINS"],
                                                      app.config["PLUGIN_SETTINGS"],
                                                      defaults)


BUILTIN_WIDGETS = frozenset({"auto", "text", "textarea", "select", "number", "toggle", "multi",
                             "group", "source", "password"})


def register_extensions(app: Flask) -> None:
    """Let plugins add widgets, render strategies, auth types, system values,
    blueprints and commands, after the host's own are in place."""
    plugins = get_plugins(app)
    widgets: dict[str, object] = {}
    strategies: dict[str, RenderStrategy] = {}
    owners: dict[str, str] = {}
    for plugin, contributed in plugins.call_each("form_widgets"):
        if not _shaped(plugins, plugin, "form_widgets", contributed, Mapping, "a mapping"):
            continue
        for name, render in (contributed or {}).items():
            if name in BUILTIN_WIDGETS or name in widgets or name in strategies:
                plugins.report(plugin, "form_widgets", ValueError(
                    f"{name!r} is a built-in or already contributed name; choose another"))
            elif isinstance(render, RenderStrategy):
                strategies[name] = render
                owners[name] = plugin
            elif callable(render):
                widgets[name] = _guarded_widget(plugins, plugin, render)
            else:
                plugins.report(plugin, "form_widgets", TypeError(
                    f"{name!r} is neither a widget function nor a RenderStrategy"))
    app.extensions["minihost.widgets"] = widgets
    app.extensions["minihost.strategies"] = strategies
    app.jinja_env.globals["plugin_widgets"] = widgets

    def strategy_html(name: str, form: Any, values: Any, errors: Any) -> Markup | None:
        """A plugin's whole-form HTML for ``renderStrategy: name``; ``None`` renders
        the standard form (no such strategy, or it failed)."""
        strategy = strategies.get(name)
        if strategy is None:
            return None
        try:
            return Markup(strategy.render(form, values or {}, errors or {}))
        except Exception as error:
            plugins.report(owners[name], "form_widgets", error)
            return None

    app.jinja_env.globals["strategy_html"] = strategy_html
    app.extensions["minihost.auth_types"], app.extensions["minihost.auth_type_owners"] = \
        _auth_types(app, plugins)
    app.extensions["minihost.system_values"] = _system_values(app, plugins)
    for plugin, blueprints in plugins.call_each("register_blueprints", app=app):
        if not _shaped(plugins, plugin, "register_blueprints", blueprints, Iterable,
                       "a list of blueprints"):
            continue
        for blueprint in blueprints or ():
            try:
                app.register_blueprint(blueprint)
            except Exception as error:
                plugins.report(plugin, "register_blueprints", error)
    plugins.call_each("register_commands", cli=app.cli)


def _auth_types(app: Flask, plugins: Plugins) -> tuple[dict[str, AuthType], dict[str, str]]:
    """Every auth type by name — the host's own first — and the plugin that contributed
    each. The first to claim a name keeps it."""
    found: dict[str, AuthType] = {}
    owners: dict[str, str] = {}
    for plugin, contributed in reversed(plugins.call_each("auth_types", config=app.config)):
        if not _shaped(plugins, plugin, "auth_types", contributed, Iterable,
                       "a list of AuthType"):
            continue
        for item in contributed or ():
            if not isinstance(item, AuthType):
                plugins.report(plugin, "auth_types", TypeError(
                    f"{item!r} is not a host.plugins.AuthType"))
            elif item.name in found:
                plugins.report(plugin, "auth_types", ValueError(
                    f"auth type {item.name!r} already exists; choose another name"))
            else:
                found[item.name] = item
                owners[item.name] = plugin
    return found, owners


def _system_values(app: Flask, plugins: Plugins) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {}
    for plugin, contributed in plugins.call_each("system_values", config=app.config):
        if not _shaped(plugins, plugin, "system_values", contributed, Mapping, "a mapping"):
            continue
        for name, function in (contributed or {}).items():
            if name in RESERVED_PARAMETERS or name in found or not callable(function):
                plugins.report(plugin, "system_values", ValueError(
                    f"{name!r} is a host value, already contributed, or not a function"))
            else:
                found[name] = (plugin, function)
    return found


def _shaped(plugins: Plugins, plugin: str, hook_name: str, answer: object,
            kind: type | tuple[type, ...], wanted: str) -> bool:
    """Whether a hook's answer has the shape its spec asks for (``None`` counts as
    nothing to add); a wrong one is reported and left out, never a crash."""
    if answer is None or (isinstance(answer, kind) and not isinstance(answer, (str, bytes))):
        return True
    plugins.report(plugin, hook_name, TypeError(
        f"returned {type(answer).__name__}, not {wanted}; nothing it returned was used"))
    return False


def _guarded_widget(plugins: Plugins, plugin: str,
                    render: Callable[..., Any]) -> Callable[..., Any]:
    """A widget that fails is reported and gives ``None``: the field is a text input."""

    def widget(field: Any, name: str, value: Any) -> Any:
        try:
            return render(field, name, value)
        except Exception as error:
            plugins.report(plugin, "form_widgets", error)
            return None

    return widget


def notify(app: Flask, hook_name: str, **kwargs: object) -> None:
    """Tell every plugin implementing a notification hook; one that fails is
    reported and the others still hear about it."""
    plugins = app.extensions.get("minihost.plugins")
    if plugins is not None:
        plugins.call_each(hook_name, config=app.config, **kwargs)
