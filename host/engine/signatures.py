"""Inbound webhook signatures (FLOWS.md §5): checked on the raw body, as the provider
signed it, with constant-time compares.

A provider signs the bytes it sent — not the JSON a parser would give back — so the
signed payload is built from the raw body (and the timestamp exactly as it was
sent). Every reason for a refusal is a sentence an operator can act on; none
contains the secret or the body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .paths import MISSING, JsonPath

__all__ = ["Inbound", "Rejected", "WebhookVerify", "timestamp_of", "verify"]

_DIGESTS = {"hmac-sha256": hashlib.sha256, "hmac-sha1": hashlib.sha1}


@dataclass(frozen=True, slots=True)
class WebhookVerify:
    """How an inbound webhook's signature is checked (FLOWS.md §5), compiled at load."""

    type: str  # hmac-sha256 | hmac-sha1 | ed25519 | token
    header: str
    secret: Any  # a compiled template (or plain text)
    encoding: str = "hex"
    prefix: str = ""
    signature_param: str | None = None
    timestamp_param: str | None = None
    # What is signed: text pieces and ("body" | "timestamp" | "method" | "url" |
    # "header", name) parts, in order.
    signed_payload: tuple[tuple[str, str], ...] = (("body", ""),)
    timestamp_header: str | None = None
    timestamp_path: JsonPath | None = None
    tolerance_seconds: int = 300
    timestamp_unit: str | None = None  # seconds | milliseconds; None: told apart by size

    @property
    def uses_timestamp(self) -> bool:
        return bool(self.timestamp_header or self.timestamp_path or self.timestamp_param)


class Rejected(Exception):
    """The request is not the provider's: the message says why (and never the secret)."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """An inbound request as received: the raw body, headers by lower-case name, the
    method and the URL the provider called, and the body parsed (MISSING if not JSON)."""

    body: bytes
    headers: Mapping[str, str]
    method: str
    url: str
    data: Any = MISSING


def _pairs(value: str) -> list[tuple[str, str]]:
    found = []
    for piece in value.split(","):
        key, sep, rest = piece.strip().partition("=")
        if sep:
            found.append((key.strip(), rest.strip()))
    return found


def timestamp_of(spec: WebhookVerify, inbound: Inbound) -> str | None:
    """The timestamp as the provider sent it (signed payloads use it verbatim)."""
    if spec.timestamp_param is not None:
        header = inbound.headers.get(spec.header, "")
        for key, value in _pairs(header):
            if key == spec.timestamp_param:
                return value
        return None
    if spec.timestamp_header is not None:
        return inbound.headers.get(spec.timestamp_header)
    if spec.timestamp_path is not None:
        found = spec.timestamp_path.evaluate(inbound.data)
        if found is MISSING or isinstance(found, bool) or not isinstance(found, int | float | str):
            return None
        return str(found)
    return None


def _check_age(spec: WebhookVerify, sent: str | None, now: float) -> None:
    if sent is None:
        where = (f"the {spec.timestamp_param}= part of {spec.header}" if spec.timestamp_param
                 else spec.timestamp_header or (spec.timestamp_path.source
                                                if spec.timestamp_path else "the request"))
        raise Rejected(f"no timestamp in {where}")
    try:
        seconds = float(sent)
    except ValueError:
        raise Rejected(f"the timestamp {sent[:40]!r} is not a number of seconds") from None
    if spec.timestamp_unit == "milliseconds" or (spec.timestamp_unit is None and seconds > 1e11):
        seconds /= 1000  # Linear, HubSpot
    age = now - seconds
    if abs(age) > spec.tolerance_seconds:
        when = "old" if age > 0 else "in the future"
        raise Rejected(f"the timestamp is {abs(age):.0f} s {when}, more than the "
                       f"{spec.tolerance_seconds} s allowed (a replay, or a clock far off)")


def _payload(spec: WebhookVerify, inbound: Inbound, sent: str | None) -> bytes:
    pieces: list[bytes] = []
    for kind, text in spec.signed_payload:
        if kind == "body":
            pieces.append(inbound.body)
        elif kind == "text":
            pieces.append(text.encode())
        elif kind == "timestamp":
            pieces.append((sent or "").encode())
        elif kind == "method":
            pieces.append(inbound.method.encode())
        elif kind == "url":
            pieces.append(inbound.url.encode())
        else:
            pieces.append(inbound.headers.get(text, "").encode())
    return b"".join(pieces)


def _decode(signature: str, encoding: str) -> bytes | None:
    try:
        if encoding == "base64":
            return base64.b64decode(signature, validate=True)
        return bytes.fromhex(signature)
    except (ValueError, binascii.Error):
        return None


def verify(spec: WebhookVerify, secret: str, inbound: Inbound, now: float) -> None:
    """Raise :class:`Rejected` unless ``inbound`` carries a valid signature (and, when
    the spec reads one, a timestamp within the tolerance)."""
    header = inbound.headers.get(spec.header)
    if not header:
        raise Rejected(f"no {spec.header} header")
    if spec.signature_param is not None:
        signatures = [v for k, v in _pairs(header) if k == spec.signature_param]
        if not signatures:
            raise Rejected(f"the {spec.header} header has no {spec.signature_param}= signature")
    else:
        signatures = [header.strip()]
    if spec.prefix:
        prefixed = [s[len(spec.prefix):] for s in signatures if s.startswith(spec.prefix)]
        if not prefixed:
            raise Rejected(f"the {spec.header} header does not start with {spec.prefix!r}")
        signatures = prefixed
    sent = timestamp_of(spec, inbound) if spec.uses_timestamp else None
    if spec.uses_timestamp:
        _check_age(spec, sent, now)
    if spec.type == "token":
        if not any(hmac.compare_digest(s.encode(), secret.encode()) for s in signatures):
            raise Rejected(f"the {spec.header} token does not match (check the webhook secret)")
        return
    payload = _payload(spec, inbound, sent)
    if spec.type == "ed25519":
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(secret.strip()))
        except ValueError:
            raise Rejected("the public key to check signatures with is not 32 bytes of hex "
                           "(check the installation's webhook secret)") from None
        for signature in signatures:
            decoded = _decode(signature, spec.encoding)
            if decoded is None:
                continue
            try:
                key.verify(decoded, payload)
                return
            except InvalidSignature:
                continue
        raise Rejected("the signature does not match (check the public key)")
    expected = hmac.new(secret.encode(), payload, _DIGESTS[spec.type]).digest()
    for signature in signatures:
        decoded = _decode(signature, spec.encoding)
        if decoded is not None and hmac.compare_digest(decoded, expected):
            return
    raise Rejected("the signature does not match (check the webhook secret)")
