"""Sign the requests of chosen mini-apps with an HMAC, so providers can trust them.

Some providers accept a request only when it proves it comes from a party that
knows a shared secret. This plugin adds, through the ``prepare_request`` hook, a
header (``X-Signature`` by default) to every request of each mini-app listed in
its settings::

    X-Signature: t=<unix seconds>,v1=<hex HMAC>

The HMAC (SHA-256 by default, or SHA-512) is keyed with the mini-app's secret
and computed over ``f"{t}.{METHOD}.{path_and_query}.".encode() + body``, where
``path_and_query`` is the request target exactly as it goes out on the request
line and ``body`` the bytes sent (empty when there are none). To know that
target without relying on how the transport encodes URLs, the plugin writes the
URL's path and query percent-encoded itself (:func:`on_the_wire`) and signs
that; the transport then has nothing left to encode. The timestamp
lets the provider refuse replays, as in Stripe's webhook signatures.

Requests of mini-apps that are not listed are untouched; without settings the
plugin does nothing. The host checks the settings against ``SETTINGS_SCHEMA``
at start-up; when they are wrong the plugin is not loaded and every request
fails naming the setting, rather than go out unsigned. The secret appears
nowhere but in the HMAC (the schema marks it ``writeOnly``, so no message
quotes it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from host.plugins import hookimpl, plugin_settings

if TYPE_CHECKING:
    from host.engine import Outgoing

__version__ = "1.0.0"
MINIHOST_REQUIRES = ">=0.1"

NAME = "hmac_signing"
DEFAULT_HEADER = "X-Signature"
ALGORITHMS: dict[str, Callable[..., Any]] = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
EXAMPLE = '{"hmac_signing": {"miniapps": {"<mini-app name>": {"secret": "…"}}}}'
clock: Callable[[], float] = time.time  # the timestamp's source (tests replace it)
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # an HTTP header name (RFC 9110 §5.6.2)
_RESERVED = (  # headers the host or the connection owns
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "te", "trailer", "proxy-connection", "proxy-authorization", "expect",
)
_PATH_SAFE = "!$&'()*+,;=:@/"  # RFC 3986: what a path may hold besides unreserved
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
SETTINGS_SCHEMA = {
    "type": "object",
    "required": ["miniapps"],
    "additionalProperties": False,
    "properties": {
        "miniapps": {
            "type": "object",
            "description": "write a dict from mini-app name to its signing settings, for "
                           f"example {EXAMPLE}",
            "additionalProperties": {
                "type": "object",
                "description": 'write a dict such as {"secret": "…", "header": "X-Signature", '
                               '"algorithm": "sha256"}',
                "required": ["secret"],
                "additionalProperties": False,
                "properties": {
                    "secret": {
                        "type": "string", "minLength": 1, "writeOnly": True,
                        "description": "write the secret shared with the provider, as a "
                                       'non-empty string: {"secret": "…"}',
                    },
                    "header": {
                        "type": "string",
                        "pattern": f"^(?!(?i:{'|'.join(_RESERVED)})$){_TOKEN}$",
                        "description": f'write a header name such as "{DEFAULT_HEADER}" '
                                       "(the default)",
                    },
                    "algorithm": {
                        "enum": sorted(ALGORITHMS),
                        "description": 'write "sha256" (the default) or "sha512"',
                    },
                },
            },
        },
    },
}


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


def _encoded(part: str, safe: str) -> str:
    """``part`` percent-encoded as RFC 3986 asks: every character outside the
    unreserved ones and ``safe`` as UTF-8 escapes, and escapes already there kept
    (upper-cased); a ``%`` that starts no escape becomes ``%25``."""
    pieces: list[str] = []
    done = 0
    for escape in _ESCAPE.finditer(part):
        pieces += [quote(part[done:escape.start()], safe=safe), escape.group().upper()]
        done = escape.end()
    pieces.append(quote(part[done:], safe=safe))
    return "".join(pieces)


def on_the_wire(url: str) -> tuple[str, str]:
    """``url`` with its path and query percent-encoded, and its request target.

    An HTTP client sends a target that is already encoded this way unchanged —
    every character is allowed and every ``%`` starts an escape, so there is
    nothing left to encode or normalise — so signing this form signs, byte for
    byte, the request line that goes out, whichever client sends it."""
    parts = urlsplit(url)
    path = _encoded(parts.path or "/", _PATH_SAFE)
    query = _encoded(parts.query, _PATH_SAFE + "?")
    target = f"{path}?{query}" if query else path
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment)), target


def signer_for(config: Mapping[str, Any], miniapp: str) -> Signer | None:
    """The signer for ``miniapp``'s requests, or ``None`` when it is not listed.

    The host checked the settings against :data:`SETTINGS_SCHEMA` at start-up."""
    entry = plugin_settings(config, NAME).get("miniapps", {}).get(miniapp)
    if entry is None:
        return None
    return Signer(entry["secret"].encode(), entry.get("header", DEFAULT_HEADER),
                  entry.get("algorithm", "sha256"))


@hookimpl(trylast=True)  # after any plugin that changes the URL or body: sign what is sent
def prepare_request(request: Outgoing, miniapp: str, config: Mapping[str, Any]) -> None:
    signer = signer_for(config, miniapp)
    if signer is None:
        return
    timestamp = int(clock())
    method = request.method.upper()
    request.url, target = on_the_wire(request.url)
    value = f"t={timestamp},v1=" + signer.signature(timestamp, method, target,
                                                    request.body or b"")
    name = signer.header.lower()
    request.headers[:] = [(key, text) for key, text in request.headers if key.lower() != name]
    request.headers.append((signer.header, value))
    # Marked secret so the host never follows a redirect to another origin with it
    # (a replayable signature); the trace then shows it as [redacted].
    request.secret_headers = request.secret_headers | {name}
