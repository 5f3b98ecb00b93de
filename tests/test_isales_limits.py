"""What a hostile or broken server cannot do to the client: hold it past
``isales.timeout_seconds`` (trickling bytes), make it hold more than
``isales.max_response_bytes`` (large plain bodies, gzip bombs), or crash its JSON parser
(deep nesting). A real HTTP server on loopback serves each case.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from obs_sync.config import ISalesConfig
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import DataError, TransportError
from obs_sync.isales.vendor import SUCCESS

AK, SK = "limits-access-key", "limits-secret-key-never-printed"
PAGE = json.dumps(
    {
        "resultCode": SUCCESS,
        "returnCode": SUCCESS,
        "totalCount": 1,
        "obsCodes": [{"obsCode": "00001", "obsCodeDesc": "Answered."}],
    }
).encode()

Answer = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A threaded HTTP/1.1 server on loopback answering every GET with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.requests = 0

        def do_get(handler: BaseHTTPRequestHandler) -> None:
            self.requests += 1
            with contextlib.suppress(ConnectionError):  # the client gave up: as intended
                answer(handler)

        handler = type(
            "Handler",
            (BaseHTTPRequestHandler,),
            {
                "protocol_version": "HTTP/1.1",
                "do_GET": do_get,
                "log_message": lambda *args: None,
            },
        )
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self._http.block_on_close = False
        self._http.handle_error = lambda *args: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@contextlib.contextmanager
def serving(answer: Answer) -> Iterator[Server]:
    server = Server(answer)
    try:
        yield server
    finally:
        server.close()


def config(url: str, **overrides: Any) -> ISalesConfig:
    values: dict[str, Any] = {
        "base_url": url,
        "access_key": AK,
        "secret_key": SK,
        "vdn_ids": [1],
        "timeout_seconds": 5,
        "max_retries": 1,
        "backoff_initial_seconds": 0.001,
        "backoff_max_seconds": 0.01,
        "max_requests_per_second": 0,
    }
    values.update(overrides)
    return ISalesConfig.model_validate(values)


def send(
    handler: BaseHTTPRequestHandler, body: bytes, coding: str = "", chunked: bool = False
) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json; charset=UTF-8")
    if coding:
        handler.send_header("Content-Encoding", coding)
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(body), 1000):
            piece = body[start : start + 1000]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.write(b"0\r\n\r\n")
    else:
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def raw_deflate(data: bytes) -> bytes:
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return squeezer.compress(data) + squeezer.flush()


def two_members(data: bytes) -> bytes:
    """Two gzip members back to back (RFC 1952 allows it; some servers stream that way)."""
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


# How each framing puts a payload on the wire: (Content-Encoding, chunked?, encoder).
FRAMINGS: dict[str, tuple[str, bool, Callable[[bytes], bytes]]] = {
    "content-length": ("", False, bytes),
    "chunked": ("", True, bytes),
    "gzip": ("gzip", False, gzip.compress),
    "gzip-chunked": ("gzip", True, gzip.compress),
    "deflate": ("deflate", False, zlib.compress),
    "raw-deflate": ("deflate", False, raw_deflate),
    "gzip-two-members": ("gzip", False, two_members),
}

LIMIT = 4096


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("extra", [0, 1], ids=["at-limit", "one-byte-over"])
def test_max_response_bytes_counts_decompressed_bytes(framing: str, extra: int) -> None:
    coding, chunked, encode = FRAMINGS[framing]
    payload = PAGE + b" " * (LIMIT + extra - len(PAGE))  # JSON allows trailing spaces
    assert len(payload) == LIMIT + extra
    with serving(lambda h: send(h, encode(payload), coding, chunked)) as server:
        with ISalesClient(config(server.url, max_response_bytes=LIMIT)) as isales:
            if extra == 0:
                page = isales.fetch_page(1, 1, 50)
                assert page.codes == (("00001", "Answered."),)
                return
            with pytest.raises(DataError) as info:
                isales.fetch_page(1, 1, 50)
        assert server.requests == 1  # a body too large is not asked for again
    assert "isales.max_response_bytes" in str(info.value)
    assert f"({LIMIT} bytes)" in str(info.value)
    assert not info.value.retryable


def test_max_response_bytes_is_a_documented_key_with_bounds() -> None:
    assert config("http://h:1").max_response_bytes == 8 * 1024 * 1024
    for bad in (1023, 1_000_000_001):
        with pytest.raises(ValueError, match="max_response_bytes"):
            config("http://h:1", max_response_bytes=bad)
    assert config("http://h:1", max_response_bytes=1024).max_response_bytes == 1024


def test_corrupt_gzip_is_a_decoding_failure() -> None:
    broken = gzip.compress(PAGE)[:-12] + b"garbage-not-gzip"
    with (
        serving(lambda h: send(h, broken, "gzip")) as server,
        ISalesClient(config(server.url)) as isales,
        pytest.raises(TransportError) as info,
    ):
        isales.fetch_page(1, 1, 50)
    assert info.value.category == "decoding" and info.value.attempts == 2


def test_deeply_nested_json_is_a_data_error_not_a_recursion_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    nested_object = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    for body in (deep, nested_object):
        with serving(lambda h, body=body: send(h, body)) as server:
            with ISalesClient(config(server.url)) as isales, pytest.raises(DataError) as info:
                isales.fetch_page(1, 1, 50)
            assert server.requests == 1  # the same body again would not help
        assert "nests too deeply" in str(info.value)


# ----------------------------------------------------------------------------- memory

INFLATED = 256 * 1024 * 1024


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """256 MiB of zeros, gzip-compressed to about 254 KiB."""
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [squeezer.compress(block) for _ in range(INFLATED // len(block))]
    return b"".join([*parts, squeezer.flush()])


def endless(handler: BaseHTTPRequestHandler) -> None:
    """A chunked plain body that never ends (until the client hangs up; 1 GiB at most)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    piece = b" " * 65536
    for _ in range(16384):
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))


def peak_rss_of_fetch(tmp_path: Path, url: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run ``obs-sync fetch`` against ``url`` in a child process; its peak RSS in bytes
    (getrusage(RUSAGE_CHILDREN) read in a wrapper process, so no other child counts)."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "isales:\n"
        f"  base_url: {url}\n"
        f"  access_key: {AK}\n"
        "  secret_key: ${ISALES_SECRET_KEY}\n"
        "  vdn_ids: [1]\n"
        "  max_retries: 0\n",
        encoding="utf-8",
    )
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(done.returncode)\n"
    )
    command = [sys.executable, "-m", "obs_sync", "--config", str(path), "fetch", "--vdn", "1"]
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        env={**os.environ, "ISALES_SECRET_KEY": SK},
        timeout=120,
    )
    return int(done.stdout.split()[-1]) * 1024, done  # ru_maxrss is in KiB on Linux


@pytest.mark.parametrize("body", ["gzip-bomb", "endless-plain"])
def test_a_huge_body_fails_the_request_with_bounded_memory(
    body: str, gzip_bomb: bytes, tmp_path: Path
) -> None:
    answer: Answer = endless if body == "endless-plain" else lambda h: send(h, gzip_bomb, "gzip")
    with serving(answer) as server:
        peak, done = peak_rss_of_fetch(tmp_path, server.url)
    assert done.returncode == 1, done.stderr
    assert "isales.max_response_bytes" in done.stderr.strip().splitlines()[-1]
    # The default limit is 8 MiB: the process stays far below the 256 MiB it would inflate
    # to (unbounded, the same fetch peaked above 1 GiB).
    assert peak < 200 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------- time


def trickle_body(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte of the body every 0.3 s (for up to a minute)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(PAGE) + 1000))
    handler.end_headers()
    handler.wfile.flush()
    for _ in range(200):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.3)


def trickle_headers(handler: BaseHTTPRequestHandler) -> None:
    """The status line and headers one byte every 0.3 s (for up to a minute)."""
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"x" * 500 + b"\r\n\r\n"
    for byte in head:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.3)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("answer", [trickle_body, trickle_headers], ids=["body", "headers"])
def test_a_trickling_server_cannot_outlast_the_timeout(answer: Answer) -> None:
    # Each byte arrives well within the socket timeout, so only a deadline over the whole
    # attempt ends it. (The outer pytest timeout only keeps a regression from hanging.)
    events: list[str] = []
    settings = config("http://127.0.0.1:1", timeout_seconds=1, max_retries=1)
    with serving(answer) as server:
        settings = settings.model_copy(update={"base_url": server.url})
        with (
            ISalesClient(settings, on_request=lambda e: events.append(e.outcome)) as isales,
            pytest.raises(TransportError) as info,
        ):
            isales.fetch_page(1, 1, 50)
    assert info.value.category == "timeout" and info.value.attempts == 2
    assert "isales.timeout_seconds" in str(info.value)
    assert events == ["timeout", "timeout"]
