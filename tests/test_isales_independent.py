"""The client against an iSales server written independently from the specs, over real HTTP.

The bundled simulator verifies signatures with ``obs_sync.signing`` and answers in one
dialect. This server shares no code with obs_sync: its C2 verification is written from
``c2-signing.md`` alone and its answers from the API page, and it can answer in the ways
the vendor page leaves open (totalCount as a string, only one of resultCode/returnCode,
gzip or chunked bodies, another charset, a page-size cap of its own, vendor failure codes
under an HTTP error status...). Each test checks what the client makes of one of them.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from pydantic import ValidationError

from obs_sync.config import ISalesConfig
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import AuthenticationError, TransportError, VendorError

AK, SK = "independent-ak", "independent-sk"
PREFIX, SUFFIX = "/rest/isales/v1/openapi/campaigns/", "/queryOBSResultCode"
SUCCESS = "0200000"
# VDN -> codes in the server's order (not sorted by code); VDN 2 has none.
CODES: dict[int, list[tuple[str, str]]] = {
    1: [(f"{700 - i:05d}", f"结果码 {i}") for i in range(120)],
    2: [],
    3: [(f"{600 + i:05d}", f"desc {i}") for i in range(7)],
}


# ----------------------------------------------------------------------------- C2, from the spec


def _normalize(text: str) -> str:
    keep = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode("utf-8"))


def _hmac_hex(key: str, message: str) -> str:
    return hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def c2_problem(
    method: str,
    target: str,
    headers: dict[str, str],
    required: list[str],
    *,
    access_key: str = AK,
    secret_key: str = SK,
    max_skew: float | None = 300,
    clock_offset: float = 0.0,
) -> str:
    """Why the request's Authorization does not verify ("" when it does)."""
    parts = headers.get("authorization", "").split("/")
    if len(parts) != 5 or parts[0] != "auth-v2":
        return "malformed Authorization"
    _, sent_key, timestamp, names, signature = parts
    if sent_key != access_key:
        return "unknown access key"
    layout = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in timestamp else "%Y-%m-%dT%H:%M:%SZ"
    try:
        moment = datetime.strptime(timestamp, layout).replace(tzinfo=timezone.utc)
    except ValueError:
        return "malformed timestamp"
    skew = abs((datetime.now(timezone.utc) - moment).total_seconds() + clock_offset)
    if max_skew is not None and skew > max_skew:
        return "timestamp too far from the server clock"
    name_list = names.split(";")
    if name_list != sorted(name_list) or any(n != n.lower() for n in name_list):
        return "SignedHeaders not lowercase and sorted"
    if any(n not in name_list for n in required):
        return "a required header is not signed"
    if any(n not in headers for n in name_list):
        return "a signed header was not sent"
    path, _, query = target.partition("?")
    pairs = [p.partition("=") for p in query.split("&") if p]
    canonical_query = "&".join(
        sorted(f"{_normalize(unquote(k))}={_normalize(unquote(v))}" for k, _, v in pairs)
    )
    canonical_headers = "\n".join(
        sorted(f"{_normalize(n)}:{_normalize(headers[n].strip())}" for n in name_list)
    )
    lines = [method, path, *([canonical_query] if canonical_query else []), names]
    canonical = "\n".join([*lines, canonical_headers + "\n"])
    key = _hmac_hex(secret_key, f"auth-v2/{access_key}/{timestamp}/{names}")
    if not hmac.compare_digest(_hmac_hex(key, canonical), signature):
        return "signature mismatch"
    return ""


def test_independent_verifier_agrees_with_spec_vector_a() -> None:
    """The server's verifier is itself checked against the spec's vector A."""
    headers = {
        "content-type": "application/json; charset=UTF-8",
        "host": "10.22.26.181:28080",
        "authorization": "auth-v2/globalaktest/2024-01-01T00:00:00Z/content-type;host/"
        "bf1772557cd317a20b9469c2205d07bc0395f4dd1e8e08d04be8684e33041b4e",
    }
    target = PREFIX + "1" + SUFFIX + "?pageSize=10&pageNum=1"

    def check() -> str:
        return c2_problem(
            "GET",
            target,
            headers,
            [],
            access_key="globalaktest",
            secret_key="secretkeyexample",
            max_skew=None,
        )

    assert check() == ""
    headers["host"] = "10.22.26.181"
    assert check() == "signature mismatch"


# ----------------------------------------------------------------------------- the server


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode: dict[str, Any] = {}
        self.required = ["content-type", "host"]
        self.seen: list[dict[str, Any]] = []  # path and headers of each API request
        self.errors: list[dict[str, Any]] = []  # {"status", "body", "headers"} served first
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        moment = time.time() if timestamp is None else timestamp
        return super().date_time_string(moment + self.server.mode.get("clock_offset", 0.0))

    def answer(self, status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        mode = self.server.mode
        charset = mode.get("charset", "UTF-8")
        if isinstance(payload, bytes):
            raw = payload
        else:
            raw = json.dumps(payload, ensure_ascii=False).encode(charset)
        self.send_response(status)
        self.send_header(
            "Content-Type", mode.get("content_type", f"application/json;charset={charset}")
        )
        for name, value in headers:
            self.send_header(name, value)
        if mode.get("gzip") and "gzip" in self.headers.get("Accept-Encoding", ""):
            raw = gzip.compress(raw)
            self.send_header("Content-Encoding", "gzip")
        if mode.get("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for at in range(0, len(raw), 29):
                chunk = raw[at : at + 29]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    def do_GET(self) -> None:
        server, mode = self.server, self.server.mode
        headers = {k.lower(): v for k, v in self.headers.items()}
        path, _, query = self.path.partition("?")
        with server.lock:
            server.seen.append({"target": self.path, "headers": headers})
            error = server.errors.pop(0) if server.errors else None
        if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            return self.answer(404, {"error": "no such API"})
        offset = mode.get("clock_offset", 0.0)
        problem = c2_problem("GET", self.path, headers, server.required, clock_offset=offset)
        if problem:
            return self.answer(401, {"error": problem})
        if headers.get("content-type") != "application/json; charset=UTF-8":
            return self.answer(400, {"error": "Content-Type"})
        if error is not None:
            return self.answer(error["status"], error.get("body", b""), error.get("headers", []))
        params = {
            unquote(k): unquote(v) for k, _, v in (p.partition("=") for p in query.split("&"))
        }
        status = mode.get("param_error_status", 200)

        def failure(code: str, desc: str) -> None:
            body = {"resultCode": code, "resultDesc": desc, "returnCode": code, "returnDesc": desc}
            self.answer(status, body)

        if sorted(params) != ["pageNum", "pageSize"]:
            return failure("02000011", f"parameters {sorted(params)}")
        try:
            vdn, page_num, page_size = (
                int(path[len(PREFIX) : -len(SUFFIX)]),
                int(params["pageNum"]),
                int(params["pageSize"]),
            )
        except ValueError:
            return failure("02000006", "not an integer")
        if not (1 <= vdn <= 9999 and page_num >= 1 and 1 <= page_size <= 50):
            return failure("02000007", "out of range")
        codes = CODES.get(vdn, [])
        past_end = mode.get("past_end")
        if past_end and (page_num - 1) * page_size >= len(codes) > 0:
            if past_end == "error":
                return failure("02000007", "pageNum out of range")
            if past_end == "http_400":
                return self.answer(400, {"error": "pageNum out of range"})
            if past_end == "clamp":  # the last page again
                page_num = (len(codes) + page_size - 1) // page_size
        rows = mode.get("rows", page_size)  # a server that ignores pageSize
        step = rows if mode.get("offset_by_rows", True) else page_size
        if mode.get("ignore_page_num"):
            page_num = 1
        start = (page_num - 1) * step
        page: list[dict[str, Any]] = [
            {"obsCodeDesc": d, "obsCode": c} for c, d in codes[start : start + rows]
        ]
        total: Any = len(codes) + mode.get("total_offset", 0)
        if mode.get("total_is_page_count"):  # a misreading of the spec
            total = len(page)
        if past_end == "zero_total" and not page:
            total = 0
        body: dict[str, Any] = {}
        if page or mode.get("empty_list", "list") == "list":
            body["obsCodes"] = page
        elif mode.get("empty_list") == "null":
            body["obsCodes"] = None
        for field in ("returnCode", "resultCode"):
            if field not in mode.get("omit", ()):
                body[field] = SUCCESS
        body["resultDesc"] = body["returnDesc"] = "query queryOBSResultCode Success!"
        body["totalCount"] = str(total) if mode.get("total_as_string") else total
        if mode.get("extra_fields"):
            body["serverTime"] = 1700000000000
            for item in page:
                item["obsCodeType"] = {"id": 1}
        self.answer(mode.get("status", 200), body)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def config(server: Server, **overrides: Any) -> ISalesConfig:
    values: dict[str, Any] = {
        "base_url": server.url,
        "access_key": AK,
        "secret_key": SK,
        "vdn_ids": [1, 2, 3],
        "max_requests_per_second": 0,
        "max_retries": 2,
        "backoff_initial_seconds": 0.001,
        "backoff_max_seconds": 0.01,
    }
    values.update(overrides)
    return ISalesConfig.model_validate(values)


def fetch(server: Server, vdn_id: int = 1, **overrides: Any) -> Any:
    with ISalesClient(config(server, **overrides)) as client:
        return client.fetch_snapshot(vdn_id)


def assert_complete(snapshot: Any, vdn_id: int = 1) -> None:
    assert snapshot.complete, snapshot.incomplete_reason
    assert dict(snapshot.codes) == dict(CODES[vdn_id])


# ----------------------------------------------------------------------------- signing


@pytest.mark.parametrize(
    "signing",
    [
        {},
        {"timestamp_precision": "milliseconds"},
        {"signed_headers": ["content-type", "host", "locale"]},
        {"signed_headers": ["Content-Type", "HOST", "content-length", "user-agent"]},
    ],
)
def test_signature_verifies_on_an_independent_server(
    server: Server, signing: dict[str, Any]
) -> None:
    assert_complete(fetch(server, locale="en_US", signing=signing))
    assert len(server.seen) == 3
    first = server.seen[0]
    assert first["target"] == PREFIX + "1" + SUFFIX + "?pageSize=50&pageNum=1"
    assert first["headers"]["content-type"] == "application/json; charset=UTF-8"
    assert first["headers"]["host"] == f"127.0.0.1:{server.server_address[1]}"
    assert first["headers"]["locale"] == "en_US"


@pytest.mark.parametrize(("locale", "sent"), [(" en_US ", "en_US"), ("", None), (None, None)])
def test_locale_header_is_sent_trimmed_or_not_at_all(
    server: Server, locale: str | None, sent: str | None
) -> None:
    assert_complete(fetch(server, locale=locale))
    assert server.seen[0]["headers"].get("locale") == sent


def test_a_locale_that_is_not_a_header_token_is_a_config_error(server: Server) -> None:
    with pytest.raises(ValidationError) as info:
        config(server, locale="en US")
    assert "'en US' is not a locale like en_US or zh_CN" in str(info.value)


def test_a_required_header_left_unsigned_is_a_401_with_the_servers_reason(server: Server) -> None:
    server.required = ["content-type", "host", "locale"]
    with pytest.raises(AuthenticationError) as info:
        fetch(server, locale="en_US")
    assert "server said: error=a required header is not signed" in str(info.value)
    assert SK not in str(info.value) and len(server.seen) == 1


@pytest.mark.parametrize(("offset", "direction"), [(7200, "behind"), (-900, "ahead of")])
def test_a_401_from_clock_skew_says_how_far_off_the_clock_is(
    server: Server, offset: float, direction: str
) -> None:
    server.mode = {"clock_offset": offset}
    with pytest.raises(AuthenticationError) as info:
        fetch(server)
    message = str(info.value)
    assert "server said: error=timestamp too far from the server clock" in message
    match = re.search(r"this host's clock is (\d+)s (behind|ahead of) the server's", message)
    assert match is not None and match.group(2) == direction
    assert abs(int(match.group(1)) - abs(offset)) <= 5


def test_no_clock_hint_when_the_clocks_agree(server: Server) -> None:
    server.required = ["content-type", "host", "locale"]
    with pytest.raises(AuthenticationError) as info:
        fetch(server, locale="en_US")
    assert "clock is" not in str(info.value)


# ----------------------------------------------------------------------------- response shapes


@pytest.mark.parametrize(
    "mode",
    [
        {"total_as_string": True},
        {"omit": ["returnCode"]},
        {"omit": ["resultCode"]},
        {"extra_fields": True},
        {"gzip": True},
        {"chunked": True},
        {"gzip": True, "chunked": True},
        {"charset": "GBK"},
        {"charset": "UTF-16"},
        {"content_type": "text/plain"},
        {"status": 201},
    ],
    ids=repr,
)
def test_harmless_variations_give_a_complete_snapshot(server: Server, mode: dict[str, Any]) -> None:
    server.mode = mode
    assert_complete(fetch(server, 1))
    assert_complete(fetch(server, 3), 3)
    empty = fetch(server, 2)
    assert empty.complete and dict(empty.codes) == {}


@pytest.mark.parametrize("empty_list", ["null", "missing"])
def test_an_empty_vdn_may_send_null_or_no_obs_codes(server: Server, empty_list: str) -> None:
    server.mode = {"empty_list": empty_list}
    empty = fetch(server, 2)
    assert empty.complete and dict(empty.codes) == {}


def test_a_null_list_with_codes_left_is_never_complete(server: Server) -> None:
    server.mode = {"empty_list": "null", "total_offset": 3}
    snapshot = fetch(server, 3)
    assert not snapshot.complete and len(snapshot.codes) == 7


# ----------------------------------------------------------------------------- paging


@pytest.mark.parametrize(
    "mode",
    [
        {"rows": 20},  # its own page size, offsets by it
        {"rows": 20, "offset_by_rows": False},  # caps rows, offsets by the asked pageSize
        {"rows": 80},  # more than asked, offsets by its size
        {"rows": 80, "offset_by_rows": False},  # more than asked, offsets by ours
    ],
    ids=repr,
)
def test_a_server_ignoring_page_size_still_gives_every_code(
    server: Server, mode: dict[str, Any]
) -> None:
    server.mode = mode
    assert_complete(fetch(server, 1))


def test_a_server_ignoring_page_num_is_never_complete(server: Server) -> None:
    server.mode = {"ignore_page_num": True}
    snapshot = fetch(server, 1)
    assert not snapshot.complete and len(snapshot.codes) == 50


def test_a_total_count_of_one_page_is_never_complete(server: Server) -> None:
    """totalCount understated by whole pages (here: each page's own count) is caught by
    the request past the full last page."""
    server.mode = {"total_is_page_count": True}
    snapshot = fetch(server, 1)
    assert not snapshot.complete
    assert snapshot.incomplete_reason == "page 2, past totalCount 50, had 50 more codes"


@pytest.mark.parametrize("past_end", ["error", "http_400", "clamp", "zero_total"])
def test_any_answer_past_the_end_without_new_codes_is_the_end(
    server: Server, past_end: str
) -> None:
    server.mode = {"past_end": past_end, "rows": 40}  # 120 = 3 full pages of 40
    snapshot = fetch(server, 1, page_size=40)
    assert_complete(snapshot)
    assert snapshot.stats.requests == 4


def test_a_total_count_above_the_rows_served_is_never_complete(server: Server) -> None:
    server.mode = {"total_offset": 1}
    snapshot = fetch(server, 1)
    assert not snapshot.complete and len(snapshot.codes) == 120


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", [400, 500])
def test_vendor_failure_code_under_an_http_error_status_is_not_retried(
    server: Server, status: int
) -> None:
    desc = "pageSize out of range"
    body = {"resultCode": "02000007", "resultDesc": desc, "returnCode": "02000007"}
    server.errors = [{"status": status, "body": json.dumps(body).encode()}] * 3
    with pytest.raises(VendorError) as info:
        fetch(server, 1)
    assert (info.value.code, info.value.desc, info.value.status) == ("02000007", desc, status)
    assert str(info.value) == (
        f"VDN 1: iSales failure code 02000007 (parameter value out of range) (HTTP {status}): "
        f"{desc}"
    )
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    "retry_after", ["0", "0.01", "Thu, 01 Jan 2015 00:00:00 GMT", "soon"], ids=repr
)
@pytest.mark.parametrize("status", [408, 429, 502, 503])
def test_transient_statuses_are_retried_with_any_retry_after_form(
    server: Server, status: int, retry_after: str
) -> None:
    server.errors = [
        {"status": status, "body": b"<html>busy</html>", "headers": [("Retry-After", retry_after)]}
    ]
    assert_complete(fetch(server, 1))
    assert len(server.seen) == 4


def test_unknown_code_under_5xx_is_retried_then_reported_with_the_body(server: Server) -> None:
    body = json.dumps({"resultCode": "0299999", "resultDesc": "system busy"}).encode()
    server.errors = [{"status": 500, "body": body}] * 3
    with pytest.raises(TransportError) as info:
        fetch(server, 1)
    assert "HTTP 500: resultCode=0299999, resultDesc=system busy" in str(info.value)
    assert len(server.seen) == 3


# ----------------------------------------------------------------------------- the command


def test_fetch_command_against_the_independent_server(server: Server, tmp_path: Path) -> None:
    server.mode = {"total_as_string": True, "omit": ["returnCode"], "rows": 20}
    path = tmp_path / "config.yaml"
    isales = {"base_url": server.url, "access_key": AK, "secret_key": SK, "vdn_ids": [1]}
    path.write_text(json.dumps({"isales": isales}), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "obs_sync",
            "--config",
            str(path),
            "fetch",
            "--vdn",
            "1",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["obs_code"], r["obs_code_desc"]) for r in rows] == CODES[1]
    assert (
        "120 codes (totalCount 120), 7 pages" in done.stderr
    )  # 6 full, 1 past the end and "complete" in done.stderr
