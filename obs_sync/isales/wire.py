"""The HTTP wire: signed GETs through one shared, thread-safe connection pool.

Prepared requests go straight to a ``requests`` transport adapter (by default a
:class:`DeadlineAdapter`: a urllib3 pool sized for ``isales.max_concurrency``). A Session
would add per-request header, cookie and environment merging that this stateless, signed
API does not need. The adapter is a parameter: a test or another transport can pass its own.

Two bounds hold for every attempt, whatever the server does:

- **Time.** ``isales.timeout_seconds`` bounds the whole attempt: connecting, the headers
  and the body. A socket timeout alone bounds only the gap between two packets, so a
  server trickling one byte at a time would never time out; here every read of the
  response (headers included) gets only the time left until the attempt's deadline, and
  the deadline is checked again between chunks of the body.
- **Memory.** The body is streamed and counted after decompression, in chunks;
  ``isales.max_response_bytes`` stops it (plain, gzip or deflate) before it is held whole,
  so a small gzip bomb cannot inflate into gigabytes.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import socket
import threading
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.auth import AuthBase
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse as U3Response

log = logging.getLogger(__package__)  # "obs_sync.isales", as logs have always said

# Raw bytes read from the socket per step; decompressed output per step is bounded by
# what is left of isales.max_response_bytes.
_CHUNK = 64 * 1024


class DeadlineExceeded(TimeoutError):
    """The attempt's isales.timeout_seconds ran out (a timeout, whatever the phase)."""


class BodyTooLarge(Exception):
    """The response body (decompressed) is larger than isales.max_response_bytes."""

    def __init__(self, limit: int, coding: str) -> None:
        super().__init__(f"response body larger than {limit} bytes")
        self.limit = limit
        self.coding = coding  # "" for a plain body


class UndecodableBody(ValueError):
    """The body's Content-Encoding is unknown, or its compressed data is corrupt."""

    def __init__(self, coding: str, detail: str) -> None:
        super().__init__(f"the {coding} response body cannot be decoded: {detail}")
        self.coding = coding


@dataclass(frozen=True)
class Reply:
    """One response: its status, headers and whole (bounded) body."""

    status: int
    headers: Mapping[str, str]
    content: bytes


# ---------------------------------------------------------------------------- the deadline

# The running attempt's deadline (time.monotonic()), per thread: a connection is used by
# one thread at a time, and the response it creates reads the deadline from here.
_attempt = threading.local()


class _DeadlineReader(io.RawIOBase):
    """The socket file a response is read from, each read given only the time left."""

    def __init__(self, raw: Any, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline
        self._timeout = sock.gettimeout()  # restored for the pooled connection's next use

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the attempt's deadline passed")
        self._sock.settimeout(left)
        count: int = self._raw.readinto(buffer)
        return count

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
            with contextlib.suppress(OSError):  # (the socket may be closed already)
                self._sock.settimeout(self._timeout)
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading its socket with the attempt's deadline (if any)."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        deadline: float | None = getattr(_attempt, "deadline", None)
        if deadline is not None and isinstance(self.fp, io.BufferedReader):
            self.fp = io.BufferedReader(_DeadlineReader(self.fp.detach(), sock, deadline))


class _HTTPConnection(HTTPConnection):
    response_class = _DeadlineResponse


class _HTTPSConnection(HTTPSConnection):
    response_class = _DeadlineResponse


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connections read responses within the attempt's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # (a SOCKS manager has its own pools)
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


# ---------------------------------------------------------------------------- the body


class _Inflater:
    """Decompresses gzip/deflate with every step's output bounded (zlib's max_length)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        # gzip: header and trailer checked; deflate: zlib-wrapped as RFC 9110 says, with a
        # fallback to the raw deflate some servers send.
        self._wbits = 16 + zlib.MAX_WBITS if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> Iterator[bytes]:
        """The decompressed output of ``data``, in pieces of at most ``room`` bytes."""
        while data:
            try:
                out = self._zlib.decompress(data, room)
            except zlib.error as error:
                if self._started or self._wbits != zlib.MAX_WBITS:
                    raise UndecodableBody(self.coding, str(error)) from error
                self._wbits = -zlib.MAX_WBITS
                self._zlib = zlib.decompressobj(self._wbits)
                continue
            self._started = True
            data = self._zlib.unconsumed_tail
            if self._zlib.eof and self._zlib.unused_data:  # another gzip member follows
                data = self._zlib.unused_data
                self._zlib = zlib.decompressobj(self._wbits)
            yield out

    def end(self) -> None:
        if self._started and not self._zlib.eof:
            raise UndecodableBody(self.coding, "the compressed data ends early")


def read_body(
    chunks: Iterable[bytes], coding: str, limit: int, deadline: float | None = None
) -> bytes:
    """The decompressed body of ``chunks``; BodyTooLarge past ``limit`` bytes (counted as
    they inflate, so no more than ``limit`` + one chunk is ever held), DeadlineExceeded
    once ``deadline`` (time.monotonic()) has passed between chunks."""
    inflater = None if coding in ("", "identity") else _Inflater(coding)
    body = bytearray()
    for chunk in chunks:
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("the attempt's deadline passed")
        pieces = [chunk] if inflater is None else inflater.feed(chunk, limit + 1 - len(body))
        for piece in pieces:
            body += piece
            if len(body) > limit:
                raise BodyTooLarge(limit, coding)
    if inflater is not None:
        inflater.end()
    return bytes(body)


def _coding(headers: Mapping[str, str]) -> str:
    coding = headers.get("Content-Encoding", "").strip().lower()
    if coding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise UndecodableBody(coding, "unsupported Content-Encoding (asked for gzip or deflate)")
    return coding


class Wire:
    """Sends signed GETs to one base URL; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        auth: AuthBase,
        timeout: float,
        max_response_bytes: int,
        verify_tls: bool | str,
        pool_size: int,
        adapter: BaseAdapter | None = None,
    ) -> None:
        self._headers = dict(headers)
        self._auth = auth
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        if verify_tls is False:
            # One warning per client, not one per request (urllib3 would warn on each).
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            log.warning(
                "isales.verify_tls is false: the server's TLS certificate is NOT verified "
                "(set it to the CA bundle path instead)"
            )
        # Environment proxies / CA bundle are resolved once here rather than per request
        # (a Session does that lookup on every call).
        probe = requests.Session()
        env = probe.merge_environment_settings(base_url, {}, None, verify_tls, None)
        probe.close()
        env_verify = env["verify"]
        self._verify: bool | str = verify_tls if env_verify is None else env_verify
        self._proxies: dict[str, str] = dict(env["proxies"])
        # Normalise the base URL once the way requests would (IDNA host, quoting), so each
        # request can skip URL preparation.
        base = requests.PreparedRequest()
        base.prepare_url(base_url + "/", None)
        self.base_url = (base.url or base_url).rstrip("/")
        self.adapter: BaseAdapter = (
            adapter
            if adapter is not None
            else DeadlineAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        )

    def close(self) -> None:
        self.adapter.close()

    def get(self, url: str) -> Reply:
        """One signed GET within the timeout, its body read in full up to the size limit.

        Raises what the transport raises (requests and urllib3 errors, OSError),
        :class:`DeadlineExceeded`, :class:`BodyTooLarge` or :class:`UndecodableBody`.
        """
        request = requests.PreparedRequest()
        request.method = "GET"
        request.url = url
        request.headers = CaseInsensitiveDict(self._headers)
        request.body = None
        request.hooks = {"response": []}
        self._auth(request)
        deadline = time.monotonic() + self.timeout
        _attempt.deadline = deadline
        try:
            response = self.adapter.send(
                request,
                stream=True,
                timeout=self.timeout,
                verify=self._verify,
                proxies=self._proxies,
            )
            try:
                content = self._read(response, deadline)
            finally:
                response.close()  # an unread rest closes the connection, not the pool
        finally:
            _attempt.deadline = None
        return Reply(response.status_code, response.headers, content)

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        raw = response.raw
        if not isinstance(raw, U3Response):
            # An adapter that answers from memory: its content is already whole.
            return read_body([response.content], "", self.max_response_bytes)
        coding = _coding(response.headers)
        declared = response.headers.get("Content-Length", "")
        if not coding and declared.isdigit() and int(declared) > self.max_response_bytes:
            raise BodyTooLarge(self.max_response_bytes, coding)  # no need to read it
        # decode_content=False: the bytes are inflated by read_body, with a bound.
        chunks = raw.stream(_CHUNK, decode_content=False)
        return read_body(chunks, coding, self.max_response_bytes, deadline)
