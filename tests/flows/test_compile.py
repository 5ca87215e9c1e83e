"""The flow document: schema, lint (every problem at its pointer, with a fix), the
compiled form and the derived input schema (FLOWS.md §2)."""

import copy
import json

import pytest
from jsonschema import Draft202012Validator

from host.errors import FlowInvalid
from host.flows import FLOW_SCHEMA, compile_flow, lint_flow
from host.manifest import compile_manifest

from ..conftest import REPO
from .manifests import mailer, tracker

CONNECTIONS = {"linear": compile_manifest(tracker(), allow_private=True),
               "mail": compile_manifest(mailer(), allow_private=True)}

INTAKE = {
    "key": "bug-intake", "title": "Bug intake",
    "tasks": {
        "issue": {"connection": "linear", "action": "createIssue",
                  "inputs": {"title": "{{input.title}}", "description": None,
                             "priority": 2},
                  "retry": {"attempts": 3, "initialSeconds": 2, "maxSeconds": 60}},
        "note": {"needs": {"issue": "completed"}, "connection": "linear",
                 "action": "comment",
                 "inputs": {"issue": "{{tasks.issue.output.id}}",
                            "text": "Filed as {{tasks.issue.output.url}}"}},
        "alert": {"needs": {"issue": "failed"}, "connection": "mail", "action": "send",
                  "inputs": {"to": "oncall@acme.test", "subject": "Intake failed",
                             "text": "{{tasks.issue.error}}"}},
    },
    "output": {"issue": "{{tasks.issue.output.url}}"},
}


def problems(doc, **kwargs):
    return [(p.pointer, p.message) for p in lint_flow(doc, CONNECTIONS, **kwargs)]


def test_a_valid_document_compiles_into_frozen_tasks_in_order():
    flow = compile_flow(INTAKE, CONNECTIONS)
    assert flow.order == ("issue", "note", "alert")
    assert flow.downstream == {"issue": ("note", "alert"), "note": (), "alert": ()}
    issue = flow.tasks["issue"]
    assert (issue.kind, issue.call.connection, issue.call.blanks) == (
        "action", "linear", ("description",))
    assert issue.call.retry.delay(1) == 2 and issue.call.retry.delay(3) == 8
    assert issue.call.repeatable is True  # createIssue sends an idempotency key
    assert flow.tasks["alert"].call.repeatable is False
    assert flow.connections == ("linear", "mail")
    assert flow.budget_seconds == 3000 and flow.triggers == ({"type": "api"},)
    with pytest.raises(TypeError):
        flow.tasks["x"] = issue  # type: ignore[index]


def test_the_input_schema_is_derived_from_inputs_and_blanks():
    flow = compile_flow(INTAKE, CONNECTIONS)
    assert flow.input_schema == {
        "type": "object", "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "minLength": 1},
            "tasks": {"type": "object", "additionalProperties": False, "properties": {
                "issue": {"type": "object", "additionalProperties": False,
                          "properties": {"description": {"type": "string"}}}}},
        },
        "required": ["title"],
    }


def test_a_required_blank_makes_its_task_and_tasks_required():
    doc = copy.deepcopy(INTAKE)
    doc["tasks"]["issue"]["inputs"]["title"] = None
    schema = compile_flow(doc, CONNECTIONS).input_schema
    assert schema["required"] == ["tasks"]
    assert schema["properties"]["tasks"]["required"] == ["issue"]
    assert schema["properties"]["tasks"]["properties"]["issue"]["required"] == ["title"]


def test_an_explicit_input_schema_is_used_as_written():
    doc = {**INTAKE, "input": {"type": "object", "properties": {"title": {"type": "string"}}}}
    assert compile_flow(doc, CONNECTIONS).input_schema == doc["input"]


def test_ten_errors_are_all_reported_at_their_pointers():
    doc = {
        "key": "Bad Key", "title": "Broken", "budgetSeconds": 9000,
        "tasks": {
            "a": {"connection": "nowhere", "action": "createIssue"},
            "b": {"connection": "linear", "action": "deleteEverything"},
            "c": {"connection": "linear", "action": "createIssue",
                  "inputs": {"title": "x", "colour": "red", "priority": 9}},
            "d": {"connection": "linear", "action": "comment",
                  "inputs": {"issue": "{{tasks.c.output.id}}", "text": "[[apiKey]]"}},
            "e": {"needs": {"f": "completed"}, "map": {"x": "{{tasks.f.output.x}}"}},
            "f": {"needs": {"e": "completed"}, "map": {"x": "1"}},
            "g": {"needs": {"c": "completed"}, "map": {"y": "{{tasks.c.output.nope}}"}},
        },
    }
    found = problems(doc)
    assert found == [
        ("/key", "'Bad Key' does not match '^[a-z0-9][a-z0-9_-]{0,63}$'"),
        ("/tasks/d/inputs/text",
         "[[…]] is refused in flows: credentials never pass through a flow"),
        ("/tasks/e/needs", "the needs form a cycle: e → f → e"),
        ("/tasks/a/connection", "no installation is called 'nowhere' in this workspace"),
        ("/tasks/b/action", "Tracker has no action 'deleteEverything'"),
        ("/tasks/c/inputs/colour", "Create issue has no parameter 'colour'"),
        ("/tasks/c/inputs/priority", "9 is greater than the maximum of 4"),
        ("/tasks/d/inputs/issue",
         "{{tasks.c.output.id}}: 'c' is not upstream of 'd', so its result may not exist yet"),
        ("/tasks/g/map/y", "{{tasks.c.output.nope}}: the output of Create issue has no 'nope' "
                           "in the output (it has: id, url)"),
        ("/budgetSeconds", "9000 s is over this host's limit of 3000 s (FLOW_TIMEOUT)"),
    ]
    with pytest.raises(FlowInvalid) as raised:
        compile_flow(doc, CONNECTIONS)
    errors = raised.value.problem_extras()["errors"]
    assert len(errors) == 10 and raised.value.status == 422
    assert errors[3] == {"field": "/tasks/a/connection",
                         "message": "no installation is called 'nowhere' in this workspace",
                         "fix": "install the mini-app and name it 'nowhere', or use one of: "
                                "linear, mail"}


@pytest.mark.parametrize(("change", "expected"), [
    ({"tasks": {"x": {"connection": "linear", "action": "createIssue", "map": {},
                      "inputs": {"title": "t"}}}},
     [("/tasks/x", "a task is exactly one of: an action (connection and action), a data "
                   "source (connection and dataSource), map, forEach or wait")]),
    ({"tasks": {"x": {"connection": "linear", "action": "createIssue", "inputs": {}}}},
     [("/tasks/x/inputs", "Create issue needs 'title'")]),
    ({"tasks": {"x": {"map": {"a": "{{input.tasks.x}}"}}}},
     [("/tasks/x/map/a", "input.tasks is reserved for the inputs left blank")]),
    ({"tasks": {"x": {"map": {"a": "{{item.id}}"}}}},
     [("/tasks/x/map/a", "{{item.id}}: item exists only inside a forEach's task")]),
    ({"tasks": {"x": {"map": {"a": "{{secret}}"}}}},
     [("/tasks/x/map/a", "{{secret}} names nothing a flow has")]),
    ({"tasks": {"x": {"map": {"a": "{{tasks.x.output.a}}"}}}},
     [("/tasks/x/map/a",
       "{{tasks.x.output.a}}: 'x' is not upstream of 'x', so its result may not exist yet")]),
    ({"tasks": {"x": {"needs": {"x": "completed"}, "map": {}}}},
     [("/tasks/x/needs/x", "a task cannot need itself")]),
    ({"tasks": {"x": {"wait": {"until": "next tuesday"}}}},
     [("/tasks/x/wait/until", "'next tuesday' is not an ISO 8601 time")]),
    ({"tasks": {"x": {"map": {}, "if": [{"value": "1", "op": "matches", "to": "("}]}}},
     [("/tasks/x/if/0/to",
       "is not a regular expression: missing ), unterminated subpattern at position 0")]),
    ({"tasks": {"x": {"map": {}, "if": [{"value": "1", "op": "exists", "to": 1}]}}},
     [("/tasks/x/if/0/to", "exists compares with nothing")]),
    ({"tasks": {"x": {"map": {}}}, "triggers": [{"type": "schedule", "cron": "* * * * *",
                                                  "connection": "linear"}]},
     [("/triggers/0/connection", "a schedule trigger has no 'connection'")]),
    ({"tasks": {"x": {"forEach": {"items": "{{input.list}}", "task": {
        "connection": "linear", "action": "comment",
        "inputs": {"issue": "{{item.id}}", "text": "{{index}}"}}}},
      "y": {"needs": {"x": "completed"}, "map": {"first": "{{tasks.x.output.id}}"}}}},
     [("/tasks/y/map/first", "{{tasks.x.output.id}}: the output of 'x' is a list (one entry "
                             "per item): write tasks.x.output.0…")]),
])
def test_lint_rules(change, expected):
    doc = {"key": "k", "title": "T", **change}
    assert problems(doc) == expected


def test_a_document_that_is_not_an_object():
    assert problems([1]) == [("", "a flow document is a JSON object")]


def test_forEach_inner_task_sees_item_and_index_and_lists_have_indexes():
    doc = {"key": "k", "title": "T", "tasks": {
        "list": {"connection": "linear", "action": "listIssues", "inputs": {"status": "open"}},
        "each": {"needs": {"list": "completed"}, "forEach": {
            "items": "{{tasks.list.output.items}}", "as": "issue", "parallelism": 2,
            "task": {"connection": "linear", "action": "comment",
                     "inputs": {"issue": "{{issue.id}}", "text": "#{{index}}"}}}},
        "first": {"needs": {"each": "completed"}, "map": {"id": "{{tasks.each.output.0.id}}"}}}}
    flow = compile_flow(doc, CONNECTIONS)
    each = flow.tasks["each"].for_each
    assert (each.name, each.parallelism, each.max_items, each.call.action) == (
        "issue", 2, 1000, "comment")


def test_the_published_schema_is_draft_2020_12_and_accepts_the_spec_example():
    assert FLOW_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(FLOW_SCHEMA)
    spec = (REPO.parent / "shared" / "spec" / "FLOWS.md")
    if not spec.exists():
        pytest.skip("the spec is not beside this checkout")
    text = spec.read_text()
    example = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    assert list(Draft202012Validator(FLOW_SCHEMA).iter_errors(example)) == []
    broken = {**example, "tasks": {"x": {"wait": {"seconds": 1, "until": "2027-01-01"}}}}
    assert [e.validator for e in Draft202012Validator(FLOW_SCHEMA).iter_errors(broken)] == [
        "oneOf"]
