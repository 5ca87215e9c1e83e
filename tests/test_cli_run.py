"""``minihost run-action`` from the shell."""

import json

from click.testing import CliRunner
from flask.cli import ScriptInfo

from host.cli import cli
from host.db import get_database
from host.principal import Principal
from host.services import installations
from host.services.accounts import personal_workspace


def board(hosted):
    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        return installations.install(hosted.app, db, who, "board").installation.id


def invoke(hosted, *args):
    runner = CliRunner()
    obj = ScriptInfo(create_app=lambda: hosted.app)
    return runner.invoke(cli, list(args), obj=obj, catch_exceptions=False)


def test_run_action_prints_the_output(hosted):
    installation = board(hosted)
    result = invoke(hosted, "run-action", installation, "addCard", "-p", 'board={"id": "b1"}',
                    "-p", 'list="l1"', "-p", "title=From the shell", "-p", "tags=a",
                    "-p", "tags=b")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("succeeded: addCard (run_")
    assert lines[1:] == ["  cardId: card-7", "  url: https://board.example/card-7"]
    sent = json.loads(hosted.provider.received[-1].body)
    assert sent["title"] == "From the shell" and sent["tags"] == ["a", "b"]


def test_run_action_json_and_sandbox(hosted):
    installation = board(hosted)
    before = len(hosted.provider.received)
    result = invoke(hosted, "run-action", installation, "addCard", "-p", 'board={"id": "b1"}',
                    "-p", 'list="l1"', "-p", "title=x", "--sandbox", "--json")
    document = json.loads(result.stdout)
    assert (document["status"], document["sandbox"]) == ("succeeded", True)
    assert document["trace"]["requests"][0]["wouldHaveSent"] is True
    assert len(hosted.provider.received) == before


def test_invalid_values_exit_1_and_send_nothing(hosted):
    installation = board(hosted)
    before = len(hosted.provider.received)
    result = invoke(hosted, "run-action", installation, "addCard", "-p", "estimate=lots")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: estimate: must be a number; ")
    assert len(hosted.provider.received) == before
    usage = invoke(hosted, "run-action", installation, "addCard", "-p", "novalue")
    assert usage.exit_code == 2


def test_a_failed_run_exits_1_with_the_reason(hosted):
    installation = board(hosted)
    result = invoke(hosted, "run-action", installation, "addCard", "-p", 'board={"id": "b9"}',
                    "-p", 'list="l1"', "-p", "title=x")
    assert result.exit_code == 1
    assert result.stdout.startswith("failed: addCard")
    assert "failed with HTTP 404" in result.stderr
