"""Shared by the plugin tests: hosts built with plugins."""

import pytest

from host.db import get_database

from ..conftest import build_hosted


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
