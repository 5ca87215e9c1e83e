"""The run engine: pure Python, no Flask, no database.

It takes a compiled manifest piece, a resolution context and an HTTP client,
and returns a result with a redacted trace. Keeping it free of the web layer and
the database is what makes it fast, testable and reusable by flows and workers;
``tests/engine/test_boundaries.py`` walks its imports and fails if that changes.
Only ``transport.py`` opens sockets. See ``README.md`` beside this file.
"""

from .chain import ChainResult, Hooks, NoHooks, options_from, parse_body, run_chain
from .client import GuardedClient, Response, SandboxClient
from .egress import EgressPolicy, Target
from .render import Context, Outgoing, render_request

__all__ = [
    "ChainResult",
    "Context",
    "EgressPolicy",
    "GuardedClient",
    "Hooks",
    "NoHooks",
    "Outgoing",
    "Response",
    "SandboxClient",
    "Target",
    "options_from",
    "parse_body",
    "render_request",
    "run_chain",
]
