"""Shared by the plugin tests: hosts built with plugins, and a clean module cache."""

import sys

import pytest

from host.db import get_database

from ..conftest import build_hosted


@pytest.fixture(autouse=True)
def fresh_plugin_modules():
    """Folder plugins are imported as ``minihost_plugins.<name>``; forget them after
    each test so the next one imports its own."""
    yield
    for name in [m for m in sys.modules if m.startswith("minihost_plugins.")]:
        del sys.modules[name]


@pytest.fixture
def hosted_with(tmp_path, provider):
    """``hosted_with(manifests=None, **config)``: a host on ``provider`` (plugins from
    ``config["PLUGINS_DIRS"]``), disposed of after the test."""
    built = []

    def build(manifests=None, **config):
        hosted = build_hosted(tmp_path, provider, manifests=manifests, **config)
        built.append(hosted)
        return hosted

    yield build
    for hosted in built:
        get_database(hosted.app).engine.dispose()
