"""Sign the requests of chosen mini-apps with an HMAC, so providers can trust them.

Some providers accept a request only when it proves it comes from a party that
knows a shared secret. This plugin adds, through the ``prepare_request`` hook, a
header (``X-Signature`` by default) to every request of each mini-app listed in
its settings::

    X-Signature: t=<unix seconds>,v1=<hex HMAC>

The HMAC (SHA-256 by default, or SHA-512) is keyed with the mini-app's secret
and computed over ``f"{t}.{METHOD}.{path_and_query}.".encode() + body``, where
``path_and_query`` is the request target exactly as it goes out on the request
line and ``body`` the bytes sent (empty when there are none). The timestamp
lets the provider refuse replays, as in Stripe's webhook signatures.

Requests of mini-apps that are not listed are untouched; without settings the
plugin does nothing. A setting that is wrong fails the request with a message
naming it, and the request is not sent: a request that should be signed never
goes out unsigned. The secret appears nowhere but in the HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from host.plugins import hookimpl, plugin_settings

if TYPE_CHECKING:
    from host.engine import Outgoing

try:  # urllib3 (the host's transport) percent-encodes the request line with this
    from urllib3.util.url import _encode_target as _wire_target
except ImportError:  # pragma: no cover - right for every target that is already encoded
    def _wire_target(target: str) -> str:
        return target

__version__ = "1.0.0"
MINIHOST_REQUIRES = ">=0.1"

NAME = "hmac_signing"
DEFAULT_HEADER = "X-Signature"
ALGORITHMS: dict[str, Callable[..., Any]] = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
ENTRY_SETTINGS = ("secret", "header", "algorithm")
EXAMPLE = '{"hmac_signing": {"miniapps": {"<mini-app name>": {"secret": "…"}}}}'
clock: Callable[[], float] = time.time  # the timestamp's source (tests replace it)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 §5.6.2)
_RESERVED = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "te", "trailer", "proxy-connection", "proxy-authorization", "expect",
})


class Signer:
    """One mini-app's checked settings."""

    __slots__ = ("algorithm", "digest", "header", "key")

    def __init__(self, key: bytes, header: str, algorithm: str) -> None:
        self.key = key
        self.header = header
        self.algorithm = algorithm
        self.digest = ALGORITHMS[algorithm]

    def signature(self, timestamp: int, method: str, target: str, body: bytes) -> str:
        message = f"{timestamp}.{method}.{target}.".encode() + body
        return hmac.new(self.key, message, self.digest).hexdigest()


def request_target(url: str) -> str:
    """The path and query of ``url`` as the host sends them on the request line."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return _wire_target(target)


def signer_for(config: Mapping[str, Any], miniapp: str) -> Signer | None:
    """The signer for ``miniapp``'s requests, or ``None`` when it is not listed.

    Raises :class:`ValueError` naming the setting and what to write instead; the
    message never contains the secret.
    """
    raw = (config.get("PLUGIN_SETTINGS") or {}).get(NAME)
    if raw is not None and not isinstance(raw, Mapping):
        raise ValueError(f'PLUGIN_SETTINGS["{NAME}"] is of type {type(raw).__name__}; write a '
                         f"dict, for example PLUGIN_SETTINGS = {EXAMPLE}")
    settings = plugin_settings(config, NAME)
    if not settings:
        return None
    where = f'PLUGIN_SETTINGS["{NAME}"]'
    unknown = sorted(str(key) for key in settings if key != "miniapps")
    if unknown:
        raise ValueError(f"{where} has unknown setting(s) {', '.join(map(repr, unknown))}; "
                         f"the only setting is 'miniapps', for example {EXAMPLE}")
    miniapps = settings.get("miniapps")
    if not isinstance(miniapps, Mapping):
        found = "is missing" if miniapps is None else f"is of type {type(miniapps).__name__}"
        raise ValueError(f'{where}["miniapps"] {found}; write a dict from mini-app name to '
                         f"its signing settings, for example {EXAMPLE}")
    if miniapp not in miniapps:
        return None
    entry = miniapps[miniapp]
    where = f'{where}["miniapps"]["{miniapp}"]'
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} is of type {type(entry).__name__}; write a dict such as "
                         '{"secret": "…", "header": "X-Signature", "algorithm": "sha256"}')
    unknown = sorted(str(key) for key in entry if key not in ENTRY_SETTINGS)
    if unknown:
        raise ValueError(f"{where} has unknown setting(s) {', '.join(map(repr, unknown))}; "
                         "the settings are 'secret' (required), 'header' and 'algorithm'")
    secret = entry.get("secret")
    if not isinstance(secret, str) or not secret:
        found = "is missing" if secret is None else "is empty" if secret == "" else \
            f"is of type {type(secret).__name__}"
        raise ValueError(f'{where}["secret"] {found}; write the secret shared with the '
                         'provider, as a non-empty string: {"secret": "…"}')
    header = entry.get("header", DEFAULT_HEADER)
    if not isinstance(header, str) or not _TOKEN.fullmatch(header) or header.lower() in _RESERVED:
        raise ValueError(f'{where}["header"] is {header!r}; write a header name such as '
                         f'"{DEFAULT_HEADER}" (the default)')
    algorithm = entry.get("algorithm", "sha256")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f'{where}["algorithm"] is {algorithm!r}; write "sha256" (the default) '
                         'or "sha512"')
    return Signer(secret.encode(), header, algorithm)


@hookimpl(trylast=True)  # after any plugin that changes the URL or body: sign what is sent
def prepare_request(request: Outgoing, miniapp: str, config: Mapping[str, Any]) -> None:
    signer = signer_for(config, miniapp)
    if signer is None:
        return
    timestamp = int(clock())
    method = request.method.upper()
    value = f"t={timestamp},v1=" + signer.signature(
        timestamp, method, request_target(request.url), request.body or b"")
    name = signer.header.lower()
    request.headers[:] = [(key, text) for key, text in request.headers if key.lower() != name]
    request.headers.append((signer.header, value))
    # Marked secret so the host never follows a redirect to another origin with it
    # (a replayable signature); the trace then shows it as [redacted].
    request.secret_headers = request.secret_headers | {name}
