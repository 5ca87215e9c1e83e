"""Template helpers shared by every page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from markupsafe import Markup, escape

from ..engine.template import Template, UrlTemplate
from ..forms import Field
from ..version import __version__

AUTH_LABELS = {
    "none": "No account needed",
    "apiKey": "API key",
    "basic": "Username and password",
    "oauth2": "OAuth 2.0 sign-in",
}

WIDGET_LABELS = {
    "text": "text",
    "textarea": "multi-line text",
    "number": "number",
    "toggle": "yes / no",
    "multi": "list of values",
    "group": "group of fields",
}


def auth_label(kind: str) -> str:
    if kind in AUTH_LABELS:
        return AUTH_LABELS[kind]
    plugin = current_app.extensions.get("minihost.auth_types", {}).get(kind)
    return plugin.title if plugin is not None else kind


def widget_label(field: Field) -> str:
    if field.widget == "source":
        text = f"dropdown filled from the service ({field.source})"
        return text + ", or typed in when it fails" if field.fallback == "input" else text
    if field.widget == "select" and field.enum is not None:
        return "one of " + ", ".join(str(v) for v in field.enum)
    return WIDGET_LABELS.get(field.widget, field.widget)


def host_of(url: Template | UrlTemplate | str) -> str:
    text = url if isinstance(url, str) else url.source
    return urlsplit(text).hostname or text


def scope_list(scope: Any) -> list[str]:
    if isinstance(scope, list):
        return [str(item) for item in scope]
    return str(scope).replace(",", " ").split()


def safe_next(target: str | None) -> str | None:
    """A local path to go back to after signing in, never another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    # Browsers drop tabs and newlines and read "\\" as "/", so "/\t/evil.example"
    # would still leave the site; refuse anything that is not a plain path.
    if "\\" in target or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def relative(moment: datetime, now: datetime) -> str:
    """How long ago (or from now) ``moment`` is, in the words people use."""
    seconds = (now - moment).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now"
    if seconds < 90 * 60:
        amount = f"{max(1, round(seconds / 60))} min"
    elif seconds < 36 * 3600:
        amount = f"{round(seconds / 3600)} h"
    elif seconds < 14 * 86400:
        days = round(seconds / 86400)
        amount = f"{days} day{'s' if days != 1 else ''}"
    else:
        return moment.strftime("%-d %b %Y")
    return f"in {amount}" if ahead else f"{amount} ago"


def when(value: datetime | str | None, empty: str = "never") -> Markup:
    """A moment as a page shows it: relative ("3 min ago"), the exact time in UTC to
    the second on hover and for programs (``<time datetime>``), never microseconds."""
    if value is None or value == "":
        return Markup(escape(empty))
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC).replace(microsecond=0)
    exact = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat().replace("+00:00", "Z"), exact,
        relative(moment, datetime.now(UTC)))


def init_app(app: Flask) -> None:
    from ..identity import current_principal

    app.jinja_env.filters["when"] = when

    app.jinja_env.globals.update(
        current_principal=current_principal,
        auth_label=auth_label,
        widget_label=widget_label,
        host_of=host_of,
        scope_list=scope_list,
        minihost_version=__version__,
    )
