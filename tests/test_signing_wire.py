"""The C2 signature verifies when recomputed from what ARRIVED on a real socket.

A tiny loopback server records the raw request line and headers; the signature is
recomputed from those (not from what the client meant to send), so a Host header that
differs from the signed one, a re-encoded query or a changed header value all fail.
"""

from __future__ import annotations

import hmac
import json
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import trustme

from obs_sync import signing
from obs_sync.config import ISalesConfig
from obs_sync.isales.client import ISalesClient
from obs_sync.signing import C2Auth

AK, SK = "wire-ak", "wire-secret-key"
PATH = "/rest/isales/v1/openapi/campaigns/7/queryOBSResultCode"
BODY = json.dumps(
    {
        "resultCode": "0200000",
        "returnCode": "0200000",
        "resultDesc": "ok",
        "returnDesc": "ok",
        "totalCount": 1,
        "obsCodes": [{"obsCode": "00603", "obsCodeDesc": "未接听"}],
    }
).encode()


@dataclass
class Seen:
    method: str
    target: str  # the request-target exactly as received (origin- or absolute-form)
    headers: dict[str, str]  # lowercased names, values as received
    verified: bool


@dataclass
class Capture:
    url: str
    requests: list[Seen] = field(default_factory=list)


def verify(method: str, target: str, headers: dict[str, str]) -> bool:
    """Recompute the signature from the received request, as a server would."""
    parts = headers.get("authorization", "").split("/")
    if len(parts) != 5 or parts[0] != "auth-v2" or parts[1] != AK:
        return False
    _, access_key, timestamp, names, signature = parts
    try:
        signed = {name: headers[name] for name in names.split(";")}
    except KeyError:
        return False
    split = urlsplit(target)
    query = parse_qsl(split.query, keep_blank_values=True)
    expected = signing.authorization(access_key, SK, timestamp, method, split.path, query, signed)
    return hmac.compare_digest(expected.rsplit("/", 1)[1], signature)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        ok = verify(self.command, self.path, headers)
        self.server.capture.requests.append(Seen(self.command, self.path, headers, ok))
        status, body = (200, BODY) if ok else (401, b"")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    capture: Capture


def serve(port: int, context: ssl.SSLContext | None = None) -> tuple[_Server, Capture]:
    server = _Server(("127.0.0.1", port), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if context else "http"
    capture = Capture(url=f"{scheme}://127.0.0.1:{server.server_address[1]}")
    server.capture = capture
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, capture


@pytest.fixture
def wire() -> Iterator[Capture]:
    server, capture = serve(0)
    yield capture
    server.shutdown()
    server.server_close()


def bind_or_skip(port: int, context: ssl.SSLContext | None = None) -> tuple[_Server, Capture]:
    try:
        return serve(port, context)
    except OSError as error:  # not root, or the port is taken on this machine
        pytest.skip(f"cannot bind 127.0.0.1:{port}: {error.strerror}")


def client_config(url: str, **overrides: Any) -> ISalesConfig:
    values: dict[str, Any] = {
        "base_url": url,
        "access_key": AK,
        "secret_key": SK,
        "vdn_ids": [7],
        "max_retries": 0,
        "max_requests_per_second": 0,
    }
    values.update(overrides)
    return ISalesConfig.model_validate(values)


# ----------------------------------------------------------------------------- C2Auth


def test_non_default_port_host_is_signed_as_sent(wire: Capture) -> None:
    port = urlsplit(wire.url).port
    response = requests.get(
        f"{wire.url}{PATH}",
        params={"pageSize": "10", "pageNum": "1"},
        headers={"Content-Type": "application/json; charset=UTF-8"},
        auth=C2Auth(AK, SK),
        timeout=5,
    )
    assert response.status_code == 200
    (seen,) = wire.requests
    assert seen.headers["host"] == f"127.0.0.1:{port}"
    assert seen.verified
    assert re.fullmatch(
        rf"auth-v2/{AK}/\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ/content-type;host/[0-9a-f]{{64}}",
        seen.headers["authorization"],
    )


def test_a_tampered_host_does_not_verify(wire: Capture) -> None:
    """The check can fail: a Host header other than the signed one is rejected."""
    request = requests.Request(
        "GET",
        f"{wire.url}{PATH}?pageSize=1&pageNum=1",
        headers={"Content-Type": "application/json; charset=UTF-8"},
        auth=C2Auth(AK, SK),
    ).prepare()
    request.headers["Host"] = "127.0.0.1"  # port dropped after signing
    with requests.Session() as session:
        assert session.send(request, timeout=5).status_code == 401
    assert not wire.requests[0].verified


def test_default_port_through_a_proxy(wire: Capture) -> None:
    """The scheme's default port: the client must send and sign Host without ``:80``.

    A plain-HTTP proxy receives the request with the very Host header the origin would,
    so this runs without binding port 80.
    """
    response = requests.get(
        f"http://127.0.0.1{PATH}?pageSize=10&pageNum=2",
        headers={"Content-Type": "application/json; charset=UTF-8"},
        auth=C2Auth(AK, SK),
        proxies={"http": wire.url},
        timeout=5,
    )
    assert response.status_code == 200
    (seen,) = wire.requests
    assert seen.target.startswith("http://127.0.0.1/")  # absolute-form via the proxy
    assert seen.headers["host"] == "127.0.0.1"
    assert seen.verified


def test_default_port_http_80() -> None:
    server, capture = bind_or_skip(80)
    try:
        for url in ("http://127.0.0.1", "http://127.0.0.1:80"):
            response = requests.get(
                f"{url}{PATH}?pageSize=5&pageNum=1",
                headers={"Content-Type": "application/json; charset=UTF-8"},
                auth=C2Auth(AK, SK),
                timeout=5,
            )
            assert response.status_code == 200
        assert [s.headers["host"] for s in capture.requests] == ["127.0.0.1", "127.0.0.1"]
        assert all(s.verified for s in capture.requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def test_default_port_https_443(ca: trustme.CA, tmp_path: Path) -> None:
    server, capture = bind_or_skip(443, tls_context(ca))
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    try:
        with ISalesClient(client_config("https://127.0.0.1", verify_tls=str(bundle))) as client:
            page = client.fetch_page(7, 1, 10)
        assert page.codes == (("00603", "未接听"),)
        (seen,) = capture.requests
        assert seen.headers["host"] == "127.0.0.1"
        assert seen.verified
    finally:
        server.shutdown()
        server.server_close()


def test_https_non_default_port(ca: trustme.CA, tmp_path: Path) -> None:
    server, capture = serve(0, tls_context(ca))
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    try:
        with ISalesClient(client_config(capture.url, verify_tls=str(bundle))) as client:
            client.fetch_page(7, 1, 10)
        (seen,) = capture.requests
        assert seen.headers["host"] == capture.url.removeprefix("https://")
        assert seen.verified
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------- config


def test_client_sends_the_fixed_content_type_and_no_locale_by_default(wire: Capture) -> None:
    with ISalesClient(client_config(wire.url)) as client:
        page = client.fetch_page(7, 3, 20)
    assert page.total_count == 1
    (seen,) = wire.requests
    assert seen.target == f"{PATH}?pageSize=20&pageNum=3"
    assert seen.headers["content-type"] == "application/json; charset=UTF-8"
    assert "locale" not in seen.headers
    assert "date" not in seen.headers  # the timestamp travels only inside Authorization
    assert seen.verified


@pytest.mark.parametrize(
    ("signed_headers", "expected"),
    [
        (["host"], "host"),
        (["Host", "Content-Type", "locale"], "content-type;host;locale"),
        (["content-type", "host", "user-agent"], "content-type;host;user-agent"),
    ],
)
def test_signed_headers_follow_config(
    wire: Capture, signed_headers: list[str], expected: str
) -> None:
    config = client_config(wire.url, locale="en_US", signing={"signed_headers": signed_headers})
    with ISalesClient(config) as client:
        client.fetch_page(7, 1, 50)
    (seen,) = wire.requests
    assert seen.headers["authorization"].split("/")[3] == expected
    assert seen.headers["locale"] == "en_US"
    assert seen.verified


def test_signing_a_header_never_sent_is_a_config_error(wire: Capture) -> None:
    from obs_sync.config import ConfigError, parse_config

    # Found with the rest of the configuration, before a client (or a run record) exists.
    isales = {"base_url": wire.url, "access_key": AK, "secret_key": SK, "vdn_ids": [7]}
    with pytest.raises(ConfigError, match=r"isales\.signing\.signed_headers: locale"):
        parse_config({"isales": {**isales, "signing": {"signed_headers": ["host", "locale"]}}})


@pytest.mark.parametrize(
    ("precision", "pattern"),
    [
        ("seconds", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),
        ("milliseconds", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"),
    ],
)
def test_timestamp_precision_follows_config(wire: Capture, precision: str, pattern: str) -> None:
    config = client_config(wire.url, signing={"timestamp_precision": precision})
    with ISalesClient(config) as client:
        client.fetch_page(7, 1, 50)
    (seen,) = wire.requests
    assert re.fullmatch(pattern, seen.headers["authorization"].split("/")[2])
    assert seen.verified


def test_wrong_secret_is_rejected_on_the_wire(wire: Capture) -> None:
    from obs_sync.isales.errors import AuthenticationError

    with (
        ISalesClient(client_config(wire.url, secret_key="not-the-secret")) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.fetch_page(7, 1, 50)
    assert "not-the-secret" not in str(info.value)
    assert len(wire.requests) == 1  # 401 is never retried
    assert not wire.requests[0].verified
