"""The paging walk over one VDN: which pages to ask for, and whether what came back is complete.

Pure logic over a ``fetch_page(page_num, page_size) -> Page`` callable: no HTTP, no clock,
so every drift/restart/incomplete case is unit-tested with a list of pages. The rules:

* pages are read until the codes fetched reach ``totalCount``; a full last page is followed
  by one request past the end, which must add nothing (a totalCount understated by whole
  pages would otherwise pass as complete);
* ``totalCount`` changing while paging restarts the walk once; changing again makes the
  snapshot incomplete;
* a server paging by a smaller size than asked is followed (the counts still decide);
* ``isales.max_pages`` bounds the walk; an early empty page, codes past the end or a count
  mismatch make the snapshot incomplete. Only a complete snapshot may delete stored rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from obs_sync.isales.errors import DataError, HTTPStatusError, VendorError
from obs_sync.isales.page import Page, merge

log = logging.getLogger(__package__)  # "obs_sync.isales", as logs have always said

# fetch_page(page_num, page_size) -> the validated page (raising ISalesError when it cannot)
FetchPage = Callable[[int, int], Page]
# merge(vdn_id, items so far, page): adds a page's (key, value) items (default: OBS codes)
Merge = Callable[[int, dict[str, str], Page], None]


@dataclass
class Walk:
    """What one walk through a VDN's pages produced."""

    codes: dict[str, str]
    page_size: int  # asked for; lowered when the server pages by a smaller size
    total: int | None = None
    rows: int = 0
    drift: tuple[int, int] | None = None  # first (old, new) totalCount change seen
    cap_hit: bool = False
    empty_page: int | None = None  # the page that came back empty early
    probing: bool = False  # the next page is a check that nothing lies past the end
    beyond: tuple[int, int] | None = None  # (page, new codes) found past totalCount


@dataclass(frozen=True)
class Paged:
    """A finished paging of one VDN: its codes, and why they are incomplete (None: complete)."""

    codes: dict[str, str]
    total: int | None
    incomplete_reason: str | None


class Pager:
    """Pages one VDN through ``fetch_page``; ``pages`` and ``restarts`` count as it goes
    (read them after an error too: a failed fetch still reports what it cost)."""

    def __init__(
        self,
        fetch_page: FetchPage,
        vdn_id: int,
        *,
        page_size: int,
        max_pages: int,
        merge: Merge = merge,
    ):
        self._fetch_page = fetch_page
        self._merge = merge
        self.vdn_id = vdn_id
        self._page_size = page_size
        self._max_pages = max_pages
        self.pages = 0  # pages successfully read (restarts included)
        self.restarts = 0

    def run(self) -> Paged:
        """Every page, restarting once if totalCount changes; ISalesError propagates."""
        walk = self.walk(stop_on_drift=True, page_size=self._page_size)
        if walk.drift is not None:
            old, new = walk.drift
            log.info(
                "VDN %s: totalCount changed while paging (%s -> %s); restarting once",
                self.vdn_id,
                old,
                new,
            )
            self.restarts += 1
            walk = self.walk(stop_on_drift=False, page_size=walk.page_size)
        reason = incomplete_reason(walk)
        if reason is not None:
            log.warning("VDN %s: incomplete snapshot: %s", self.vdn_id, reason)
        return Paged(walk.codes, walk.total, reason)

    def walk(self, *, stop_on_drift: bool, page_size: int) -> Walk:
        """One pass from page 1; with ``stop_on_drift`` it stops at a totalCount change."""
        walk = Walk(codes={}, page_size=page_size)
        page_num = 0
        while True:
            if page_num >= self._max_pages:
                walk.cap_hit = not walk.probing
                return walk
            page_num += 1
            if walk.probing:
                try:
                    page = self._fetch_page(page_num, walk.page_size)
                except (VendorError, DataError, HTTPStatusError) as error:
                    # A server may refuse a pageNum past the end instead of sending an
                    # empty list: that says nothing lies there either.
                    log.debug("VDN %s: page %s past the end: %s", self.vdn_id, page_num, error)
                    return walk
            else:
                page = self._fetch_page(page_num, walk.page_size)
            self.pages += 1
            if walk.probing and not page.codes:
                return walk  # nothing past the end (whatever totalCount it reports there)
            if walk.total is None:
                walk.total = page.total_count
            elif page.total_count != walk.total:
                if walk.drift is None:
                    walk.drift = (walk.total, page.total_count)
                walk.total = page.total_count
                if stop_on_drift:
                    return walk
            if walk.probing:
                new = sum(1 for code, _ in page.codes if code not in walk.codes)
                self._merge(self.vdn_id, walk.codes, page)
                if new:  # (a server repeating its last page past the end adds nothing)
                    walk.beyond = (page_num, new)
                return walk
            if not page.codes:
                if walk.rows < walk.total:
                    walk.empty_page = page_num
                return walk
            self._merge(self.vdn_id, walk.codes, page)
            walk.rows += len(page.codes)
            if walk.rows >= walk.total:
                # A full last page that completes the count: ask for the next one too, or
                # a totalCount understated by whole pages (e.g. one page's count) would
                # pass as complete. Only this case costs the extra request.
                if len(page.codes) >= walk.page_size and len(walk.codes) == walk.total:
                    walk.probing = True
                    continue
                return walk
            if page_num == 1 and len(page.codes) < walk.page_size:
                # A short first page with more codes to come: the server pages by a
                # smaller size than asked (a cap of its own). Asking for that size from
                # now on is right whether it offsets pages by its size or by ours; the
                # counts still decide whether the snapshot is complete.
                log.info(
                    "VDN %s: the server sent %d codes for pageSize %d with %d in all; paging by %d",
                    self.vdn_id,
                    len(page.codes),
                    walk.page_size,
                    walk.total,
                    len(page.codes),
                )
                walk.page_size = len(page.codes)


def incomplete_reason(walk: Walk) -> str | None:
    fetched, total = len(walk.codes), walk.total
    if walk.drift is not None:
        old, new = walk.drift
        return f"totalCount changed while paging ({old} -> {new}), again after a restart"
    if walk.cap_hit:
        return (
            f"stopped at isales.max_pages with {fetched} of {total} codes fetched "
            "(raise isales.max_pages)"
        )
    if walk.empty_page is not None:
        return f"page {walk.empty_page} was empty after {fetched} of {total} codes"
    if walk.beyond is not None:
        page_num, new = walk.beyond
        return f"page {page_num}, past totalCount {total}, had {new} more codes"
    if fetched != total:
        return f"fetched {fetched} distinct codes but totalCount is {total}"
    return None
