"""Matching hosts against a manifest's ``allowedHosts`` (MANIFEST §1, §2.5)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["host_allowed", "host_matches"]


def host_matches(pattern: str, host: str) -> bool:
    """``api.example.com`` matches itself; ``*.example.com`` matches one or more labels
    before ``example.com`` but never ``example.com`` itself. Case-insensitive; a
    trailing dot on the host is ignored."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower()
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    return any(host_matches(pattern, host) for pattern in patterns)
