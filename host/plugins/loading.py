"""How a plugin becomes a registered module: folder plugins imported under a name
of their folder's own, and hook wrappers refused before anything is registered."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pluggy

__all__ = ["import_file", "refuse_wrappers"]


def refuse_wrappers(manager: pluggy.PluginManager, module: object) -> None:
    """Raise, naming each hook wrapper of ``module`` and what to write instead.

    The host calls each implementation on its own (one plugin's failure is
    reported and the others still run), while a wrapper receives the other
    plugins' answers without their names and may swallow their exceptions: the
    host could no longer say who contributed or failed, nor promise that a
    request a signing plugin could not sign is never sent."""
    wrappers: list[str] = []
    for attribute in dir(module):
        opts = manager.parse_hookimpl_opts(module, attribute)
        if opts and (opts.get("wrapper") or opts.get("hookwrapper")):
            wrappers.append(opts.get("specname") or attribute)
    if wrappers:
        listed = ", ".join(sorted(wrappers))
        raise TypeError(f"hook wrappers are not supported ({listed}): Minihost calls each "
                        "plugin on its own, so that no plugin sees or hides another's "
                        "answer or failure; write a plain @hookimpl, with tryfirst=True or "
                        "trylast=True to run before or after the others")


def _module_name(folder: Path, name: str) -> str:
    """The module name plugin ``name`` of ``folder`` is imported under.

    ``sys.modules`` is process-wide while plugin folders are per application: a
    bare ``minihost_plugins.<name>`` would hand a second folder's ``p.py`` the
    first one's module. A short hash of the folder's resolved path keeps each
    folder's modules apart, and keeps one module per folder however many
    applications load it."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    return f"minihost_plugins.{name}_{digest}"


def import_file(folder: Path, name: str, init: Path, package: bool) -> ModuleType:
    """Plugin ``name`` of ``folder``, whose code is ``init``: imported once per
    folder, or taken from ``sys.modules``. A package that fails half-way leaves
    none of its modules behind, so the next attempt starts clean."""
    if "minihost_plugins" not in sys.modules:
        sys.modules["minihost_plugins"] = ModuleType("minihost_plugins")
    qualified = _module_name(folder, name)
    if qualified in sys.modules:
        return sys.modules[qualified]
    # A package's own directory is its search path, so ``from .helper import x``
    # inside it imports ``<qualified>.helper`` from that directory.
    locations = [str(init.parent)] if package else None
    spec = importlib.util.spec_from_file_location(
        qualified, init, submodule_search_locations=locations
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for loaded in [m for m in sys.modules if m == qualified or m.startswith(qualified + ".")]:
            del sys.modules[loaded]
        raise
    return module
