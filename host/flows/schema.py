"""The flow document's JSON Schema (FLOWS.md §2), published by ``minihost flow-schema``.

The schema checks shape; what needs the workspace (connections, actions, their
parameters and outputs) or the whole graph (references, cycles) is the lint's
(:mod:`.lint`), which reports at the same JSON pointers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONDITION_OPS", "FLOW_SCHEMA", "KEY_PATTERN", "LINK_CONDITIONS"]

KEY_PATTERN = "^[a-z0-9][a-z0-9_-]{0,63}$"
TASK_KEY_PATTERN = "^[A-Za-z][A-Za-z0-9_]{0,63}$"
CONDITION_OPS = ("equals", "notEquals", "in", "notIn", "exists", "notExists", "gt", "gte",
                 "lt", "lte", "contains", "matches")
LINK_CONDITIONS = ("completed", "failed", "finished")

_CONDITION = {
    "type": "object",
    "required": ["value", "op"],
    "additionalProperties": False,
    "properties": {
        "value": {"description": "A value, usually a template such as "
                                 "{{tasks.issue.output.priority}}."},
        "op": {"enum": list(CONDITION_OPS)},
        "to": {"description": "What to compare with (not for exists/notExists)."},
    },
}
_RETRY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["attempts"],
    "properties": {
        "attempts": {"type": "integer", "minimum": 1, "maximum": 10,
                     "description": "Attempts in all, the first included."},
        "initialSeconds": {"type": "number", "minimum": 0, "maximum": 3600, "default": 1},
        "factor": {"type": "number", "minimum": 1, "maximum": 10, "default": 2},
        "maxSeconds": {"type": "number", "minimum": 0, "maximum": 3600, "default": 300},
    },
}
_COMMON = {
    "title": {"type": "string", "maxLength": 200},
    "needs": {"type": "object", "description": "Upstream task keys, each with the "
                                               "condition that must hold.",
              "propertyNames": {"pattern": TASK_KEY_PATTERN},
              "additionalProperties": {"enum": list(LINK_CONDITIONS)}},
    "join": {"enum": ["all", "any"], "default": "all"},
    "if": {"type": "array", "items": _CONDITION, "maxItems": 20},
}
_ACTION_PARTS = {
    "connection": {"type": "string", "pattern": KEY_PATTERN,
                   "description": "An installation's name in the workspace."},
    "action": {"type": "string", "minLength": 1, "maxLength": 128},
    "inputs": {"type": "object", "description": "The action's parameters: a fixed value, a "
                                                "template, or null (blank: given at each run)."},
    "timeoutSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
    "retry": _RETRY,
}
_INNER = {
    "type": "object",
    "description": "The task run for each item: an action or a map.",
    "additionalProperties": False,
    "properties": {**_ACTION_PARTS, "map": {"type": "object"}},
    "oneOf": [{"required": ["connection", "action"], "not": {"required": ["map"]}},
              {"required": ["map"], "not": {"anyOf": [{"required": ["connection"]},
                                                       {"required": ["action"]}]}}],
}
_TASK = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **_COMMON, **_ACTION_PARTS,
        "map": {"type": "object", "description": "Templates: the task's output."},
        "forEach": {
            "type": "object", "additionalProperties": False, "required": ["items", "task"],
            "properties": {
                "items": {"description": "A list, usually a template such as "
                                         "{{tasks.list.output.items}}."},
                "as": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                       "default": "item"},
                "task": _INNER,
                "parallelism": {"type": "integer", "minimum": 1, "maximum": 32, "default": 4},
                "maxItems": {"type": "integer", "minimum": 1, "maximum": 10000,
                             "default": 1000},
            },
        },
        "dataSource": {"type": "string", "minLength": 1, "maxLength": 64,
                       "description": "With connection: list that data source's records."},
        "wait": {
            "type": "object", "additionalProperties": False,
            "oneOf": [{"required": ["seconds"]}, {"required": ["until"]}],
            "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3000},
                           "until": {"type": "string",
                                     "description": "An ISO 8601 time, or a template."}},
        },
    },
    "oneOf": [
        {"required": ["connection", "action"],
         "not": {"anyOf": [{"required": ["map"]}, {"required": ["forEach"]},
                           {"required": ["wait"]}, {"required": ["dataSource"]}]}},
        {"required": ["connection", "dataSource"],
         "not": {"anyOf": [{"required": ["action"]}, {"required": ["map"]},
                           {"required": ["forEach"]}, {"required": ["wait"]},
                           {"required": ["inputs"]}]}},
        {"required": ["map"], "not": {"anyOf": [{"required": ["connection"]},
                                                 {"required": ["action"]},
                                                 {"required": ["forEach"]},
                                                 {"required": ["wait"]},
                                                 {"required": ["dataSource"]}]}},
        {"required": ["forEach"], "not": {"anyOf": [{"required": ["connection"]},
                                                     {"required": ["action"]},
                                                     {"required": ["map"]},
                                                     {"required": ["wait"]},
                                                     {"required": ["dataSource"]}]}},
        {"required": ["wait"], "not": {"anyOf": [{"required": ["connection"]},
                                                  {"required": ["action"]},
                                                  {"required": ["map"]},
                                                  {"required": ["forEach"]},
                                                  {"required": ["dataSource"]}]}},
    ],
}
_TRIGGER = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["api", "schedule", "event"]},
        "cron": {"type": "string"},
        "timezone": {"type": "string"},
        "connection": {"type": "string", "pattern": KEY_PATTERN},
        "event": {"type": "string", "minLength": 1, "maxLength": 200},
        "filter": {"type": "array", "items": _CONDITION},
        "input": {"type": "object"},
        "overlap": {"enum": ["skip", "allow"]},
        "catchupSeconds": {"type": "integer", "minimum": 0},
    },
}

FLOW_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://minihost.dev/schemas/flow-1.json",
    "title": "Minihost flow document",
    "type": "object",
    "required": ["key", "title", "tasks"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "key": {"type": "string", "pattern": KEY_PATTERN,
                "description": "Unique in the workspace; the endpoint's path names it."},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "maxLength": 4000},
        "enabled": {"type": "boolean", "default": True},
        "budgetSeconds": {"type": "integer", "minimum": 1,
                          "description": "The run's deadline (at most FLOW_TIMEOUT)."},
        "input": {"type": "object", "description": "The run's input as a JSON Schema, "
                                                   "instead of the derived one."},
        "triggers": {"type": "array", "items": _TRIGGER, "maxItems": 20},
        "tasks": {"type": "object", "minProperties": 1, "maxProperties": 200,
                  "propertyNames": {"pattern": TASK_KEY_PATTERN},
                  "additionalProperties": _TASK},
        "output": {"description": "Templates: the flow run's result."},
    },
}
