"""Sources against a real provider: options, dependsOn, object values, cache, failures."""

import time

import pytest

from host.db import Installation, Run, get_database
from host.errors import SourceFailed, ValidationError
from host.principal import Principal
from host.services import installations
from host.services.accounts import personal_workspace
from host.services.actions import form_state
from host.services.sources import load_options


@pytest.fixture
def board(hosted):
    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        installation = installations.install(hosted.app, db, who, "board").installation
    return hosted, who, installation.id


def load(board, source, inputs):
    hosted, who, installation_id = board
    with get_database(hosted.app).sessions() as db:
        return load_options(hosted.app, db, who, db.get(Installation, installation_id), source,
                            inputs)


def test_object_option_values(board):
    assert load(board, "rpc_boards", {}) == [
        {"value": {"id": "b1", "name": "Roadmap", "owner": {"login": "ada"}},
         "label": "Roadmap"},
        {"value": {"id": "b2", "name": "Bugs", "owner": {"login": "bob"}}, "label": "Bugs"}]


def test_depends_on_values_reach_the_url(board):
    hosted = board[0]
    options = load(board, "rpc_lists", {"board": '{"id": "b2", "name": "Bugs"}'})
    assert options == [{"value": "l3", "label": "Triage"}, {"value": "l1", "label": "Now"}]
    assert hosted.provider.received[-1].path == "/boards/b2/lists"


def test_a_missing_dependency_is_a_field_error(board):
    with pytest.raises(ValidationError) as info:
        load(board, "rpc_lists", {})
    assert [(e.field, e.message) for e in info.value.errors] == [
        ("board", "choose this first; the options depend on it")]


def test_options_are_cached_per_inputs_until_they_expire(board, monkeypatch):
    hosted = board[0]
    load(board, "rpc_boards", {})
    load(board, "rpc_boards", {})
    assert [r.path for r in hosted.provider.received].count("/boards") == 1
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 61)
    load(board, "rpc_boards", {})
    assert [r.path for r in hosted.provider.received].count("/boards") == 2
    # rpc_lists has no cacheSeconds: every load asks the provider
    load(board, "rpc_lists", {"board": '{"id": "b1"}'})
    load(board, "rpc_lists", {"board": '{"id": "b1"}'})
    assert [r.path for r in hosted.provider.received].count("/boards/b1/lists") == 2


def test_a_failing_source_keeps_the_provider_message(board):
    with pytest.raises(SourceFailed) as info:
        load(board, "rpc_columns", {})
    assert str(info.value) == ("Board did not return the options for rpc_columns: columns are "
                               "down for maintenance")
    assert info.value.status == 502


def test_source_loads_are_recorded_as_runs(board):
    hosted = board[0]
    load(board, "rpc_boards", {})
    with get_database(hosted.app).sessions() as db:
        [run] = db.query(Run).all()
    assert (run.kind, run.name, run.status) == ("source", "rpc_boards", "succeeded")


def test_form_state_loads_what_it_can_and_marks_fallbacks(board):
    hosted, who, installation_id = board
    with get_database(hosted.app).sessions() as db:
        installation = db.get(Installation, installation_id)
        state = form_state(hosted.app, db, who, installation, "addCard", {}).by_name()
        assert len(state["board"].options) == 2
        assert state["list"].options is None and state["list"].waiting_for == ["board"]
        assert state["column"].fallback is True
        assert state["column"].error.endswith("columns are down for maintenance")
        chosen = form_state(hosted.app, db, who, installation, "addCard",
                            {"board": {"id": "b1"}}).by_name()
        assert [o["value"] for o in chosen["list"].options] == ["l1", "l2"]
