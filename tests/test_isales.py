"""End to end: the snapshot client over real HTTP against the bundled simulator."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trustme

from obs_sync.config import ISalesConfig
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import (
    AuthenticationError,
    DataError,
    HTTPStatusError,
    TransportError,
    VendorError,
)
from obs_sync.isales.events import RequestEvent
from obs_sync.simulator import Fault, Simulator, SimulatorData

AK, SK = "test-access-key", "test-secret-key-do-not-print"
CODES = 120  # per VDN: 3 pages of 50


@pytest.fixture
def data() -> SimulatorData:
    return SimulatorData.generate(vdn_ids=range(1, 7), codes_per_vdn=CODES, seed=7)


@pytest.fixture
def server(data: SimulatorData) -> Iterator[Simulator]:
    with Simulator(data, access_key=AK, secret_key=SK) as sim:
        yield sim


def make_config(url: str, **overrides: Any) -> ISalesConfig:
    values: dict[str, Any] = {
        "base_url": url,
        "access_key": AK,
        "secret_key": SK,
        "vdn_ids": ["1-6"],
        "page_size": 50,
        "timeout_seconds": 5,
        "max_retries": 3,
        "backoff_initial_seconds": 0.001,  # keep the suite fast
        "backoff_max_seconds": 0.01,
        "max_requests_per_second": 0,
    }
    values.update(overrides)
    return ISalesConfig.model_validate(values)


def served(sim: Simulator, expected: int) -> int:
    """Requests the simulator recorded, once it has caught up with ``expected``.

    It records a request after answering it, so the client can be a moment ahead. A
    short settle time after reaching ``expected`` lets any surplus request show up too.
    """
    deadline = time.monotonic() + 5
    while sim.stats.requests < expected and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    return sim.stats.requests


class Events:
    """Collects on_request events (thread-safe)."""

    def __init__(self) -> None:
        self.items: list[RequestEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: RequestEvent) -> None:
        with self._lock:
            self.items.append(event)

    @property
    def outcomes(self) -> list[str]:
        return [e.outcome for e in self.items]


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def client(server: Simulator, events: Events) -> Iterator[ISalesClient]:
    with ISalesClient(make_config(server.url), on_request=events) as isales:
        yield isales


# ----------------------------------------------------------------------------- paging


def test_pages_until_total_count(
    client: ISalesClient, server: Simulator, data: SimulatorData, events: Events
) -> None:
    snapshot = client.fetch_snapshot(3)
    assert snapshot.complete and snapshot.incomplete_reason is None
    assert dict(snapshot.codes) == data.codes(3)
    assert all(isinstance(code, str) for code in snapshot.codes)
    stats = snapshot.stats
    assert (stats.pages, stats.requests, stats.retries, stats.restarts) == (3, 3, 0, 0)
    assert stats.total_count == CODES
    assert stats.seconds > 0
    assert served(server, 3) == 3
    assert [(r.page_num, r.page_size) for r in server.stats.recent] == [(1, 50), (2, 50), (3, 50)]
    assert events.outcomes == ["ok", "ok", "ok"]
    assert {e.vdn_id for e in events.items} == {3} and all(e.status == 200 for e in events.items)


def test_exact_multiple_checks_the_page_past_the_end(
    server: Simulator, data: SimulatorData
) -> None:
    """A full last page completing totalCount costs one more request (which must be
    empty): otherwise a totalCount understated by whole pages would pass as complete."""
    data.set_codes(2, {f"{i:05d}": f"code {i}" for i in range(100)})
    with ISalesClient(make_config(server.url)) as isales:
        snapshot = isales.fetch_snapshot(2)
    assert snapshot.complete and len(snapshot.codes) == 100
    assert snapshot.stats.requests == 3
    assert [r.page_num for r in server.stats.recent] == [1, 2, 3]


def test_a_short_last_page_needs_no_extra_request(server: Simulator, data: SimulatorData) -> None:
    data.set_codes(2, {f"{i:05d}": f"code {i}" for i in range(99)})
    with ISalesClient(make_config(server.url)) as isales:
        snapshot = isales.fetch_snapshot(2)
    assert snapshot.complete and snapshot.stats.requests == 2


def test_small_page_size_and_first_seen_order(server: Simulator, data: SimulatorData) -> None:
    codes = {"00605": "busy", "00604": "rejected", "00603": "no answer", "00602": "no ACD"}
    data.set_codes(4, codes)
    with ISalesClient(make_config(server.url, page_size=1)) as isales:
        snapshot = isales.fetch_snapshot(4)
    assert snapshot.complete and snapshot.stats.pages == 5  # the 5th: nothing past the end
    assert list(snapshot.codes.items()) == list(data.codes(4).items())


def test_vdn_without_codes_is_a_complete_empty_snapshot(
    server: Simulator, data: SimulatorData
) -> None:
    data.set_codes(5, {})
    with ISalesClient(make_config(server.url)) as isales:
        snapshot = isales.fetch_snapshot(5)
    assert snapshot.complete and dict(snapshot.codes) == {}
    assert (snapshot.stats.pages, snapshot.stats.total_count) == (1, 0)


def test_page_cap_gives_an_incomplete_snapshot(server: Simulator) -> None:
    with ISalesClient(make_config(server.url, max_pages=2)) as isales:
        snapshot = isales.fetch_snapshot(1)
    assert not snapshot.complete
    assert "isales.max_pages" in (snapshot.incomplete_reason or "")
    assert len(snapshot.codes) == 100 and served(server, 2) == 2


def test_empty_page_ends_paging_incomplete(client: ISalesClient, server: Simulator) -> None:
    server.faults.add(Fault(kind="empty_page", page_num=2))
    snapshot = client.fetch_snapshot(1)
    assert not snapshot.complete
    assert snapshot.incomplete_reason == "page 2 was empty after 50 of 120 codes"
    assert len(snapshot.codes) == 50 and served(server, 2) == 2


# ----------------------------------------------------------------------------- totalCount drift


def test_drift_once_restarts_and_completes(client: ISalesClient, server: Simulator) -> None:
    server.faults.add(Fault(kind="total_drift", delta=1, times=1))
    snapshot = client.fetch_snapshot(1)
    assert snapshot.complete
    assert snapshot.stats.restarts == 1
    assert snapshot.stats.pages == 2 + 3  # stopped at the drifting page 2, then 3 clean pages
    assert len(snapshot.codes) == CODES


def test_persistent_drift_is_incomplete(client: ISalesClient, server: Simulator) -> None:
    server.faults.add(Fault(kind="total_drift", delta=-1, times=None))
    snapshot = client.fetch_snapshot(1)
    assert not snapshot.complete
    assert "totalCount changed while paging (120 -> 119)" in (snapshot.incomplete_reason or "")
    assert snapshot.stats.restarts == 1  # only once


def test_real_data_change_mid_paging_restarts(server: Simulator, data: SimulatorData) -> None:
    """A code added between two page requests: the restart picks it up, complete."""
    added = threading.Event()

    def add_code_after_first_page(event: RequestEvent) -> None:
        if not added.is_set():
            added.set()
            data.set_code(1, "99999", "added while paging")

    with ISalesClient(make_config(server.url), on_request=add_code_after_first_page) as isales:
        snapshot = isales.fetch_snapshot(1)
    assert snapshot.complete and snapshot.stats.restarts == 1
    assert snapshot.codes["99999"] == "added while paging"
    assert len(snapshot.codes) == CODES + 1 == snapshot.stats.total_count


# ----------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault(kind="http_status", status=500), "http_error"),
        (Fault(kind="http_status", status=502), "http_error"),
        (Fault(kind="http_status", status=503), "http_error"),
        (Fault(kind="http_status", status=429, retry_after=0), "http_error"),
        (Fault(kind="non_json"), "non_json"),
        (Fault(kind="drop_connection"), "connection_error"),
        (Fault(kind="slow", delay_seconds=2.0), "timeout"),
    ],
    ids=lambda value: getattr(value, "kind", value),
)
def test_transient_fault_is_retried_and_recovered(
    server: Simulator, events: Events, fault: Fault, outcome: str
) -> None:
    server.faults.add(Fault(**{**fault.__dict__, "page_num": 2, "times": 2}))
    # Only the slow-response case needs a short timeout; the others keep a safe one.
    config = make_config(server.url, timeout_seconds=0.5 if fault.kind == "slow" else 5)
    with ISalesClient(config, on_request=events) as isales:
        snapshot = isales.fetch_snapshot(1)
    assert snapshot.complete and len(snapshot.codes) == CODES
    assert (snapshot.stats.requests, snapshot.stats.retries) == (5, 2)
    assert events.outcomes == ["ok", outcome, outcome, "ok", "ok"]


def test_retry_exhaustion_is_a_transport_error(server: Simulator, events: Events) -> None:
    server.faults.add(Fault(kind="http_status", status=503, times=None))
    config = make_config(server.url, max_retries=2)
    with ISalesClient(config, on_request=events) as isales, pytest.raises(TransportError) as info:
        isales.fetch_snapshot(6)
    error = info.value
    assert error.attempts == 3 and error.retryable and error.vdn_id == 6
    # The cause first, the endpoint last: a line cut short still says why.
    assert str(error).startswith(
        "VDN 6: HTTP 503: error=Service Unavailable; failed after 3 attempts (GET http://127.0.0.1:"
    )
    assert str(error).endswith("/queryOBSResultCode?pageSize=50&pageNum=1)")
    assert served(server, 3) == 3 == len(events.items)


def test_connection_refused_is_retried_then_transport_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    events = Events()
    config = make_config(f"http://127.0.0.1:{port}", max_retries=1)
    with ISalesClient(config, on_request=events) as isales, pytest.raises(TransportError) as info:
        isales.fetch_page(1, 1, 50)
    # What a user needs, not a sentence Python may reword: the category and the setting.
    assert info.value.category == "refused" and info.value.retryable
    assert "isales.base_url" in info.value.fix and info.value.fix in str(info.value)
    assert str(info.value).startswith("VDN 1: ")
    assert f"(GET http://127.0.0.1:{port}/" in str(info.value)
    assert info.value.attempts == 2
    assert events.outcomes == ["connection_error", "connection_error"]


def test_unresolvable_host_names_the_dns_failure() -> None:
    events = Events()
    config = make_config("http://nohost.invalid:8080", max_retries=1)  # .invalid never resolves
    with ISalesClient(config, on_request=events) as isales, pytest.raises(TransportError) as info:
        isales.fetch_page(1, 1, 50)
    message = str(info.value)
    assert info.value.category == "dns" and info.value.attempts == 2
    assert "'nohost.invalid'" in message and "isales.base_url" in info.value.fix
    assert events.outcomes == ["connection_error", "connection_error"]


class RawServer:
    """A TCP server on loopback that misbehaves one way for every connection."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self._handle = handle
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._closing = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            conn, _ = self._listener.accept()
            if self._closing:
                conn.close()
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                self._handle(conn)

    def close(self) -> None:
        # A connection of our own wakes accept(); closing the listener alone does not.
        self._closing = True
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        self._thread.join(5)
        self._listener.close()


def _close_after_request(conn: socket.socket) -> None:
    conn.recv(65536)  # the whole request (or TLS ClientHello): closing now sends no RST


def _reset(conn: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _cut_body(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}")


@pytest.mark.parametrize(
    ("handle", "scheme", "category"),
    [
        (_close_after_request, "http", "closed"),
        (_reset, "http", "reset"),
        (_cut_body, "http", "cut"),
        (_close_after_request, "https", "tls_closed"),
    ],
    ids=["closed", "reset", "cut-body", "tls-closed"],
)
def test_dropped_connection_says_how(
    handle: Callable[[socket.socket], None], scheme: str, category: str
) -> None:
    raw = RawServer(handle)
    events = Events()
    try:
        config = make_config(f"{scheme}://127.0.0.1:{raw.port}", max_retries=2)
        with (
            ISalesClient(config, on_request=events) as isales,
            pytest.raises(TransportError) as info,
        ):
            isales.fetch_page(1, 1, 50)
    finally:
        raw.close()
    # Classified by exception type and errno (the wording differs between Python and
    # OpenSSL builds: Debian's 3.11.2 words a TLS EOF unlike 3.11.7).
    assert info.value.category == category and info.value.retryable
    assert info.value.fix and info.value.fix in str(info.value)
    assert f"; failed after 3 attempts; {info.value.fix} (GET {scheme}://" in str(info.value)
    assert info.value.attempts == 3 == raw.connections
    assert events.outcomes == ["connection_error"] * 3


def test_server_closing_at_once_is_reported_as_closed_or_reset() -> None:
    raw = RawServer(lambda conn: None)  # accept, then close before reading anything
    try:
        config = make_config(f"http://127.0.0.1:{raw.port}", max_retries=0)
        with ISalesClient(config) as isales, pytest.raises(TransportError) as info:
            isales.fetch_page(1, 1, 50)
    finally:
        raw.close()
    # Whether the kernel answers the request with FIN or RST is a race; either is named.
    assert str(info.value).startswith("VDN 1: ") and info.value.attempts == 1
    assert info.value.category in ("closed", "reset")


def test_connect_timeout_is_named() -> None:
    if Path("/proc/sys/net/ipv4/tcp_abort_on_overflow").read_text().strip() != "0":
        pytest.skip("this kernel refuses, rather than ignores, connections past the backlog")
    # A listener that never accepts, its backlog already full: the kernel drops further
    # SYNs, so connecting hangs until the client gives up.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        time.sleep(0.1)
        events = Events()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config = make_config(url, max_retries=0, timeout_seconds=0.2)
        with (
            ISalesClient(config, on_request=events) as isales,
            pytest.raises(TransportError) as info,
        ):
            isales.fetch_page(1, 1, 50)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert info.value.category == "connect_timeout"
    assert "isales.timeout_seconds" in info.value.fix
    assert events.outcomes == ["timeout"]


def test_retry_after_is_honoured(server: Simulator) -> None:
    server.faults.add(Fault(kind="http_status", status=429, retry_after=1, times=1))
    config = make_config(server.url, backoff_max_seconds=5)
    started = time.monotonic()
    with ISalesClient(config) as isales:
        assert isales.fetch_snapshot(1).complete
    assert time.monotonic() - started >= 0.9  # a lower bound only: sleeping is never shorter


def test_retry_after_is_capped_by_backoff_max(server: Simulator) -> None:
    server.faults.add(Fault(kind="http_status", status=503, retry_after=3600, times=1))
    config = make_config(server.url, backoff_max_seconds=0.05)
    with ISalesClient(config) as isales:
        snapshot = isales.fetch_snapshot(1)  # would hang for an hour if not capped
    assert snapshot.complete and snapshot.stats.retries == 1


# ----------------------------------------------------------------------------- not retried


def test_401_is_not_retried(server: Simulator, events: Events) -> None:
    config = make_config(server.url, secret_key="wrong-secret-value")
    with (
        ISalesClient(config, on_request=events) as isales,
        pytest.raises(AuthenticationError) as info,
    ):
        isales.fetch_snapshot(1)
    message = str(info.value)
    assert "check isales.access_key/secret_key, isales.signing.signed_headers" in message
    assert "host clock" in message
    assert "wrong-secret-value" not in message and SK not in message
    assert served(server, 1) == 1 and server.stats.auth_failures == 1
    assert events.outcomes == ["auth_error"]


def test_unsigned_required_header_gets_401(server: Simulator) -> None:
    """Signing fewer headers than the server requires is a 401, reported as such."""
    config = make_config(server.url, signing={"signed_headers": ["host"]})
    with ISalesClient(config) as isales, pytest.raises(AuthenticationError):
        isales.fetch_page(1, 1, 50)


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("0200001", "parameter error"),
        ("02000007", "parameter value out of range"),
        ("02000011", "more parameters than allowed"),
    ],
)
def test_vendor_failure_code_is_clear_and_not_retried(
    client: ISalesClient, server: Simulator, events: Events, code: str, meaning: str
) -> None:
    server.faults.add(Fault(kind="result_code", code=code, desc="pageNum is invalid", times=None))
    with pytest.raises(VendorError) as info:
        client.fetch_snapshot(2)
    error = info.value
    assert (error.code, error.meaning, error.desc) == (code, meaning, "pageNum is invalid")
    message = f"VDN 2: iSales failure code {code} ({meaning}): pageNum is invalid"
    if code == "0200001":
        # The likely cause for obs-sync's well-formed requests (issue 17): no such VDN there.
        assert "does not exist" in error.cause and "isales.vdn_ids" in error.fix
        assert str(error) == f"{message}; likely cause: {error.cause}: {error.fix}"
    else:
        assert (error.cause, error.fix) == ("", "")
        assert str(error) == message
    assert served(server, 1) == 1
    assert events.outcomes == ["vendor_error"]


@pytest.mark.parametrize("status", [400, 500])
def test_vendor_failure_code_under_an_http_error_is_not_retried(
    client: ISalesClient, server: Simulator, events: Events, status: int
) -> None:
    fault = Fault(kind="http_status", status=status, vendor_body=True, code="02000006", times=None)
    server.faults.add(fault)
    with pytest.raises(VendorError) as info:
        client.fetch_snapshot(2)
    assert (info.value.code, info.value.status) == ("02000006", status)
    assert f"(parameter value has the wrong type) (HTTP {status})" in str(info.value)
    assert served(server, 1) == 1 and events.outcomes == ["vendor_error"]


def test_other_4xx_is_not_retried(client: ISalesClient, server: Simulator) -> None:
    server.faults.add(Fault(kind="http_status", status=404, times=None))
    with pytest.raises(HTTPStatusError) as info:
        client.fetch_snapshot(1)
    assert info.value.status == 404
    assert "HTTP 404" in str(info.value) and "not retried" in str(info.value)
    assert served(server, 1) == 1


# ----------------------------------------------------------------------------- bad data


def test_conflicting_duplicate_code_is_a_data_error(
    client: ISalesClient, server: Simulator, data: SimulatorData
) -> None:
    server.faults.add(Fault(kind="duplicate_code", page_num=2, desc="Another text"))
    with pytest.raises(DataError) as info:
        client.fetch_snapshot(1)
    message = str(info.value)
    assert message.startswith("VDN 1: obsCode ")
    assert "appears twice with different descriptions" in message
    assert "'Another text'" in message
    assert served(server, 2) == 2  # not retried


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("blank", "obsCodes[0].obsCode is '  ' (blank or not a string)"),
        ("missing", "obsCodes[0].obsCode is missing"),
        ("null", "obsCodes[0].obsCode is missing"),
        ("number", "(blank or not a string)"),
    ],
)
def test_bad_code_is_a_data_error(
    client: ISalesClient, server: Simulator, variant: str, expected: str
) -> None:
    server.faults.add(Fault(kind="bad_code", variant=variant, page_num=1))  # type: ignore[arg-type]
    with pytest.raises(DataError) as info:
        client.fetch_snapshot(4)
    assert str(info.value).startswith("VDN 4: page 1: ")
    assert expected in str(info.value)
    assert served(server, 1) == 1


# ----------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(data: SimulatorData, ca: trustme.CA, tmp_path: Path) -> Iterator[Simulator]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    with Simulator(data, access_key=AK, secret_key=SK, tls=(str(certfile), str(keyfile))) as sim:
        yield sim


def test_tls_with_private_ca_bundle(tls_server: Simulator, ca: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    assert tls_server.url.startswith("https://")
    with ISalesClient(make_config(tls_server.url, verify_tls=str(bundle))) as isales:
        snapshot = isales.fetch_snapshot(1)
    assert snapshot.complete and len(snapshot.codes) == CODES


def test_tls_verified_by_default(tls_server: Simulator) -> None:
    events = Events()
    with (
        ISalesClient(make_config(tls_server.url), on_request=events) as isales,
        pytest.raises(TransportError) as info,
    ):
        isales.fetch_snapshot(1)
    assert info.value.category == "tls_certificate" and not info.value.retryable
    assert "isales.verify_tls" in info.value.fix and info.value.fix in str(info.value)
    assert len(events.items) == 1  # a certificate problem is not retried


def test_tls_name_mismatch_says_to_use_the_certificates_name(
    data: SimulatorData, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle, pem = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(bundle))
    ca.issue_cert("isales.example").private_key_and_cert_chain_pem.write_to_path(str(pem))
    with (
        Simulator(data, access_key=AK, secret_key=SK, tls=(str(pem), str(pem))) as sim,
        ISalesClient(make_config(sim.url, verify_tls=str(bundle))) as isales,
        pytest.raises(TransportError) as info,
    ):
        isales.fetch_snapshot(1)
    assert info.value.category == "tls_hostname" and not info.value.retryable
    assert "'127.0.0.1'" in str(info.value) and "isales.base_url" in info.value.fix


def test_https_to_a_plain_http_port_is_a_clear_config_error(server: Simulator) -> None:
    events = Events()
    url = server.url.replace("http://", "https://")
    with (
        ISalesClient(make_config(url), on_request=events) as isales,
        pytest.raises(TransportError) as info,
    ):
        isales.fetch_snapshot(1)
    assert info.value.category == "tls_not_https" and not info.value.retryable
    assert "isales.base_url" in info.value.fix and info.value.fix in str(info.value)
    assert len(events.items) == 1


def test_verify_tls_false_warns_once(
    tls_server: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="obs_sync.isales")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ISalesClient(make_config(tls_server.url, verify_tls=False)) as isales:
            for vdn in (1, 2):
                assert isales.fetch_snapshot(vdn).complete
    mentions = [r for r in caplog.records if "verify_tls is false" in r.getMessage()]
    assert len(mentions) == 1 and mentions[0].levelno == logging.WARNING
    assert [w for w in caught if "Unverified HTTPS" in str(w.message)] == []


# ----------------------------------------------------------------------------- politeness


def test_rate_limit_spaces_requests(server: Simulator) -> None:
    config = make_config(server.url, page_size=11, max_requests_per_second=40)
    started = time.monotonic()
    with ISalesClient(config) as isales:
        snapshot = isales.fetch_snapshot(1)
    elapsed = time.monotonic() - started
    assert snapshot.stats.requests == 11
    # 11 requests at 40/s need at least 10 intervals of 25 ms; a lower bound only.
    assert elapsed >= 10 / 40 * 0.95
    assert served(server, 11) == 11
    ats = [r.at for r in server.stats.recent]
    assert ats[-1] - ats[0] >= 10 / 40 * 0.9


def test_rate_limit_is_global_across_threads(server: Simulator) -> None:
    config = make_config(server.url, page_size=50, max_requests_per_second=50, max_concurrency=6)
    started = time.monotonic()
    with ISalesClient(config) as isales, ThreadPoolExecutor(6) as pool:
        snapshots = list(pool.map(isales.fetch_snapshot, range(1, 7)))
    elapsed = time.monotonic() - started
    assert all(s.complete for s in snapshots)
    assert served(server, 18) == 18
    # Six threads together still get 50/s, not 6 x 50/s: 18 requests take >= 17 x 20 ms.
    assert elapsed >= 17 / 50 * 0.95


def test_concurrent_vdns_share_one_client_and_reuse_connections(
    data: SimulatorData, events: Events
) -> None:
    # A little server latency makes the threads' requests overlap for sure.
    with Simulator(data, access_key=AK, secret_key=SK, latency_seconds=0.01) as server:
        config = make_config(server.url, max_concurrency=4, page_size=25)
        vdns = [1, 2, 3, 4, 5, 6] * 2
        with ISalesClient(config, on_request=events) as isales, ThreadPoolExecutor(4) as pool:
            snapshots = list(pool.map(isales.fetch_snapshot, vdns))
            pools = isales.wire.adapter.poolmanager.pools
            opened = sum(p.num_connections for p in pools._container.values())
        assert [s.vdn_id for s in snapshots] == vdns
        for snapshot in snapshots:
            assert snapshot.complete and dict(snapshot.codes) == data.codes(snapshot.vdn_id)
        assert served(server, 12 * 5) == 12 * 5 == len(events.items)
        assert 2 <= server.stats.max_in_flight <= 4  # concurrent, within max_concurrency
    assert opened <= 5  # 60 requests over a handful of keep-alive connections


def test_on_request_hook_failure_does_not_break_fetching(server: Simulator) -> None:
    def broken(event: RequestEvent) -> None:
        raise RuntimeError("metrics backend down")

    with ISalesClient(make_config(server.url), on_request=broken) as isales:
        assert isales.fetch_snapshot(1).complete


def test_fetch_page_checks_its_arguments(client: ISalesClient) -> None:
    for args in ((0, 1, 50), (1, 0, 50), (1, 1, 51)):
        with pytest.raises(ValueError):
            client.fetch_page(*args)
    page = client.fetch_page(1, 3, 50)
    assert (page.page_num, page.total_count, len(page.codes)) == (3, CODES, 20)


def test_secret_not_in_repr(client: ISalesClient) -> None:
    assert SK not in repr(client) and SK not in repr(client.wire._auth)
