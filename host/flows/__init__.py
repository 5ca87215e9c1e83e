"""Flows (FLOWS.md): documents, their lint and compiled form, and the DAG rules.

Pure, like :mod:`host.manifest` and :mod:`host.engine`: no Flask and no database
(the import-linter contract says so). The workspace reaches the lint as a mapping
of installation names to manifests; the executor applies :func:`advance` and
:func:`outcome` inside its own transactions.
"""

from .compile import compile_flow, lint_flow
from .graph import FINISHED, TERMINAL, advance, condition_holds, outcome
from .model import ActionCall, Condition, Flow, ForEach, Retry, Task
from .schema import FLOW_SCHEMA
from .templates import MISSING, TemplateError, render

__all__ = [
    "FINISHED",
    "FLOW_SCHEMA",
    "MISSING",
    "TERMINAL",
    "ActionCall",
    "Condition",
    "Flow",
    "ForEach",
    "Retry",
    "Task",
    "TemplateError",
    "advance",
    "compile_flow",
    "condition_holds",
    "lint_flow",
    "outcome",
    "render",
]
