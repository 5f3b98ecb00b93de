"""The transport seam: the client's HTTP goes through the adapter it is given.

A requests transport adapter that answers from memory stands in for the network: the
whole client (signing, paging, validation, retries) runs without a socket.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter

from obs_sync.config import ISalesConfig
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import TransportError
from obs_sync.isales.vendor import PATH_TEMPLATE, SUCCESS

CODES = {f"c{i:02d}": f"desc {i}" for i in range(7)}


class MemoryAdapter(BaseAdapter):
    """Answers queryOBSResultCode from ``CODES``; ``fail_first`` requests get HTTP 503."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.requests: list[requests.PreparedRequest] = []
        self.fail_first = fail_first
        self.closed = False

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        response = requests.Response()
        response.request = request
        response.url = request.url or ""
        if len(self.requests) <= self.fail_first:
            response.status_code = 503
            response._content = b"busy"
            return response
        query = parse_qs(urlsplit(request.url or "").query)
        size, num = int(query["pageSize"][0]), int(query["pageNum"][0])
        items = list(CODES.items())[(num - 1) * size : num * size]
        body = {
            "resultCode": SUCCESS,
            "returnCode": SUCCESS,
            "totalCount": len(CODES),
            "obsCodes": [{"obsCode": c, "obsCodeDesc": d} for c, d in items],
        }
        response.status_code = 200
        response.headers["Content-Type"] = "application/json; charset=UTF-8"
        response._content = json.dumps(body).encode()
        return response

    def close(self) -> None:
        self.closed = True


def config(**overrides: Any) -> ISalesConfig:
    values: dict[str, Any] = {
        "base_url": "https://isales.invalid:18443",  # never resolved: no socket is opened
        "access_key": "ak",
        "secret_key": "sk-not-shown",
        "vdn_ids": [3],
        "page_size": 3,
        "max_retries": 2,
        "backoff_initial_seconds": 0.001,
        "backoff_max_seconds": 0.01,
        "max_requests_per_second": 0,
    }
    values.update(overrides)
    return ISalesConfig.model_validate(values)


def test_the_client_sends_through_the_adapter_it_is_given() -> None:
    adapter = MemoryAdapter()
    with ISalesClient(config(), adapter=adapter) as client:
        snapshot = client.fetch_snapshot(3)
    assert snapshot.complete and dict(snapshot.codes) == CODES
    assert snapshot.stats.pages == 3 and snapshot.stats.requests == 3
    assert adapter.closed  # the client closes what it was given
    for request in adapter.requests:  # signed, on the vendor's path
        assert urlsplit(request.url or "").path == PATH_TEMPLATE.format(vdn_id=3)
        assert request.headers["Authorization"].startswith("auth-v2/ak/")


def test_retries_and_failures_are_the_clients_whatever_the_adapter() -> None:
    with ISalesClient(config(), adapter=MemoryAdapter(fail_first=1)) as client:
        snapshot = client.fetch_snapshot(3)
    assert snapshot.complete and snapshot.stats.retries == 1
    with ISalesClient(config(), adapter=MemoryAdapter(fail_first=99)) as client:
        try:
            client.fetch_snapshot(3)
        except TransportError as error:
            assert "HTTP 503" in str(error) and error.attempts == 3
        else:
            raise AssertionError("a server that always answers 503 must fail the fetch")
