"""Removing secrets from everything a trace or an error records (MANIFEST §6).

A :class:`Redactor` is built once per run from the installation's secret
values. It replaces each value — and its percent-encoded, form-encoded and
JSON-escaped forms — wherever it appears, also inside longer strings. Headers
whose value came from a ``[[…]]`` template, and headers that carry credentials
by convention (``Authorization``, ``Cookie``, …), are replaced whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["NOT_SECRET", "REDACTED", "SENSITIVE_HEADERS", "Redactor", "secret_values"]

REDACTED = "[redacted]"
SENSITIVE_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "x-auth-token",
})


# Reserved credential names that describe a token rather than being one; redacting
# their values ("bot", "repo", a timestamp) would mangle traces without hiding anything.
NOT_SECRET = frozenset({"tokenType", "expiresIn", "expiresAt", "scope"})


def secret_values(*sources: Any) -> list[str]:
    """Every string (and long number, as text) inside the given credential structures,
    except the values of :data:`NOT_SECRET` names at their top level."""
    found: list[str] = []
    stack: list[Any] = []
    for source in sources:
        if isinstance(source, Mapping):
            stack.extend(v for k, v in source.items() if k not in NOT_SECRET)
        else:
            stack.append(source)
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, str):
            if value:
                found.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            text = json.dumps(value)
            if len(text) >= 6:  # short numbers (ports, flags) are not secrets worth hiding
                found.append(text)
    return found


class Redactor:
    """Replaces ``secrets`` wherever they appear."""

    def __init__(self, secrets: Iterable[str]) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            variants.update({secret, json.dumps(secret)[1:-1],
                             json.dumps(secret, ensure_ascii=False)[1:-1]})
            try:
                variants.update({quote(secret, safe=""), quote_plus(secret, safe="")})
            except UnicodeEncodeError:
                pass  # not encodable, so it can never appear percent-encoded either
        variants.discard("")
        ordered = sorted(variants, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, value: str) -> str:
        if self._pattern is None:
            return value
        return self._pattern.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        """A JSON value with every secret occurrence replaced (keys included)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = json.dumps(value)
            return REDACTED if self.text(text) != text else value
        return value

    def headers(self, headers: Iterable[tuple[str, str]],
                secret_names: frozenset[str] = frozenset()) -> dict[str, str]:
        result = {}
        for name, value in headers:
            lowered = name.lower()
            if lowered in secret_names or lowered in SENSITIVE_HEADERS:
                result[name] = REDACTED
            else:
                result[name] = self.text(value)
        return result
