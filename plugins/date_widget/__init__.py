"""A calendar date picker for fields with ``"x-widget": "date"``.

A small, complete example of the ``form_widgets`` hook: the browser's native
date input, submitting ``YYYY-MM-DD`` text that the form coerces like any
string (add ``"format": "date"`` to the schema to have it validated).
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from host.plugins import hookimpl

__version__ = "1.0.0"
MINIHOST_REQUIRES = ">=0.1"


def render_date(field: Any, name: str, value: Any) -> Markup:
    element_id = "f-" + name.replace(".", "-")
    required = " required" if field.required else ""
    # The host renders the field's description as <p id="<id>-help">: read with it.
    described = (f' aria-describedby="{escape(element_id)}-help"'
                 if getattr(field, "description", None) else "")
    current = escape(value) if isinstance(value, str) else ""
    return Markup(
        f'<input type="date" id="{escape(element_id)}" name="{escape(name)}" '
        f'value="{current}"{required}{described}>'
    )


@hookimpl
def form_widgets() -> dict[str, Any]:
    return {"date": render_date}
