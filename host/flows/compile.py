"""A flow document checked and compiled: the schema, then the lint, then frozen objects.

The lint knows the workspace only through ``connections`` — installation names and
the compiled manifest each one runs — so it stays pure (no Flask, no database) and
reports every problem at once, each at its JSON pointer with what to do about it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..engine.template import Placeholder, compile_value, malformed_placeholders, walk_templates
from ..errors import FlowInvalid, FlowProblem
from ..manifest import Action, Manifest
from ..manifest.lint import iter_strings
from .model import ActionCall, Condition, EventTrigger, Flow, ForEach, Retry, Task
from .schedule import CronError, Schedule, parse_schedule
from .schema import FLOW_SCHEMA

__all__ = ["compile_flow", "lint_flow"]

_EVENT_FIELDS = ("id", "type", "data", "body", "deliveryId", "receivedAt", "installation")

ACTION_TIMEOUT = 60.0
_VALIDATOR = Draft202012Validator(FLOW_SCHEMA)
_SECRET = re.compile(r"\[\[")
_TASK_FIELDS = ("output", "status", "error")
_RUN_FIELDS = ("id", "startedAt")
_FLOW_FIELDS = ("key", "title")
_KINDS = ("connection", "map", "forEach", "wait")
ONE_KIND = ("a task is exactly one of: an action (connection and action), a data source "
            "(connection and dataSource), map, forEach or wait")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _names(values: Any, limit: int = 12) -> str:
    names = sorted(values)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _is_fixed(value: Any) -> bool:
    """Whether a value holds no placeholder at all."""
    return not any(True for _, text in iter_strings(value, "") if "{{" in text)


class _Lint:
    def __init__(self, doc: Any, connections: Mapping[str, Manifest | None],
                 max_budget: int) -> None:
        self.doc = doc
        self.connections = connections
        self.max_budget = max_budget
        self.problems: list[FlowProblem] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.upstream: dict[str, set[str]] = {}
        self.actions: dict[str, Action] = {}  # task key (or "key/forEach") → its action
        self.inner_actions: dict[str, Action] = {}

    def add(self, pointer: str, message: str, fix: str = "") -> None:
        problem = FlowProblem(pointer, message, fix)
        if problem not in self.problems:
            self.problems.append(problem)

    # -- the passes ------------------------------------------------------------------

    def run(self) -> list[FlowProblem]:
        if not isinstance(self.doc, dict):
            self.add("", "a flow document is a JSON object",
                     "start from the example in docs/flows.md")
            return self.problems
        self._schema()
        tasks = self.doc.get("tasks")
        if isinstance(tasks, dict):
            self.tasks = {k: v for k, v in tasks.items() if isinstance(v, dict)}
        self._secrets()
        self._graph()
        for key, task in self.tasks.items():
            self._task(key, task)
        budget = self.doc.get("budgetSeconds")
        if isinstance(budget, int) and not isinstance(budget, bool) \
                and budget > self.max_budget:
            self.add("/budgetSeconds", f"{budget} s is over this host's limit of "
                     f"{self.max_budget} s (FLOW_TIMEOUT)",
                     f"use at most {self.max_budget}, or leave it out for the limit")
        for index, trigger in enumerate(self.doc.get("triggers") or []):
            if not isinstance(trigger, dict):
                continue
            if trigger.get("type") == "event":
                self._event(index, trigger)
            elif trigger.get("type") == "schedule":
                self._schedule(index, trigger)
        if "output" in self.doc:
            self._templates("/output", self.doc["output"], None, inner=False)
        explicit = self.doc.get("input")
        if isinstance(explicit, dict):
            try:
                Draft202012Validator.check_schema(explicit)
            except SchemaError as error:
                self.add("/input", f"is not a valid JSON Schema: {error.message}")
            if explicit.get("type") != "object":
                self.add("/input/type", "the run's input is an object",
                         'set "type": "object"')
        return self.problems

    def _event(self, index: int, trigger: dict[str, Any]) -> None:
        pointer = f"/triggers/{index}"
        if not trigger.get("event"):
            self.add(pointer, "an event trigger names its event",
                     'add "event": a type the connection sends (e.g. "issues"), or one your '
                     'application sends to POST /api/v1/events (e.g. "order.paid")')
        for key in ("cron", "timezone", "overlap", "catchupSeconds"):
            if key in trigger:
                self.add(f"{pointer}/{key}", f"an event trigger has no {key!r}",
                         "remove it (a schedule trigger has it)")
        connection = trigger.get("connection")
        if isinstance(connection, str):
            if connection not in self.connections:
                self.add(f"{pointer}/connection", f"no installation is called {connection!r} "
                         "in this workspace", "install the mini-app, or use the name of an "
                                              "installation you have")
            else:
                manifest = self.connections[connection]
                event = str(trigger.get("event") or "")
                source, _, change = event.partition(".")
                if manifest is not None and source in manifest.data_sources:
                    if change not in ("created", "updated", "deleted", "*"):
                        self.add(f"{pointer}/event", f"{source} is a data source: its events "
                                 f"are {source}.created, {source}.updated and {source}.deleted",
                                 f'use "{source}.created", say')
                elif manifest is not None and manifest.webhooks is None:
                    sources = ", ".join(f"{name}.created" for name in manifest.data_sources)
                    self.add(f"{pointer}/connection",
                             f"{manifest.title} ({connection}) sends no events"
                             + (f" other than its data sources' ({sources}, …)" if sources
                                else ""),
                             "pick an installation of a mini-app that declares webhooks or "
                             "data sources")
        for position, condition in enumerate(trigger.get("filter") or ()):
            if isinstance(condition, dict):
                for part in ("value", "to"):
                    if part in condition:
                        self._event_templates(f"{pointer}/filter/{position}/{part}",
                                              condition[part])
        if "input" in trigger:
            self._event_templates(f"{pointer}/input", trigger["input"])

    def _event_templates(self, pointer: str, value: Any) -> None:
        """A trigger's filter and input see the event only."""
        for where, text in iter_strings(value, pointer):
            for template in walk_templates(compile_value(text)):
                for placeholder in template.placeholders:
                    if placeholder.namespace != "value":
                        continue
                    if placeholder.root != "event" or len(placeholder.path) < 2:
                        self.add(where, f"{placeholder}: a trigger sees the event only",
                                 "use {{event.data…}}, {{event.type}}, {{event.id}} or "
                                 "{{event.receivedAt}}")
                    elif placeholder.path[1] not in _EVENT_FIELDS:
                        self.add(where, f"{placeholder}: an event has "
                                 f"{', '.join(_EVENT_FIELDS)}", "use {{event.data…}}")

    def _schedule(self, index: int, trigger: dict[str, Any]) -> None:
        pointer = f"/triggers/{index}"
        if "cron" not in trigger:
            self.add(pointer, "a schedule trigger needs a cron expression",
                     'add "cron", e.g. "0 9 * * 1-5" (9:00 on weekdays)')
            return
        for key in ("connection", "event", "filter"):
            if key in trigger:
                self.add(f"{pointer}/{key}", f"a schedule trigger has no {key!r}",
                         "remove it (an event trigger has it)")
        try:
            parse_schedule(index, trigger)
        except CronError as error:
            field = "timezone" if "time zone" in str(error) else "cron"
            self.add(f"{pointer}/{field}", str(error),
                     "see docs/flows.md (Schedules) for the syntax" if field == "cron"
                     else "use a zone name from the IANA database")

    def _schema(self) -> None:
        for error in sorted(_VALIDATOR.iter_errors(self.doc),
                            key=lambda e: [str(p) for p in e.absolute_path]):
            path = [str(p) for p in error.absolute_path]
            pointer = "".join(f"/{_escape(p)}" for p in path)
            if error.validator == "oneOf" and len(path) == 2 and path[0] == "tasks":
                self.add(pointer, ONE_KIND)
            elif error.validator == "oneOf" and path[-1:] == ["task"]:
                self.add(pointer, "the task of a forEach is an action (connection and "
                                  "action) or a map")
            elif error.validator == "oneOf" and path[-1:] == ["wait"]:
                self.add(pointer, 'a wait has "seconds" or "until", not both')
            elif error.validator == "additionalProperties" and path[:1] == ["tasks"] \
                    and len(path) == 2:
                self.add(pointer, error.message,
                         "a task has title, needs, join, if, and the members of its kind")
            else:
                self.add(pointer, error.message)

    def _secrets(self) -> None:
        for pointer, text in iter_strings(self.doc, ""):
            if _SECRET.search(text):
                self.add(pointer, "[[…]] is refused in flows: credentials never pass through "
                                  "a flow", "remove it; the action's own requests read the "
                                            "installation's credentials")
            for bad in malformed_placeholders(text):
                if not bad.startswith("[["):
                    self.add(pointer, f"{bad} is not a valid placeholder",
                             "write {{input.name}}, {{tasks.<task>.output.<field>}}, …")

    def _graph(self) -> None:
        """Needs name existing tasks, and form no cycle; ``upstream`` is each task's
        transitive needs."""
        needs: dict[str, list[str]] = {}
        for key, task in self.tasks.items():
            wanted = task.get("needs")
            needs[key] = []
            if not isinstance(wanted, dict):
                continue
            for other in wanted:
                if other == key:
                    self.add(f"/tasks/{_escape(key)}/needs/{_escape(other)}",
                             "a task cannot need itself")
                elif other not in self.tasks:
                    self.add(f"/tasks/{_escape(key)}/needs/{_escape(other)}",
                             f"there is no task {other!r}",
                             f"name one of: {_names(set(self.tasks) - {key})}")
                else:
                    needs[key].append(other)
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(key: str) -> None:
            state[key] = 1
            stack.append(key)
            for other in needs[key]:
                if state.get(other) == 1:
                    cycle = stack[stack.index(other):] + [other]
                    self.add(f"/tasks/{_escape(cycle[0])}/needs",
                             "the needs form a cycle: " + " → ".join(cycle),
                             "remove one of these links; a flow runs each task once "
                             "(forEach repeats a task over a list)")
                elif other not in state:
                    visit(other)
            stack.pop()
            state[key] = 2

        for key in self.tasks:
            if key not in state:
                visit(key)
        for key in self.tasks:
            seen: set[str] = set()
            todo = list(needs[key])
            while todo:
                other = todo.pop()
                if other not in seen and other != key:
                    seen.add(other)
                    todo.extend(needs.get(other, ()))
            self.upstream[key] = seen

    # -- one task --------------------------------------------------------------------

    def _task(self, key: str, task: dict[str, Any]) -> None:
        pointer = f"/tasks/{_escape(key)}"
        if "dataSource" in task:
            self._data_source(pointer, task)
        elif "connection" in task or "action" in task:
            action = self._action(pointer, task)
            if action is not None:
                self.actions[key] = action
        if "map" in task:
            self._templates(f"{pointer}/map", task["map"], key, inner=False)
        each = task.get("forEach")
        if isinstance(each, dict):
            self._templates(f"{pointer}/forEach/items", each.get("items"), key, inner=False)
            inner = each.get("task")
            if isinstance(inner, dict):
                if "connection" in inner or "action" in inner:
                    action = self._action(f"{pointer}/forEach/task", inner, owner=key,
                                          loop_name=each.get("as", "item"))
                    if action is not None:
                        self.inner_actions[key] = action
                if "map" in inner:
                    self._templates(f"{pointer}/forEach/task/map", inner["map"], key,
                                    inner=True, loop_name=each.get("as", "item"))
        wait = task.get("wait")
        if isinstance(wait, dict) and "until" in wait:
            until = wait["until"]
            if isinstance(until, str) and _is_fixed(until):
                try:
                    datetime.fromisoformat(until)
                except ValueError:
                    self.add(f"{pointer}/wait/until", f"{until!r} is not an ISO 8601 time",
                             "write e.g. 2027-01-31T09:00:00+01:00, or a template")
            else:
                self._templates(f"{pointer}/wait/until", until, key, inner=False)
        conditions = task.get("if")
        if isinstance(conditions, list):
            for index, condition in enumerate(conditions):
                self._condition(f"{pointer}/if/{index}", condition, key)

    def _data_source(self, pointer: str, task: dict[str, Any]) -> None:
        connection, name = task.get("connection"), task.get("dataSource")
        if not isinstance(connection, str) or not isinstance(name, str):
            return
        if connection not in self.connections:
            self.add(f"{pointer}/connection",
                     f"no installation is called {connection!r} in this workspace",
                     f"install the mini-app and name it {connection!r}")
            return
        manifest = self.connections[connection]
        if manifest is not None and name not in manifest.data_sources:
            self.add(f"{pointer}/dataSource", f"{manifest.title} has no data source {name!r}",
                     f"use one of: {_names(manifest.data_sources)}"
                     if manifest.data_sources else "this mini-app declares no data sources")

    def _condition(self, pointer: str, condition: Any, key: str | None) -> None:
        if not isinstance(condition, dict):
            return
        op = condition.get("op")
        if op in ("exists", "notExists"):
            if "to" in condition:
                self.add(f"{pointer}/to", f"{op} compares with nothing", "remove \"to\"")
        elif "to" not in condition and isinstance(op, str):
            self.add(pointer, f"{op} needs \"to\": what to compare with")
        if op == "matches" and isinstance(condition.get("to"), str) \
                and _is_fixed(condition["to"]):
            try:
                re.compile(condition["to"])
            except re.error as error:
                self.add(f"{pointer}/to", f"is not a regular expression: {error}")
        if op in ("in", "notIn") and "to" in condition and _is_fixed(condition["to"]) \
                and not isinstance(condition["to"], list):
            self.add(f"{pointer}/to", f"{op} compares with a list", "write a JSON array")
        for member in ("value", "to"):
            if member in condition:
                self._templates(f"{pointer}/{member}", condition[member], key, inner=False)

    def _action(self, pointer: str, task: dict[str, Any], owner: str | None = None,
                loop_name: str | None = None) -> Action | None:
        key = owner or pointer.rsplit("/", 1)[-1]
        connection, name = task.get("connection"), task.get("action")
        raw_inputs = task.get("inputs")
        inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
        for param, value in inputs.items():
            self._templates(f"{pointer}/inputs/{_escape(param)}", value, key,
                            inner=owner is not None, loop_name=loop_name)
        if not isinstance(connection, str) or not isinstance(name, str):
            return None
        if connection not in self.connections:
            known = [n for n, m in self.connections.items() if m is not None]
            self.add(f"{pointer}/connection",
                     f"no installation is called {connection!r} in this workspace",
                     f"install the mini-app and name it {connection!r}, or use one of: "
                     f"{_names(known)}" if known else
                     f"install the mini-app and name it {connection!r}")
            return None
        manifest = self.connections[connection]
        if manifest is None:
            self.add(f"{pointer}/connection",
                     f"the installation {connection!r} runs a mini-app version the catalog "
                     "no longer has", "update or reinstall it")
            return None
        action = manifest.action(name)
        if action is None:
            self.add(f"{pointer}/action", f"{manifest.title} has no action {name!r}",
                     f"use one of: {_names(manifest.actions_by_name)}")
            return None
        properties = action.parameters.get("properties") or {}
        required = action.parameters.get("required") or []
        for param, value in inputs.items():
            where = f"{pointer}/inputs/{_escape(param)}"
            if param not in properties:
                self.add(where, f"{action.title} has no parameter {param!r}",
                         f"its parameters are: {_names(properties)}" if properties else
                         "it takes no parameters")
            elif value is not None and _is_fixed(value):
                schema = properties[param]
                for error in Draft202012Validator(schema).iter_errors(value):
                    self.add(where + "".join(f"/{_escape(str(p))}" for p in error.path),
                             f"{error.message}", "give a value this parameter accepts")
        for param in required:
            if param not in inputs:
                self.add(f"{pointer}/inputs", f"{action.title} needs {param!r}",
                         f'give it a value, a template, or null ("{param}": null) to fill '
                         "it in at each run")
        return action

    # -- templates -------------------------------------------------------------------

    def _templates(self, pointer: str, value: Any, key: str | None, *, inner: bool,
                   loop_name: str | None = None) -> None:
        """Every placeholder in ``value`` names something the task can see: the run's
        input, an upstream task's output/status/error, ``item``/``index`` inside a
        forEach's task, ``run`` and ``flow``."""
        for where, text in iter_strings(value, pointer):
            compiled = compile_value(text)
            for template in walk_templates(compiled):
                for placeholder in template.placeholders:
                    if placeholder.namespace == "value":
                        self._reference(where, placeholder, key, inner, loop_name)

    def _reference(self, pointer: str, placeholder: Placeholder, key: str | None,
                   inner: bool, loop_name: str | None) -> None:
        path, root = placeholder.path, placeholder.root
        names = "input.<name>, tasks.<task>.output…, run.id, run.startedAt or flow.key"
        if inner and root in ((loop_name or "item"), "index"):
            return
        if root in (loop_name or "item", "item", "index"):
            self.add(pointer, f"{placeholder}: {root} exists only inside a forEach's task",
                     f"use {names}")
        elif root == "input":
            if len(path) < 2:
                self.add(pointer, f"{placeholder} names the whole input",
                         "name one of its fields: {{input.<name>}}")
            elif path[1] == "tasks":
                self.add(pointer, "input.tasks is reserved for the inputs left blank",
                         "call the field something else")
        elif root == "tasks":
            self._task_reference(pointer, placeholder, key)
        elif root == "run":
            if len(path) != 2 or path[1] not in _RUN_FIELDS:
                self.add(pointer, f"{placeholder}: a run has {', '.join(_RUN_FIELDS)}")
        elif root == "flow":
            if len(path) != 2 or path[1] not in _FLOW_FIELDS:
                self.add(pointer, f"{placeholder}: a flow has {', '.join(_FLOW_FIELDS)}")
        elif root == "event":
            self.add(pointer, f"{placeholder}: event values exist only in an event trigger's "
                              "input and filter", f"use {names}")
        else:
            self.add(pointer, f"{placeholder} names nothing a flow has", f"use {names}")

    def _task_reference(self, pointer: str, placeholder: Placeholder, key: str | None) -> None:
        path = placeholder.path
        if len(path) < 3 or path[2] not in _TASK_FIELDS:
            self.add(pointer, f"{placeholder}: write tasks.<task>.output…, "
                              "tasks.<task>.status or tasks.<task>.error")
            return
        other = path[1]
        if other not in self.tasks:
            self.add(pointer, f"{placeholder}: there is no task {other!r}",
                     f"name one of: {_names(self.tasks)}")
            return
        if key is not None and (other == key or other not in self.upstream.get(key, ())):
            self.add(pointer, f"{placeholder}: {other!r} is not upstream of {key!r}, so its "
                              "result may not exist yet",
                     f'add "needs": {{"{other}": "completed"}} to {key!r}')
            return
        if path[2] == "output" and len(path) > 3:
            missing = self._output_path(other, path[3:])
            if missing is not None:
                self.add(pointer, f"{placeholder}: {missing}",
                         "use a field of the task's output (the action's output schema)")

    def _output_path(self, task_key: str, rest: tuple[str, ...]) -> str | None:
        task = self.tasks[task_key]
        if "map" in task:
            mapped = task["map"]
            if isinstance(mapped, dict) and rest[0] not in mapped:
                return f"the map of {task_key!r} has no field {rest[0]!r}"
            return None
        if "wait" in task:
            return f"a wait task ({task_key!r}) has no output"
        if "dataSource" in task:
            if rest[0] not in ("records", "count"):
                return (f"the output of {task_key!r} has records and count "
                        f"(not {rest[0]!r})")
            return None
        if "forEach" in task:
            if not rest[0].lstrip("-").isdigit():
                return (f"the output of {task_key!r} is a list (one entry per item): "
                        f"write tasks.{task_key}.output.0…")
            action = self.inner_actions.get(task_key)
            rest = rest[1:]
        else:
            action = self.actions.get(task_key)
        if action is None or action.output is None or not rest:
            return None
        return _schema_path(action.output, rest, action.title)


def _schema_path(schema: Mapping[str, Any], path: tuple[str, ...], title: str) -> str | None:
    """Where ``path`` leaves what ``schema`` declares, or None when it stays inside
    (or reaches a part the schema leaves open)."""
    node: Any = schema
    walked: list[str] = []
    for step in path:
        if not isinstance(node, Mapping):
            return None
        if step.lstrip("-").isdigit() and "items" in node:
            node = node["items"]
        elif isinstance(node.get("properties"), Mapping):
            properties = node["properties"]
            if step not in properties:
                open_ = node.get("additionalProperties", True)
                if open_ is not False and open_ != {} and "additionalProperties" in node:
                    return None
                where = ".".join(walked) or "the output"
                return (f"the output of {title} has no {step!r} in {where} "
                        f"(it has: {_names(properties)})")
            node = properties[step]
        else:
            return None
        walked.append(step)
    return None


# -- compiling ------------------------------------------------------------------------


def lint_flow(doc: Any, connections: Mapping[str, Manifest | None], *,
              max_budget: int = 3000) -> list[FlowProblem]:
    """Every problem of ``doc`` for a workspace whose installations are
    ``connections`` (name → the manifest it runs, None when the catalog lost it)."""
    return _Lint(doc, connections, max_budget).run()


def compile_flow(doc: Any, connections: Mapping[str, Manifest | None], *,
                 max_budget: int = 3000) -> Flow:
    """The compiled flow; raises :class:`FlowInvalid` with every problem."""
    lint = _Lint(doc, connections, max_budget)
    problems = lint.run()
    if problems:
        raise FlowInvalid(problems)
    tasks: dict[str, Task] = {}
    for key, spec in doc["tasks"].items():
        tasks[key] = _compile_task(key, spec, lint)
    order = _order(tasks)
    schedules = tuple(parse_schedule(index, trigger)
                      for index, trigger in enumerate(doc.get("triggers") or [])
                      if trigger.get("type") == "schedule")
    events = tuple(
        EventTrigger(index=index, connection=trigger.get("connection"), event=trigger["event"],
                     filter=tuple(Condition(compile_value(c["value"]), c["op"],
                                            compile_value(c.get("to")))
                                  for c in trigger.get("filter") or ()),
                     input=compile_value(trigger.get("input", {})))
        for index, trigger in enumerate(doc.get("triggers") or [])
        if trigger.get("type") == "event")
    downstream: dict[str, list[str]] = {key: [] for key in tasks}
    for key in order:
        for other, _ in tasks[key].needs:
            downstream[other].append(key)
    budget = int(doc.get("budgetSeconds", max_budget))
    input_schema = doc["input"] if "input" in doc else _derive_input(doc, tasks, lint)
    validator = Draft202012Validator(copy.deepcopy(input_schema))
    _check_trigger_inputs(schedules, validator)
    connections_used = sorted({t.call.connection for t in tasks.values() if t.call} |
                              {t.data_source[0] for t in tasks.values() if t.data_source} |
                              {t.for_each.call.connection for t in tasks.values()
                               if t.for_each and t.for_each.call})
    return Flow(
        key=doc["key"], title=doc["title"], description=doc.get("description", ""),
        enabled=bool(doc.get("enabled", True)), budget_seconds=budget,
        tasks=MappingProxyType(tasks), order=order,
        downstream=MappingProxyType({k: tuple(v) for k, v in downstream.items()}),
        output=compile_value(doc["output"]) if "output" in doc else None,
        input_schema=MappingProxyType(copy.deepcopy(input_schema)),
        triggers=tuple(doc.get("triggers") or ({"type": "api"},)),
        document=MappingProxyType(copy.deepcopy(doc)),
        connections=tuple(connections_used),
        input_validator=validator,
        schedules=schedules,
        events=events,
    )


def _check_trigger_inputs(schedules: tuple[Schedule, ...], validator: Any) -> None:
    """A schedule's input is fixed: checked against the input schema now, not at 9:00."""
    problems = []
    for schedule in schedules:
        for error in validator.iter_errors(schedule.input):
            path = "".join(f"/{_escape(str(p))}" for p in error.absolute_path)
            problems.append(FlowProblem(f"/triggers/{schedule.index}/input{path}",
                                        f"the run's input {error.message}",
                                        "give the schedule's input every field the flow "
                                        "needs (see the flow's inputSchema)"))
    if problems:
        raise FlowInvalid(problems)


def _order(tasks: Mapping[str, Task]) -> tuple[str, ...]:
    done: list[str] = []
    placed: set[str] = set()
    pending = list(tasks)
    while pending:
        for key in pending:
            if all(other in placed for other, _ in tasks[key].needs):
                done.append(key)
                placed.add(key)
                pending.remove(key)
                break
    return tuple(done)


def _call(spec: dict[str, Any], action: Action) -> ActionCall:
    inputs = spec.get("inputs") or {}
    retry = spec.get("retry")
    compiled_inputs = tuple((name, compile_value(value)) for name, value in inputs.items()
                            if value is not None)
    reads_tasks = any(placeholder.root == "tasks"
                      for _, value in compiled_inputs
                      for template in walk_templates(value)
                      for placeholder in template.placeholders)
    return ActionCall(
        connection=spec["connection"], action=spec["action"],
        inputs=compiled_inputs,
        blanks=tuple(name for name, value in inputs.items() if value is None),
        timeout=float(spec.get("timeoutSeconds", ACTION_TIMEOUT)),
        retry=Retry(int(retry["attempts"]), float(retry.get("initialSeconds", 1)),
                    float(retry.get("factor", 2)), float(retry.get("maxSeconds", 300)))
        if retry else None,
        repeatable=action.repeatable,
        reads_tasks=reads_tasks,
    )


def _compile_task(key: str, spec: dict[str, Any], lint: _Lint) -> Task:
    needs = tuple((other, condition) for other, condition in (spec.get("needs") or {}).items())
    conditions = tuple(Condition(compile_value(c["value"]), c["op"],
                                 compile_value(c.get("to"))) for c in spec.get("if") or ())
    common: dict[str, Any] = {"key": key, "needs": needs, "join": spec.get("join", "all"),
                              "conditions": conditions}
    if "dataSource" in spec:
        return Task(kind="dataSource", data_source=(spec["connection"], spec["dataSource"]),
                    **common)
    if "connection" in spec:
        return Task(kind="action", call=_call(spec, lint.actions[key]), **common)
    if "map" in spec:
        return Task(kind="map", map=compile_value(spec["map"]), **common)
    if "forEach" in spec:
        each = spec["forEach"]
        inner = each["task"]
        return Task(kind="forEach", for_each=ForEach(
            items=compile_value(each["items"]), name=each.get("as", "item"),
            call=_call(inner, lint.inner_actions[key]) if "connection" in inner else None,
            map=compile_value(inner["map"]) if "map" in inner else None,
            parallelism=int(each.get("parallelism", 4)),
            max_items=int(each.get("maxItems", 1000))), **common)
    wait = spec["wait"]
    return Task(kind="wait", wait_seconds=float(wait["seconds"]) if "seconds" in wait else None,
                wait_until=compile_value(wait["until"]) if "until" in wait else None, **common)


def _derive_input(doc: dict[str, Any], tasks: Mapping[str, Task],
                  lint: _Lint) -> dict[str, Any]:
    """FLOWS.md §2: each ``{{input.x}}`` is a top-level property — with the schema of
    the parameter it fills when it is that parameter's whole value, required when that
    parameter is — and each blank input is ``tasks.<task>.<parameter>``."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    blanks: dict[str, Any] = {}

    def note(name: str, schema: Any, needed: bool) -> None:
        if name not in properties or (properties[name] == {} and schema != {}):
            properties[name] = copy.deepcopy(schema)
        if needed and name not in required:
            required.append(name)

    def scan(value: Any, param_schema: Any = None, param_required: bool = False) -> None:
        for _, text in iter_strings(value, ""):
            compiled = compile_value(text)
            for template in walk_templates(compiled):
                whole = template.whole
                for placeholder in template.placeholders:
                    if placeholder.root != "input" or len(placeholder.path) < 2:
                        continue
                    name = placeholder.path[1]
                    if whole is placeholder and len(placeholder.path) == 2 \
                            and param_schema is not None:
                        note(name, param_schema, param_required)
                    elif len(placeholder.path) > 2:
                        note(name, {"type": "object"}, param_required)
                    else:
                        note(name, {}, param_required)

    def scan_call(key: str, spec: dict[str, Any], action: Action) -> None:
        params = action.parameters.get("properties") or {}
        needed = set(action.parameters.get("required") or [])
        task_blanks: dict[str, Any] = {}
        task_required: list[str] = []
        for name, value in (spec.get("inputs") or {}).items():
            if value is None:
                task_blanks[name] = copy.deepcopy(params.get(name, {}))
                if name in needed:
                    task_required.append(name)
            else:  # a parameter's schema fits only a template that is its whole value
                scan(value, params.get(name) if isinstance(value, str) else None,
                     name in needed)
        if task_blanks:
            blank_schema: dict[str, Any] = {"type": "object", "properties": task_blanks,
                                            "additionalProperties": False}
            if task_required:
                blank_schema["required"] = task_required
            blanks[key] = blank_schema

    for key, spec in doc["tasks"].items():
        if "dataSource" in spec:
            continue  # no inputs
        if "connection" in spec:
            scan_call(key, spec, lint.actions[key])
        elif "forEach" in spec:
            inner = spec["forEach"]["task"]
            scan(spec["forEach"]["items"])
            if "connection" in inner:
                scan_call(key, inner, lint.inner_actions[key])
            else:
                scan(inner.get("map"))
        else:
            scan(spec.get("map"))
            scan(spec.get("wait"))
        scan(spec.get("if"))
    scan(doc.get("output"))
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": False}
    if blanks:
        schema["properties"]["tasks"] = {
            "type": "object", "properties": blanks, "additionalProperties": False,
            **({"required": sorted(k for k, v in blanks.items() if "required" in v)}
               if any("required" in v for v in blanks.values()) else {})}
        if any("required" in v for v in blanks.values()):
            required.append("tasks")
    if required:
        schema["required"] = required
    return schema
