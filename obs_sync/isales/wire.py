"""The HTTP wire: signed GETs through one shared, thread-safe connection pool.

Prepared requests go straight to a ``requests`` transport adapter (by default an
``HTTPAdapter``: a urllib3 pool sized for ``isales.max_concurrency``). A Session would add
per-request header, cookie and environment merging that this stateless, signed API does
not need. The adapter is a parameter: a test or another transport can pass its own.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.auth import AuthBase
from requests.structures import CaseInsensitiveDict

log = logging.getLogger(__package__)  # "obs_sync.isales", as logs have always said


class Wire:
    """Sends signed GETs to one base URL; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        auth: AuthBase,
        timeout: float,
        verify_tls: bool | str,
        pool_size: int,
        adapter: BaseAdapter | None = None,
    ) -> None:
        self._headers = dict(headers)
        self._auth = auth
        self.timeout = timeout
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
            else HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        )

    def close(self) -> None:
        self.adapter.close()

    def get(self, url: str) -> requests.Response:
        """One signed GET, its body read in full (the connection goes back to the pool)."""
        request = requests.PreparedRequest()
        request.method = "GET"
        request.url = url
        request.headers = CaseInsensitiveDict(self._headers)
        request.body = None
        request.hooks = {"response": []}
        self._auth(request)
        response = self.adapter.send(
            request,
            timeout=self.timeout,
            verify=self._verify,
            proxies=self._proxies,
        )
        try:
            _ = response.content  # read it all: the connection goes back to the pool
        finally:
            response.close()
        return response
