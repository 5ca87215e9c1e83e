"""Mini-apps from a catalog index published over HTTPS.

Why: an organisation that runs several hosts publishes its mini-apps once, on
a web server it already has, instead of copying folders onto every host.
What: on each catalog sync this plugin reads the index named by
``PLUGIN_SETTINGS["catalog_http"]["index"]`` — a JSON object listing manifest
URLs — fetches each manifest, and hands the documents to the host, which
validates them like any other manifest (an invalid one is listed among the
catalog errors; the others still enter the catalog).

Every request goes through the host's guarded client: the egress policy
refuses private and cloud-metadata addresses exactly as for a mini-app's own
requests, each redirect hop is checked again, answers are size-capped, and one
deadline (``timeout``, 10 s by default) bounds the whole sync. Only ``https``
is accepted, or also ``http`` when ``EGRESS_ALLOW_PRIVATE`` is on (development).

Failures: when the index cannot be fetched or read, the hook raises and the
host reports it on ``/-/plugins`` (this plugin contributes nothing that sync).
A single manifest that cannot be fetched or parsed, or an index entry that is
not allowed, is skipped and logged so it does not take the rest with it. With
no settings the plugin does nothing; the host checks them against
``SETTINGS_SCHEMA`` at start-up. See ``README.md`` for the index
format.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from host.engine import EgressPolicy, GuardedClient, Outgoing
from host.engine.hosts import host_matches
from host.errors import ManifestError, MinihostError
from host.manifest import parse_text
from host.plugins import hookimpl, plugin_settings

__version__ = "1.0.0"
MINIHOST_REQUIRES = ">=0.1"

NAME = "catalog_http"
DEFAULT_TIMEOUT = 10.0
SETTINGS_SCHEMA = {
    "type": "object",
    "required": ["index"],
    "additionalProperties": False,
    "properties": {
        "index": {
            "type": "string", "minLength": 1,
            "description": "write the URL of the catalog index, such as "
                           "https://example.com/minihost/index.json",
        },
        "hosts": {
            "type": "array",
            "description": 'write a list of host names, such as ["cdn.example.com", '
                           '"*.example.org"]',
            "items": {
                "type": "string", "pattern": r"^[^/\s]+$",
                "description": 'write a host name (no scheme or path), such as '
                               '"cdn.example.com", "*.example.org" or "cdn.example.com:8443"',
            },
        },
        "timeout": {
            "type": "number", "exclusiveMinimum": 0,
            "description": f"write a positive number of seconds (default {DEFAULT_TIMEOUT:g})",
        },
    },
}
ACCEPT = "application/json, application/yaml;q=0.9, */*;q=0.1"
USER_AGENT = f"Minihost catalog_http/{__version__}"
DEFAULT_PORTS = {"http": 80, "https": 443}

log = logging.getLogger(f"minihost_plugins.{NAME}")  # stable, whatever folder it loads from


class FetchFailed(Exception):
    """One URL could not be fetched or read; the message says why, without the URL."""


@dataclass(frozen=True, slots=True)
class Settings:
    index: str
    hosts: tuple[str, ...]
    timeout: float
    allow_http: bool

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("https", "http") if self.allow_http else ("https",)

    @property
    def allowed_hosts(self) -> list[str]:
        """The index's host (with its port when not the default) and ``hosts``,
        as ``allowedHosts`` entries for the egress policy."""
        parts = urlsplit(self.index)
        own = parts.hostname or ""
        if parts.port is not None and parts.port != DEFAULT_PORTS.get(parts.scheme):
            own = f"{own}:{parts.port}"
        return [own, *self.hosts]


def read_settings(config: Mapping[str, Any]) -> Settings | None:
    """This plugin's settings; ``None`` when no index is configured.

    The host checked their shape against :data:`SETTINGS_SCHEMA` at start-up;
    whether ``http://`` is allowed depends on ``EGRESS_ALLOW_PRIVATE``, so the
    index's scheme is checked here."""
    raw = plugin_settings(config, NAME)
    if not raw:
        return None
    index = raw["index"]
    settings = Settings(index, tuple(h.lower() for h in raw.get("hosts", ())),
                        float(raw.get("timeout", DEFAULT_TIMEOUT)),
                        bool(config.get("EGRESS_ALLOW_PRIVATE", False)))
    problem = _url_problem(index, settings, check_host=False)
    if problem:
        raise ValueError(f'PLUGIN_SETTINGS["{NAME}"]["index"] is {index!r}; {problem}')
    return settings


def _url_problem(url: str, settings: Settings, check_host: bool = True) -> str | None:
    """Why ``url`` may not be fetched, or ``None``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        return f"not a valid URL ({error})"
    if parts.scheme not in settings.schemes:
        if parts.scheme == "http":
            return ("http:// is accepted only when EGRESS_ALLOW_PRIVATE is on "
                    "(development); use https://")
        return "only https:// URLs are accepted"
    if not parts.hostname:
        return "the URL has no host"
    if check_host and not any(host_matches(_host_only(p), parts.hostname)
                              for p in settings.allowed_hosts):
        index_host = urlsplit(settings.index).hostname
        return (f"host {parts.hostname} is neither the index's host ({index_host}) nor in "
                f"the {NAME} setting hosts; add it to hosts to allow it")
    return None


def _host_only(pattern: str) -> str:
    return pattern.rsplit(":", 1)[0] if pattern.count(":") == 1 else pattern


def _fetch(client: GuardedClient, url: str, settings: Settings,
           deadline: float) -> tuple[bytes, str]:
    """GET ``url`` through the guarded client → (body, final URL after redirects)."""
    outgoing = Outgoing(
        pointer=url, method="GET", url=url,
        headers=[("Accept", ACCEPT), ("User-Agent", USER_AGENT)], body=None,
        body_trace=None, carries_secrets=False, secret_headers=frozenset(), timeout=None,
    )
    try:
        response = client.send(outgoing, None, settings.allowed_hosts, deadline)
    except MinihostError as error:
        text = str(error)
        prefix = f"request {url}: "
        raise FetchFailed(text[len(prefix):] if text.startswith(prefix) else text) from None
    final = url
    for hop in response.hops:
        if urlsplit(hop.location).scheme not in settings.schemes:
            raise FetchFailed(f"redirected to {hop.location}, which is not https")
        final = hop.location
    if response.status != 200:
        raise FetchFailed(f"answered HTTP {response.status}; expected 200")
    return response.body, final


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FetchFailed("the answer is not UTF-8 text") from None


def _manifest_urls(document: Any, base: str, index: str) -> tuple[list[str], list[str]]:
    """The absolute manifest URLs an index lists (in order, without repeats), and
    the problems of entries that are neither a URL nor ``{"url": …}``."""
    if not isinstance(document, dict) or not isinstance(document.get("miniapps"), list):
        raise ValueError(f'catalog index {index} must be a JSON object with a "miniapps" '
                         'list of manifest URLs, such as {"miniapps": '
                         '["https://example.com/minihost/a/manifest.json"]}')
    urls: list[str] = []
    problems: list[str] = []
    for position, entry in enumerate(document["miniapps"]):
        url = entry.get("url") if isinstance(entry, dict) else entry
        if not isinstance(url, str) or not url.strip():
            problems.append(f"entry {position} of catalog index {index} is neither a "
                            'manifest URL nor an object {"url": …}')
            continue
        absolute = urljoin(base, url.strip())
        if absolute not in urls:
            urls.append(absolute)
    return urls, problems


def _parse_manifest(body: bytes, url: str) -> dict[str, Any]:
    path = urlsplit(url).path
    # parse_text reads YAML when the label ends in .yaml/.yml, JSON otherwise.
    label = path if path.endswith((".yaml", ".yml")) else url
    try:
        return parse_text(_text(body), label)
    except ManifestError as error:
        raise FetchFailed("; ".join(p.message for p in error.problems)) from None


def load_catalog(settings: Settings) -> list[dict[str, Any]]:
    """Fetch the index and its manifests. Raises when the index itself fails;
    skips (and logs) manifests that fail."""
    deadline = time.monotonic() + settings.timeout
    client = GuardedClient(EgressPolicy(allow_private=settings.allow_http))
    try:
        try:
            body, final = _fetch(client, settings.index, settings, deadline)
            text = _text(body)
        except FetchFailed as error:
            raise RuntimeError(f"catalog index {settings.index} could not be fetched: "
                               f"{error}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"catalog index {settings.index} is not valid JSON: {error.msg} "
                             f"at line {error.lineno} column {error.colno}") from None
        urls, problems = _manifest_urls(document, final, settings.index)
        for problem in problems:
            log.error("%s: skipped: %s", NAME, problem)
        manifests: list[dict[str, Any]] = []
        for position, url in enumerate(urls):
            if time.monotonic() >= deadline:
                log.error("%s: skipped %d manifest(s) from %s, starting with %s: the %g s "
                          "timeout passed", NAME, len(urls) - position, settings.index, url,
                          settings.timeout)
                break
            refused = _url_problem(url, settings)
            if refused:
                log.error("%s: skipped manifest %s: %s", NAME, url, refused)
                continue
            try:
                body, _ = _fetch(client, url, settings, deadline)
                manifests.append(_parse_manifest(body, url))
            except FetchFailed as error:
                log.error("%s: skipped manifest %s: %s", NAME, url, error)
            except Exception:  # one manifest never takes the others with it
                log.exception("%s: skipped manifest %s: unexpected error", NAME, url)
        log.info("%s: %d of %d manifest(s) fetched from %s", NAME, len(manifests), len(urls),
                 settings.index)
        return manifests
    finally:
        client.transport.close()


@hookimpl
def miniapp_manifests(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    settings = read_settings(config)
    if settings is None:
        return []
    return load_catalog(settings)
