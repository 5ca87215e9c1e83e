"""Named fault points for crash tests; nothing happens unless a test asks.

A test sets ``MINIHOST_FAULT=<point>:exit`` (for example
``rotate.after_row:3:exit``) and the process ends with status 137 at that point,
as if it had been killed, so recovery paths can be tested for real.
"""

from __future__ import annotations

import os

__all__ = ["fault"]


def fault(point: str, count: int | None = None) -> None:
    spec = os.environ.get("MINIHOST_FAULT")
    if not spec:
        return
    parts = spec.split(":")
    name, action = parts[0], parts[-1]
    wanted = int(parts[1]) if len(parts) == 3 else None
    if name == point and (wanted is None or wanted == count) and action == "exit":
        os._exit(137)
