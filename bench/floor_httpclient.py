"""Floor client 2: what this machine can do with the standard library alone.

The same fetches as ``floor_requests.py`` (same pages, same page size, same concurrency,
each request C2-signed) over keep-alive ``http.client`` connections, one per worker
thread; only the JSON is parsed. It imports nothing outside the standard library, so its
whole-command time is the interpreter's own floor. The signer below is a minimal
C2 signer for this one request shape; ``python -m bench.run`` checks it against
``obs_sync.signing.authorization`` before measuring. Runnable as a whole command::

    ISALES_ACCESS_KEY=.. ISALES_SECRET_KEY=.. python bench/floor_httpclient.py \\
        --url http://127.0.0.1:18443 --vdns 1-200 --concurrency 4

Prints one JSON line like ``floor_requests.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import threading
import time
from urllib.parse import quote, urlsplit

PATH = "/rest/isales/v1/openapi/campaigns/{vdn_id}/queryOBSResultCode"
CONTENT_TYPE = "application/json; charset=UTF-8"
SIGNED = "content-type;host"


def _hex(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def sign(access_key: str, secret_key: str, stamp: str, path: str, query: str, host: str) -> str:
    """Authorization for ``GET path?query`` signing content-type and host.

    ``query`` must already be canonical (names and values unreserved, sorted by name).
    """
    prefix = f"auth-v2/{access_key}/{stamp}/{SIGNED}"
    canonical = (
        f"GET\n{path}\n{query}\n{SIGNED}\n"
        f"content-type:{quote(CONTENT_TYPE, safe='-._~')}\nhost:{quote(host, safe='-._~')}\n"
    )
    return f"{prefix}/{_hex(_hex(secret_key, prefix), canonical)}"


def parse_vdns(text: str) -> list[int]:
    ids: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        ids.update(range(int(low), int(high or low) + 1))
    return sorted(ids)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="simulator base URL (http only)")
    parser.add_argument("--vdns", required=True, help='e.g. "1-200"')
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args(argv)
    access_key = os.environ.get("ISALES_ACCESS_KEY", "demo-access-key")
    secret_key = os.environ.get("ISALES_SECRET_KEY", "demo-secret-key")

    parts = urlsplit(args.url.rstrip("/"))
    if parts.scheme != "http" or parts.hostname is None:
        parser.error("--url must be http://host:port")
    port = parts.port or 80
    host = parts.hostname if port == 80 else f"{parts.hostname}:{port}"
    pending = iter(parse_vdns(args.vdns))
    lock = threading.Lock()
    totals = {"requests": 0, "codes": 0, "vdns": 0}
    errors: list[str] = []

    def fetch_vdn(conn: http.client.HTTPConnection, vdn_id: int) -> tuple[int, int]:
        path = parts.path + PATH.format(vdn_id=vdn_id)
        codes: dict[str, str] = {}
        page_num, requests_made, rows = 0, 0, 0
        while True:
            page_num += 1
            # Canonical order sorts pageNum before pageSize; the wire order does not matter.
            query = f"pageNum={page_num}&pageSize={args.page_size}"
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            headers = {
                "Content-Type": CONTENT_TYPE,
                "Authorization": sign(access_key, secret_key, stamp, path, query, host),
            }
            conn.request("GET", f"{path}?{query}", headers=headers)
            response = conn.getresponse()
            data = response.read()
            requests_made += 1
            body = json.loads(data)
            if response.status != 200 or body.get("resultCode") != "0200000":
                raise RuntimeError(f"VDN {vdn_id} page {page_num}: HTTP {response.status}")
            page = body["obsCodes"]
            for item in page:
                codes[item["obsCode"]] = item["obsCodeDesc"]
            rows += len(page)
            if not page or rows >= body["totalCount"]:
                return requests_made, len(codes)

    def worker() -> None:
        # http.client sends Host from the connection (host:port), the value signed above.
        conn = http.client.HTTPConnection(parts.hostname or "", port, timeout=30)
        made = got = done = 0
        try:
            while True:
                with lock:
                    vdn_id = next(pending, None)
                if vdn_id is None:
                    break
                count, codes = fetch_vdn(conn, vdn_id)
                made, got, done = made + count, got + codes, done + 1
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            conn.close()
            with lock:
                totals["requests"] += made
                totals["codes"] += got
                totals["vdns"] += done

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "client": "http.client",
                "seconds": round(seconds, 4),
                **totals,
                "concurrency": args.concurrency,
                "errors": errors[:5],
            }
        ),
        flush=True,
    )
    raise SystemExit(1 if errors else 0)


if __name__ == "__main__":
    main()
