"""The one module that opens sockets to providers (via urllib3).

It connects to an address the egress policy already checked — never resolving
the name again — while the ``Host`` header, TLS SNI and certificate check use
the host name. Connections are pooled per checked address, so pinning costs no
reconnects. Answers are streamed and decoded under a size cap and a wall-clock
deadline. It never follows redirects or retries: :mod:`host.engine.client`
decides those.

urllib3 is used directly rather than through ``requests`` because the host
needs exactly these controls (pinned pools, no proxy from the environment,
no hidden redirects or retries, a streamed decoded-size cap), which ``requests``
would have to be worked around to get.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from .egress import Target

__all__ = ["RawResponse", "SendError", "Transport"]

CHUNK = 64 * 1024
HOST_CONTROLLED = frozenset({"host", "content-length", "transfer-encoding", "connection",
                             "keep-alive", "upgrade", "te", "trailer", "proxy-connection",
                             "expect"})

# urllib3 logs each request line at DEBUG, query string included, and a query
# may carry a credential (``?key=[[apiKey]]``): its pool logger stays quiet.
logging.getLogger("urllib3.connectionpool").setLevel(logging.WARNING)


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class SendError(Exception):
    """A failed exchange. ``kind`` is ``connect`` (nothing was sent), ``timeout``,
    ``too_large`` or ``broken`` (the request may have reached the provider)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Transport:
    """Pinned, pooled HTTP/1.1 connections; thread-safe."""

    def __init__(self, max_pools: int = 128, pool_size: int = 8) -> None:
        self._pools: OrderedDict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self._max_pools = max_pools
        self._pool_size = pool_size

    def _pool(self, target: Target, address: str) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.host, target.port, address)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            if target.scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address, target.port, maxsize=self._pool_size, block=False, retries=False,
                    cert_reqs="CERT_REQUIRED", server_hostname=target.host,
                    assert_hostname=target.host,
                )
            else:
                pool = urllib3.HTTPConnectionPool(
                    address, target.port, maxsize=self._pool_size, block=False, retries=False,
                )
            self._pools[key] = pool
            while len(self._pools) > self._max_pools:
                _, old = self._pools.popitem(last=False)
                old.close()
            return pool

    def send(
        self,
        target: Target,
        method: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        deadline: float,
        connect_timeout: float,
        max_bytes: int,
    ) -> RawResponse:
        started = time.monotonic()
        wire_headers: dict[str, str | bytes] = {"Accept-Encoding": "gzip, deflate",
                                                "User-Agent": "Minihost"}
        for name, value in headers:
            if name.lower() in HOST_CONTROLLED:
                continue  # the lint refuses these; a plugin's hook must not add them either
            # Header values go out as UTF-8 bytes: http.client would refuse anything
            # outside Latin-1, and providers that accept non-ASCII expect UTF-8.
            wire_headers[name] = value if value.isascii() else value.encode()
        wire_headers["Host"] = target.host_header  # always the checked host
        last: SendError | None = None
        for address in target.addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SendError("timeout", "the deadline passed before the request was sent")
            timeout = urllib3.Timeout(connect=min(connect_timeout, remaining), read=remaining)
            pool = self._pool(target, address)
            try:
                response = pool.urlopen(
                    method, target.path, body=body,
                    headers=wire_headers,  # type: ignore[arg-type]  # bytes values go as they are
                    redirect=False,
                    retries=False, preload_content=False, decode_content=True,
                    assert_same_host=False, timeout=timeout,
                )
            except (NewConnectionError, ConnectTimeoutError) as error:
                last = SendError("connect", f"could not connect to {address}: {_reason(error)}")
                continue
            except SSLError as error:
                raise SendError("connect", f"TLS failed with {target.host}: {_reason(error)}"
                                ) from None
            except ReadTimeoutError:
                raise SendError("timeout", "no answer before the deadline") from None
            except HTTPError as error:
                raise SendError("broken", f"the connection broke: {_reason(error)}") from None
            return self._read(response, started, deadline, max_bytes)
        assert last is not None
        raise last

    def _read(self, response: urllib3.BaseHTTPResponse, started: float, deadline: float,
              max_bytes: int) -> RawResponse:
        try:
            length = response.headers.get("Content-Length")
            if (length and length.isdigit() and int(length) > max_bytes
                    and not response.headers.get("Content-Encoding")):
                raise SendError("too_large", f"the answer announces {int(length)} bytes, more "
                                             f"than the {max_bytes}-byte limit")
            chunks = []
            total = 0
            while True:
                if time.monotonic() > deadline:
                    raise SendError("timeout", "the answer did not finish before the deadline")
                chunk = response.read1(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise SendError("too_large", f"the decoded answer passed the {max_bytes}-"
                                                 "byte limit")
                chunks.append(chunk)
        except SendError:
            response.close()
            response.release_conn()
            raise
        except ReadTimeoutError:
            response.close()
            response.release_conn()
            raise SendError("timeout", "the answer did not finish before the deadline") from None
        except HTTPError as error:
            response.close()
            response.release_conn()
            raise SendError("broken", f"the answer broke off: {_reason(error)}") from None
        response.release_conn()
        return RawResponse(
            status=response.status,
            headers=list(response.headers.items()),
            body=b"".join(chunks),
            elapsed=time.monotonic() - started,
        )

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _reason(error: Exception) -> str:
    text = str(error)
    return text.split(": ", 1)[-1][:200] if text else type(error).__name__
