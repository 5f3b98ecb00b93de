"""Floor client 1: the least work the ``requests`` stack can do for one sync's fetches.

Fetches every page of every VDN exactly as obs-sync pages them (``pageSize``, pages
1..n until ``totalCount`` codes are read), C2-signing each request (the server rejects
unsigned ones), over keep-alive ``requests.Session``\\ s, one per worker thread, with
``--concurrency`` VDNs in flight; it only parses the JSON. No retries, no validation
beyond the success code, no database. Runnable as a whole command::

    ISALES_ACCESS_KEY=.. ISALES_SECRET_KEY=.. python bench/floor_requests.py \\
        --url http://127.0.0.1:18443 --vdns 1-200 --concurrency 4

Prints one JSON line: ``{"client", "seconds", "requests", "codes", "vdns", ...}`` where
``seconds`` is the fetching time inside the process (imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import requests

from obs_sync.signing import authorization, host_header

PATH = "/rest/isales/v1/openapi/campaigns/{vdn_id}/queryOBSResultCode"
CONTENT_TYPE = "application/json; charset=UTF-8"


def parse_vdns(text: str) -> list[int]:
    """``"1-200"`` or ``"1,5,7-9"`` -> sorted ids."""
    ids: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        ids.update(range(int(low), int(high or low) + 1))
    return sorted(ids)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="simulator base URL")
    parser.add_argument("--vdns", required=True, help='e.g. "1-200"')
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args(argv)
    # Credentials from the environment, never argv (other users can read argv).
    access_key = os.environ.get("ISALES_ACCESS_KEY", "demo-access-key")
    secret_key = os.environ.get("ISALES_SECRET_KEY", "demo-secret-key")

    base = args.url.rstrip("/")
    host = host_header(base)
    base_path = urlsplit(base).path
    page_size = str(args.page_size)
    pending = iter(parse_vdns(args.vdns))
    lock = threading.Lock()
    totals = {"requests": 0, "codes": 0, "vdns": 0}
    errors: list[str] = []

    def fetch_vdn(session: requests.Session, vdn_id: int) -> tuple[int, int]:
        path = base_path + PATH.format(vdn_id=vdn_id)
        codes: dict[str, str] = {}
        page_num, requests_made, rows = 0, 0, 0
        while True:
            page_num += 1
            query = [("pageSize", page_size), ("pageNum", str(page_num))]
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            headers = {"Content-Type": CONTENT_TYPE, "Host": host}
            signed = {"content-type": CONTENT_TYPE, "host": host}
            headers["Authorization"] = authorization(
                access_key, secret_key, stamp, "GET", path, query, signed
            )
            response = session.get(
                f"{base}{PATH.format(vdn_id=vdn_id)}?pageSize={page_size}&pageNum={page_num}",
                headers=headers,
            )
            requests_made += 1
            body = json.loads(response.content)
            if response.status_code != 200 or body.get("resultCode") != "0200000":
                raise RuntimeError(f"VDN {vdn_id} page {page_num}: HTTP {response.status_code}")
            page = body["obsCodes"]
            for item in page:
                codes[item["obsCode"]] = item["obsCodeDesc"]
            rows += len(page)
            if not page or rows >= body["totalCount"]:
                return requests_made, len(codes)

    def worker() -> None:
        session = requests.Session()
        made = got = done = 0
        try:
            while True:
                with lock:
                    vdn_id = next(pending, None)
                if vdn_id is None:
                    break
                count, codes = fetch_vdn(session, vdn_id)
                made, got, done = made + count, got + codes, done + 1
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            session.close()
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
                "client": "requests",
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
