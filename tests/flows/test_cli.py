"""``minihost flows …`` and ``minihost flow-schema`` from the shell."""

from __future__ import annotations

import json

from click.testing import CliRunner
from flask.cli import ScriptInfo

from host.cli import cli

DOC = {"key": "intake", "title": "Intake", "tasks": {
    "issue": {"connection": "linear", "action": "createIssue",
              "inputs": {"title": "{{input.title}}", "description": None}}},
       "output": {"url": "{{tasks.issue.output.url}}"}}


def invoke(host, *args):
    runner = CliRunner()
    obj = ScriptInfo(create_app=lambda: host.app)
    return runner.invoke(cli, list(args), obj=obj, catch_exceptions=False)


def test_flow_schema_prints_the_published_schema(flowhost):
    result = invoke(flowhost, "flow-schema")
    assert json.loads(result.stdout)["title"] == "Minihost flow document"


def test_import_list_run_and_token(flowhost, tmp_path):
    good = tmp_path / "intake.json"
    good.write_text(json.dumps(DOC))
    yaml_doc = tmp_path / "hello.yaml"
    yaml_doc.write_text("key: hello\ntitle: Hello\ntasks:\n  m:\n    map:\n      a: '1'\n")
    # Several people use this host: the command asks whose workspace.
    ambiguous = invoke(flowhost, "flows", "import", str(good))
    assert ambiguous.exit_code == 2 and "--as EMAIL" in ambiguous.stderr
    result = invoke(flowhost, "flows", "import", str(good), str(yaml_doc),
                    "--as", "alice@example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["intake: created", "hello: created"]
    again = invoke(flowhost, "flows", "import", str(good), "--as", "alice@example.com")
    assert again.stdout.splitlines() == ["intake: unchanged"]
    listing = invoke(flowhost, "flows", "list", "--as", "alice@example.com")
    assert [line.split()[:3] for line in listing.stdout.splitlines()] == [
        ["hello", "v1", "enabled"], ["intake", "v1", "enabled"]]
    run = invoke(flowhost, "flows", "run", "intake", "-i", "title=From the shell",
                 "-i", "tasks.issue.description=typed", "--wait", "--as", "alice@example.com")
    assert run.exit_code == 0, run.output
    body = json.loads(run.stdout)
    assert (body["status"], body["output"], body["trigger"]) == (
        "succeeded", {"url": "https://tracker.test/ISS-1"}, {"type": "cli"})
    sent = json.loads(flowhost.tracker.received("POST", "/issues")[0].body)
    assert sent == {"title": "From the shell", "description": "typed"}
    token = invoke(flowhost, "flows", "token", "intake", "--as", "alice@example.com")
    secret = token.stdout.strip()
    answer = flowhost.api("POST", "/api/v1/flows/intake/runs", secret,
                          json={"title": "With the token"}, headers={"Prefer": "wait=10"})
    assert answer.status_code == 200 and answer.get_json()["status"] == "succeeded"


def test_import_reports_every_problem_and_saves_nothing(flowhost, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**DOC, "tasks": {
        "issue": {"connection": "jira", "action": "createIssue", "inputs": {}},
        "note": {"needs": {"nope": "completed"}, "map": {}}}}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(DOC))
    result = invoke(flowhost, "flows", "import", str(good), str(bad), "--as",
                    "alice@example.com")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{bad} /tasks/note/needs/nope: there is no task 'nope' (name one of: issue)",
        f"{bad} /tasks/issue/connection: no installation is called 'jira' in this workspace "
        "(install the mini-app and name it 'jira', or use one of: linear, mail)",
    ]
    listing = invoke(flowhost, "flows", "list", "--as", "alice@example.com")
    assert listing.stdout.strip() == "No flows yet: `minihost flows import FILE`."


def test_run_with_bad_input_says_which_field(flowhost, tmp_path):
    good = tmp_path / "intake.json"
    good.write_text(json.dumps(DOC))
    invoke(flowhost, "flows", "import", str(good), "--as", "alice@example.com")
    runner = CliRunner()
    result = runner.invoke(cli, ["flows", "run", "intake", "--as", "alice@example.com"],
                           obj=ScriptInfo(create_app=lambda: flowhost.app))
    assert result.exit_code == 1
    assert "title: is required" in result.stderr
