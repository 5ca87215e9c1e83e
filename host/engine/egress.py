"""The egress policy (MANIFEST §2.5): where the host may send a request.

A destination passes when its scheme is http or https, it has no user info,
its host matches the manifest's ``allowedHosts`` (and the port is the scheme's
default unless an entry names it — private egress does not change that), and **every**
address the host name resolves to is public — after unwrapping IPv4-mapped,
6to4, NAT64 and Teredo forms. Cloud metadata names and addresses are refused
even when the operator allows private targets. The checked addresses are
returned so the transport connects to exactly those (no second DNS answer).

The resolver and the public-address test are seams: tests replace them to
prove pinning and rebinding defences without real DNS.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import EgressDenied
from .hosts import host_matches

__all__ = [
    "METADATA_ADDRESSES",
    "METADATA_HOSTS",
    "EgressPolicy",
    "Target",
    "is_public_address",
    "system_resolver",
    "unwrap",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.com",
})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.169.253", "169.254.170.2", "169.254.170.23",
    "100.100.100.200", "192.0.0.192", "fd00:ec2::254", "fd00:ec2::23",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# Deprecated forms Python still calls global: IPv4-compatible (::a.b.c.d, which
# some stacks route to the IPv4 address), SIIT-translated (::ffff:0:a.b.c.d) and
# site-local (fec0::/10). No public service is reached through them.
_DEPRECATED_V6 = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "fec0::/10"))
DEFAULT_PORTS = {"http": 80, "https": 443}


def unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address hidden in an IPv6 form, or the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
        if address in _NAT64 or address in _NAT64_LOCAL:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public_address(address: IPAddress) -> bool:
    """Globally routable unicast (``is_global``), judged on the unwrapped address."""
    if isinstance(address, ipaddress.IPv6Address) and any(address in n for n in _DEPRECATED_V6):
        return False
    inner = unwrap(address)
    return inner.is_global and not inner.is_multicast and not address.is_multicast


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination: connect to one of ``addresses``, speak to ``host``."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    path: str  # path and query, as sent in the request line

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if DEFAULT_PORTS[self.scheme] == self.port else f"{name}:{self.port}"


def _normalise_host(raw: str) -> str:
    host = raw.strip().rstrip(".").lower()
    if not host:
        raise ValueError("empty host")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if any(c in host for c in "\\@%/ \t") and ":" not in host:
        raise ValueError("bad characters")
    return host


MAX_CACHED_NAMES = 4096


class EgressPolicy:
    """Decides, per request, whether and where the host may connect."""

    def __init__(
        self,
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
        is_public: Callable[[IPAddress], bool] = is_public_address,
        cache_seconds: float = 30.0,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.is_public = is_public
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, int], tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def check_url(
        self, url: str, allowed_hosts: Sequence[str], pointer: str = ""
    ) -> tuple[str, str, int, str]:
        """Static checks (no DNS): ``(scheme, host, port, path)`` of an allowed URL."""

        def deny(reason: str) -> EgressDenied:
            return EgressDenied(f"request {pointer}: egress denied: {reason}", pointer)

        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise deny(f"the URL {url!r} cannot be parsed ({error})") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise deny(f"scheme {scheme or '(none)'!r} is not allowed; only http and https are")
        if "@" in parts.netloc:
            raise deny("URLs must not carry user info (user:password@)")
        try:
            host = _normalise_host(parts.hostname or "")
        except (ValueError, UnicodeError):
            raise deny(f"{parts.netloc!r} is not a valid host name") from None
        port = port or DEFAULT_PORTS[scheme]
        if host in METADATA_HOSTS:
            raise deny(f"host {host} is a cloud metadata service, which is always refused")
        if not any(host_matches(pattern, host) for pattern in _hosts_only(allowed_hosts)):
            listed = ", ".join(allowed_hosts) or "none"
            raise deny(f"host {host} is not in the mini-app's allowedHosts ({listed})")
        if port != DEFAULT_PORTS[scheme] and not any(
            host_matches(p, f"{host}:{port}") for p in allowed_hosts if ":" in p
        ):
            raise deny(f"port {port} of {host} is not allowed; allowedHosts must name "
                       f"{host}:{port}")
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return scheme, host, port, path

    def resolve(self, host: str, port: int, pointer: str = "") -> tuple[str, ...]:
        """Resolve and vet every address; cached briefly so pinning costs no lookups."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses: tuple[str, ...] = (str(literal),)
        else:
            key = (host, port)
            now = time.monotonic()
            with self._lock:
                cached = self._cache.get(key)
            if cached and cached[0] > now:
                return cached[1]
            try:
                addresses = tuple(self.resolver(host, port))
            except OSError as error:
                raise EgressDenied(
                    f"request {pointer}: egress denied: host {host} could not be resolved "
                    f"({error})", pointer) from None
            if not addresses:
                raise EgressDenied(f"request {pointer}: egress denied: host {host} has no "
                                   "address", pointer)
        for text in addresses:
            self._vet(host, text, pointer)
        if literal is None:
            with self._lock:
                if len(self._cache) >= MAX_CACHED_NAMES:  # names from users' settings
                    self._cache.clear()                  # (subdomains) are unbounded
                self._cache[(host, port)] = (time.monotonic() + self.cache_seconds, addresses)
        return addresses

    def _vet(self, host: str, text: str, pointer: str) -> None:
        def deny(rule: str) -> EgressDenied:
            return EgressDenied(
                f"request {pointer}: egress denied: host {host} resolved to {text}, {rule}",
                pointer,
            )

        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise deny("which is not an IP address") from None
        inner = unwrap(address)
        if address in METADATA_ADDRESSES or inner in METADATA_ADDRESSES:
            raise deny("a cloud metadata address, which is always refused")
        broadcast = isinstance(inner, ipaddress.IPv4Address) and inner.is_reserved
        if inner.is_unspecified or inner.is_multicast or address.is_multicast or broadcast:
            raise deny("which is not a unicast address")
        if not self.allow_private and not self.is_public(address):
            kind = _kind(inner)
            raise deny(f"a {kind} address; only public addresses are allowed "
                       "(operators can allow private targets with EGRESS_ALLOW_PRIVATE)")

    def check(self, url: str, allowed_hosts: Sequence[str], pointer: str = "") -> Target:
        scheme, host, port, path = self.check_url(url, allowed_hosts, pointer)
        return Target(scheme, host, port, self.resolve(host, port, pointer), path)


def _hosts_only(patterns: Sequence[str]) -> list[str]:
    return [p.rsplit(":", 1)[0] if p.count(":") == 1 else p for p in patterns]


def _kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    return "non-public"
