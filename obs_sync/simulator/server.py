"""The simulator's HTTP server: the iSales URL plus the ``/_sim/`` control API.

``GET /rest/isales/v1/openapi/campaigns/{vdnId}/queryOBSResultCode?pageSize=&pageNum=``
is answered like the vendor does (see docs/simulator.md for every choice made where the
vendor says nothing). Threads per connection, HTTP/1.1 keep-alive, each response written
with a single send and TCP_NODELAY (no Nagle/delayed-ACK stalls), per-request work O(page).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from obs_sync.signing import host_header
from obs_sync.simulator.auth import verify
from obs_sync.simulator.code_lists import ROUTE as CODE_LIST_ROUTE
from obs_sync.simulator.code_lists import CodeLists, code_lists
from obs_sync.simulator.control import handle as handle_control
from obs_sync.simulator.data import DEFAULT_LOCALE, SimulatorData
from obs_sync.simulator.endpoint import ApiRequest, Endpoint, Outcome, Reply
from obs_sync.simulator.faults import FaultSet
from obs_sync.simulator.keys import AccessKey, KeyRing
from obs_sync.simulator.protocol import (
    API_PATH,
    JSON_TYPE,
    ParamError,
    failure_body,
    is_json_content_type,
    parse_vdn,
)
from obs_sync.simulator.result_codes import result_codes
from obs_sync.simulator.stats import DROPPED, RequestRecord, SimulatorStats

logger = logging.getLogger("obs_sync.simulator")

DEMO_ACCESS_KEY = "demo-access-key"
DEMO_SECRET_KEY = "demo-secret-key"
DEFAULT_SIGNED_HEADERS = ("content-type", "host")
DEFAULT_MAX_SKEW_SECONDS = 900.0
MAX_BODY = 10 * 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    simulator: Simulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): slow on some hosts.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (OSError, ssl.SSLError)):
            return  # clients going away, TLS handshakes failing: not our bug
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "iSalesSimulator/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.simulator._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.simulator._track(self.connection, add=False)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()  # in this thread, not the accept loop
            except (OSError, ssl.SSLError):
                self.close_connection = True
                return
        super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.simulator.log_requests:
            logger.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # -- plumbing ---------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = JSON_TYPE,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        reason = self.responses.get(status, ("Unknown",))[0]
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            body = b""
        self._record()
        self.wfile.write(head + body)  # one send
        if self.server.simulator.log_requests:
            self.log_request(status, len(body))

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode())

    def _read_body(self) -> bytes | None:
        if self._h.get("transfer-encoding"):
            self.close_connection = True
            self._send_json(411, {"error": "send a Content-Length, not chunked encoding"})
            return None
        length_text = self._h.get("content-length", "0") or "0"
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send_json(400, {"error": f"bad Content-Length {length_text!r}"})
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            path, query = parts.path, parts.query
        else:
            path, _, query = target.partition("?")
        # Lower-cased once (first occurrence wins): email.Message.get is a linear scan.
        self._h: dict[str, str] = {}
        for name, value in self.headers.items():
            self._h.setdefault(name.lower(), value)
        body = self._read_body()
        if body is None:
            return
        if path == "/_sim" or path.startswith("/_sim/"):
            status, payload = handle_control(self.server.simulator, self.command, path, query, body)
            self._send_json(status, payload)
            return
        for pattern, endpoint in ENDPOINTS:
            match = pattern.match(path)
            if match is not None:
                self._serve_api(endpoint, match, path, query, body)
                return
        self._send_json(404, {"error": f"no such resource: {path}"})

    # -- the iSales API ---------------------------------------------------------------

    def _serve_api(
        self, endpoint: Endpoint, match: re.Match[str], path: str, query: str, body: bytes
    ) -> None:
        sim = self.server.simulator
        sim.stats.begin()
        self._outcome: Outcome | None = Outcome()
        try:
            request = self._checked(sim, self._outcome, match, path, query, body)
            if request is not None:
                self._answer(endpoint(request))
        finally:
            self._record()

    def _record(self) -> None:
        """Count the request BEFORE its response leaves, so a client that got the
        response always sees it in the stats."""
        outcome, self._outcome = getattr(self, "_outcome", None), None
        if outcome is None:
            return
        self.server.simulator.stats.end(
            RequestRecord(
                at=time.monotonic(),
                vdn_id=outcome.vdn_id,
                page_num=outcome.page_num,
                page_size=outcome.page_size,
                status=outcome.status,
                result_code=outcome.result_code,
                locale=self._h.get("locale"),
                host=self._h.get("host"),
                fault=outcome.fault,
                access_key=outcome.access_key,
            ),
            outcome.codes,
        )

    def _answer(self, reply: Reply) -> None:
        out = self._outcome
        if out is not None:
            out.status = DROPPED if reply.drop else reply.status
        if reply.drop:
            self.close_connection = True
            self._record()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(reply.status, reply.body, reply.content_type, reply.headers)

    def _checked(
        self,
        sim: Simulator,
        out: Outcome,
        match: re.Match[str],
        path: str,
        query: str,
        body: bytes,
    ) -> ApiRequest | None:
        """The checks every iSales endpoint shares, in order (docs/simulator.md): the
        request for the endpoint, or None when one of them already answered."""
        if self.command != "GET":
            out.status = 405
            self._send(405, b'{"error":"use GET"}', headers=[("Allow", "GET")])
            return None
        reason = verify(
            method=self.command,
            raw_path=path,
            raw_query=query,
            header=self._h.get,
            credentials=sim.keys.secrets,
            required_headers=sim.required_signed_headers,
            max_skew_seconds=sim.max_clock_skew_seconds,
            now=time.time(),
            body=body.decode("utf-8", "replace"),
        )
        if reason is not None:
            out.status = 401
            self._send_json(401, {"error": "Unauthorized", "reason": reason})
            return None
        # verify() accepted it, so the header is auth-v2/{AK}/...
        access_key = out.access_key = self._h["authorization"].strip().split("/")[1]
        if not is_json_content_type(self._h.get("content-type")):
            out.status = 415
            self._send_json(
                415,
                {"error": "Content-Type must be application/json; charset=UTF-8"},
            )
            return None
        try:
            vdn_id = parse_vdn(match.group("vdn"))
        except ParamError as error:
            out.result_code = error.code
            self._send(200, failure_body(error.code, error.detail))
            return None
        out.vdn_id = vdn_id
        key = sim.keys.get(access_key)
        if key is None or not key.grants(vdn_id):
            # The vendor documents no answer for a key without access to a VDN: like a key
            # without permission for the API, HTTP 403 (docs/simulator.md).
            out.status = 403
            self._send_json(
                403,
                {
                    "error": "Forbidden",
                    "reason": f"access key {access_key!r} is not granted VDN {vdn_id}",
                },
            )
            return None
        return ApiRequest(
            sim=sim,
            out=out,
            match=match,
            query=query,
            vdn_id=vdn_id,
            access_key=access_key,
            locale=sim.data.served_locale(self._h.get("locale")),
        )


class Simulator:
    """The bundled CC-iSales stand-in. ``start()``/``stop()`` or use as a context manager.

    ``signed_headers``: the header names every request must sign (default content-type
    and host; ``()`` requires none beyond what the client chooses).
    ``max_clock_skew_seconds``: None disables the timestamp window.
    """

    def __init__(
        self,
        data: SimulatorData | None = None,
        *,
        access_key: str = DEMO_ACCESS_KEY,
        secret_key: str = DEMO_SECRET_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,
        latency_seconds: float = 0.0,
        signed_headers: Iterable[str] | None = None,
        max_clock_skew_seconds: float | None = DEFAULT_MAX_SKEW_SECONDS,
        credentials: Mapping[str, str] | None = None,
        vdn_ids: Iterable[int] | None = None,
        keys: Iterable[AccessKey] = (),
        log_requests: bool = False,
    ) -> None:
        self.data = data if data is not None else SimulatorData.generate()
        self.access_key = access_key
        primary = AccessKey(access_key, secret_key, None if vdn_ids is None else frozenset(vdn_ids))
        extra = [AccessKey(ak, sk) for ak, sk in (credentials or {}).items()]
        self.keys = KeyRing([primary, *extra, *keys])
        self.host = host
        self._requested_port = port
        self.tls = tls
        self.latency_seconds = latency_seconds
        names = DEFAULT_SIGNED_HEADERS if signed_headers is None else signed_headers
        self.required_signed_headers = frozenset(n.strip().lower() for n in names)
        self.max_clock_skew_seconds = max_clock_skew_seconds
        self.log_requests = log_requests
        self.faults = FaultSet()
        self.code_lists = CodeLists(self.data)  # display and business results
        self.stats = SimulatorStats()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def __repr__(self) -> str:  # never the secret
        where = self.url if self._server else "not started"
        return f"Simulator({where}, access_key={self.access_key!r})"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (``https`` with TLS)."""
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def host_header(self) -> str:
        return host_header(self.url)

    def api_url(self, vdn_id: int | str) -> str:
        return f"{self.url}/rest/isales/v1/openapi/campaigns/{vdn_id}/queryOBSResultCode"

    def start(self) -> Simulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        server_class = _Server
        if ":" in self.host:

            class _Server6(_Server):
                address_family = socket.AF_INET6

            server_class = _Server6
        server = server_class((self.host, self._requested_port), _Handler)
        server.simulator = self
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls[0], self.tls[1])
            # Handshake in the connection's thread so one slow client cannot block accept().
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"isales-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:  # wake handler threads parked on keep-alive reads
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
                self.stats.connection_opened()
            else:
                self._connections.discard(connection)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, cut short when the simulator stops."""
        self._stopping.wait(seconds)


# The iSales endpoints, tried in order: a pattern on the raw path whose group "vdn" is the
# vdnId segment, and the function answering it after the shared checks (_Handler._checked).
# A new endpoint is a function in its own module (obs_sync.simulator.endpoint) + a line here.
ENDPOINTS: tuple[tuple[re.Pattern[str], Endpoint], ...] = (
    (API_PATH, result_codes),
    (CODE_LIST_ROUTE, code_lists),  # display and business results
)

__all__ = ["DEFAULT_LOCALE", "ENDPOINTS", "Simulator"]
