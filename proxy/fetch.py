"""Going forward: the request to the origin, the response streamed back, stored when allowed,
shared with collapsed waiters (proxy.collapse). The async half of the handler; the byte
streaming through fills is proxy.fill_stream."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from proxy.cache.admission import (
    is_freshened_by_head,
    is_refreshable_by,
    make_stored_response,
    refresh_stored_response,
    with_attribution,
)
from proxy.cache.entry import StoredResponse
from proxy.cache.freshness import corrected_initial_age, date_value
from proxy.cache.invalidation import keys_to_invalidate
from proxy.cache.keys import is_vary_match, vary_key, vary_names
from proxy.cache.reuse import may_serve_stale_on_error
from proxy.cache.storability import effective_directives, reason_not_storable
from proxy.cache.surrogate import SURROGATE_FIELDS, strip_surrogate_fields
from proxy.cache.tiers.disk import LargeEntry
from proxy.collapse import Fill, FillHead
from proxy.fill_stream import Completion, FillStreamer
from proxy.http import cache_status as outcomes
from proxy.http.cache_status import Outcome, cache_status
from proxy.http.dates import format_http_date
from proxy.http.fields import Headers, get_values, without_fields
from proxy.http.hop_by_hop import strip_hop_by_hop, strip_request_hop_by_hop
from proxy.http.request_parser import NO_BODY
from proxy.http.wire import status_allows_body
from proxy.origin import OriginError, OriginResponse
from proxy.partial import partial_fields, select_ranges_in, unsatisfied_fields
from proxy.records.emit import Attribution
from proxy.responses import forwarded_head, render_trailer
from proxy.tracing import upstream_traceparent

if TYPE_CHECKING:
    from proxy.handler import Connection, Exchange, ProxyHandler

log = logging.getLogger("cachet.proxy")

# How far past what a large fill has received a collapsed Range request may start and still be
# answered from the fill. A seek further into a cold object (a video player jumping ahead in a
# 1 GiB file) would stall until the fill got there, while the origin answers a range at once:
# such a range is asked of the origin on its own.
RANGE_JOIN_AHEAD_BYTES = 16 * 1024 * 1024

_CONDITIONAL_FIELDS = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"}
)
_CLIENT_VALIDATORS = frozenset({"if-none-match", "if-modified-since"})
_RANGE_FIELDS = frozenset({"range", "if-range"})
_FORWARDED_FIELDS = frozenset(
    {
        "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "expect",
        "host", "x-cachet-edge",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fetch:
    """How to go forward: the outcome to report, the stored response being revalidated (if
    any), whether the answer may be stored, and the fill this request leads (if any)."""

    outcome: Outcome
    stored: StoredResponse | None = None
    store: bool = True
    fill: Fill | None = None
    # The disk entry whose file holds ``stored``'s body (a large one: ``stored.body`` is empty).
    large: LargeEntry | None = None
    # A revalidation no client waits for (RFC 5861 §3): it only updates the cache.
    background: bool = False
    # ``large``'s file, opened (`LargeEntry.open_body`) before the request went forward, for a
    # 304's answer to stream from: that 304's own rewrite of the file (RFC 9111 §4.3.4), or
    # another revalidation's, may rename a new file over it before an open by path. Whoever
    # streams from it pops it; the request's opener closes what is left.
    opened: list[int] | None = None


@dataclass(slots=True)
class _Timing:
    request_time: float
    response_time: float


class OriginPath:
    def __init__(self, handler: ProxyHandler) -> None:
        self.h = handler
        self.settings = handler.settings
        self.stats = handler.stats
        self.streamer = FillStreamer(
            self.stats, self._storable_bytes, self._spill, handler.store.disk_storable_bytes
        )
        self._detached: set[asyncio.Task[None]] = set()  # fills driven without their client

    # -- the request ---------------------------------------------------------------------------

    def upstream_headers(self, conn: Connection, ex: Exchange, fetch: Fetch) -> Headers:
        drop = set(_FORWARDED_FIELDS)
        if fetch.store and ex.method == "GET":
            drop |= _CONDITIONAL_FIELDS if fetch.stored is not None else _CLIENT_VALIDATORS
        if _fills_for_range(ex, fetch):
            drop |= _RANGE_FIELDS  # fetch the whole object; the range is cut from it
        # Host is part of the cache key, so it is always sent as the key has it: a client can't
        # list it in Connection to have the origin answer for another host under this key.
        headers = without_fields(strip_request_hop_by_hop(ex.head.headers), drop)
        headers.insert(0, ("Host", ex.host or ex.route.authority))
        stored = fetch.stored
        if stored is not None:
            if stored.etag is not None:
                headers.append(("If-None-Match", stored.etag))
            if stored.last_modified is not None:
                headers.append(("If-Modified-Since", format_http_date(stored.last_modified)))
        forwarded_for = conn.peer_ip
        if self.h.trusts_forwarding_from(conn.peer_ip):
            previous = get_values(ex.head.headers, "x-forwarded-for")
            if previous:
                forwarded_for = ", ".join([*previous, conn.peer_ip])
        headers.append(("X-Forwarded-For", forwarded_for))
        headers.append(("X-Forwarded-Proto", "http"))
        if ex.host:
            headers.append(("X-Forwarded-Host", ex.host))
        via = get_values(headers, "via")
        headers = [(n, v) for n, v in headers if n.lower() != "via"]
        headers.append(("Via", ", ".join([*via, self.settings.via])))
        headers.append(("X-Request-ID", ex.request_id))
        recorder = self.h.recorder
        if recorder is not None:
            # Another cachet proxy upstream records this request with upstream_of = us, so it
            # is billed once, here, where the client was served (issue 4: proxy chains).
            headers.append(("X-Cachet-Edge", recorder.edge_id))
        traceparent = upstream_traceparent(ex)  # this edge's span, when traces are exported
        if traceparent is None and ex.trace_id is None:
            # W3C Trace Context: start a trace the origin can join; the record carries its id.
            ex.trace_id = os.urandom(16).hex()
            traceparent = f"00-{ex.trace_id}-{os.urandom(8).hex()}-01"
        if traceparent is not None:
            headers = [(n, v) for n, v in headers if n.lower() not in ("traceparent", "tracestate")]
            headers.append(("traceparent", traceparent))
            if ex.span_id is not None:
                headers.extend((n, v) for n, v in ex.head.headers if n.lower() == "tracestate")
        return headers

    async def forward(self, conn: Connection, ex: Exchange, fetch: Fetch) -> None:
        try:
            await self._forward(conn, ex, fetch)
        finally:
            fill = fetch.fill
            if fill is not None and not fill.detached:  # (a detached fill's task ends it)
                self._end_fill(ex.key, fill)

    def _end_fill(self, key: str, fill: Fill) -> None:
        if not fill.done:
            fill.fail(OriginError("reset", "fill abandoned"))
        storing = fill.storing
        if storing is not None and not storing.done():
            # Joinable until its disk copy lands: then the next request is a disk hit.
            storing.add_done_callback(lambda _: self.h.fills.end(key, fill))
        else:
            self.h.fills.end(key, fill)

    async def _forward(self, conn: Connection, ex: Exchange, fetch: Fetch) -> None:
        headers = self.upstream_headers(conn, ex, fetch)
        body = conn.request_body() if ex.head.body is not NO_BODY else None
        request_time = time.time()
        started = time.monotonic()
        self.stats.origin_requests += 1
        try:
            response = await self.h.origin.request(
                ex.method, ex.route.base_url + ex.target, headers, body
            )
        except OriginError as error:
            self.stats.origin_errors[error.kind] += 1
            if fetch.fill is not None:
                fetch.fill.fail(error)
            await self._answer_origin_failure(conn, ex, fetch, error.status, f"origin-{error.kind}")
            return
        self.h.observe_origin_latency(time.monotonic() - started)
        timing = _Timing(request_time, time.time())
        try:
            await self._relay(conn, ex, fetch, response, timing)
        finally:
            if fetch.fill is None or not fetch.fill.detached:  # (else its task owns the response)
                response.release()

    async def _answer_origin_failure(
        self, conn: Connection, ex: Exchange, fetch: Fetch, status: int, detail: str
    ) -> None:
        # a stale-if-error answer opens the file anew, so that a purge made meanwhile wins
        close_opened(fetch.opened)
        if fetch.background:
            return  # nobody to answer; the stale entry stays, a later stale hit tries again
        if fetch.stored is not None and await self._served_stale(conn, ex, fetch, None, detail):
            return
        message = "origin timed out" if status == 504 else "origin unavailable"
        self.h.write_local_error(conn, ex.head, status, message, ex, fetch.outcome, detail)

    # -- the response --------------------------------------------------------------------------

    async def _relay(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        response: OriginResponse,
        timing: _Timing,
    ) -> None:
        stored = fetch.stored
        if stored is not None and ex.method == "HEAD" and response.status == 200:
            refreshed = self._update_from_head(ex, fetch, stored, response, timing)
            if refreshed is not None:
                # Answered from the updated entry, as after a 304: fields the HEAD did not send
                # are the stored response's (§3.2), and its Content-Length is the stored body's.
                tier = "disk" if fetch.large is not None else "memory"
                self.h.write_stored(
                    conn, ex, refreshed, _revalidated(fetch), time.time(), fwd_status=200, tier=tier
                )
                return
            passed = replace(fetch, stored=None, large=None)  # another representation: as is
            await self._relay_response(conn, ex, passed, response, timing)
            return
        if fetch.background and fetch.large is not None and stored is not None:
            self._refresh_large_quietly(ex, stored, fetch.large, response, timing)
            return
        if stored is not None and response.status == 304 and fetch.large is not None:
            await self._refresh_large(conn, ex, fetch, stored, fetch.large, response, timing)
            return
        # Not streamed from: an unlinked file's blocks stay allocated while it is open.
        close_opened(fetch.opened)
        if stored is not None and response.status == 304:
            if is_refreshable_by(stored, response.headers):
                refreshed = self._apply_refresh(ex, stored, None, response, timing)
                self.h.write_stored(
                    conn, ex, refreshed, _revalidated(fetch), time.time(), fwd_status=304
                )
                return
            # The 304 names another representation: fetch it whole instead.
            await self._forward(conn, ex, Fetch(fetch.outcome, None, fetch.store))
            return
        if stored is not None and response.status >= 500:
            self.stats.origin_errors["status"] += 1
            if self._may_serve_stale(ex, stored):
                response.close()  # before a large stale body streams from disk
                await self._served_stale(conn, ex, fetch, response.status, "stale-if-error")
                return
        if fetch.large is not None and stored is not None and response.status < 500:
            # A full response replaces the stored one (RFC 9111 §4.3.3).
            self.h.store.invalidate(ex.key)
            if self._may_fill_with(ex, fetch, response):
                await self._relay_as_fill(conn, ex, fetch, response, timing)
                return
        await self._relay_response(conn, ex, fetch, response, timing)

    def _may_fill_with(self, ex: Exchange, fetch: Fetch, response: OriginResponse) -> bool:
        """Can a revalidation's full 200 be stored as a miss's would (a fill that spills to a
        file and lands on disk, joinable meanwhile)? For a plain GET nobody else is filling;
        ranged and conditional clients keep their own paths (the next miss stores it)."""
        return (
            response.status == 200
            and fetch.fill is None
            and ex.method == "GET"
            and not ex.ranged
            and not ex.conditional
            and self.h.fills.get(ex.key) is None
        )

    async def _relay_as_fill(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        response: OriginResponse,
        timing: _Timing,
    ) -> None:
        """A large entry's revalidation answered in full: relayed through a fill of its own,
        so the new body is stored now (on disk, from its spill file) instead of by the next
        miss, which would download the object a second time; later requests join it."""
        fill = self.h.fills.start(ex.key)
        try:
            as_miss = replace(fetch, stored=None, large=None, fill=fill)  # the old entry is gone
            await self._relay_response(conn, ex, as_miss, response, timing)
        finally:
            if not fill.detached:
                self._end_fill(ex.key, fill)

    def _apply_refresh(
        self,
        ex: Exchange,
        stored: StoredResponse,
        large: LargeEntry | None,
        response: OriginResponse,
        timing: _Timing,
    ) -> StoredResponse:
        """``stored`` refreshed by a 304 or a matching HEAD (RFC 9111 §4.3.4, §4.3.5, §3.2),
        attributed as it was, and put in place of the stored one: in memory, or rewritten on
        disk for a ``large`` entry (whose stored body is empty: its length comes from the
        entry). Not put back if a hard purge ran while it revalidated (the purge removed the
        entry: nothing to refresh); a soft one marks it stale (still to revalidate)."""
        refreshed = refresh_stored_response(
            stored,
            response.headers,
            timing.request_time,
            timing.response_time,
            self.settings.admission,
        )
        if large is not None:
            refreshed = _with_body_length(refreshed, large.body_of(stored)[1])
        refreshed = with_attribution(refreshed, stored.attribution)
        refreshed.head_bytes = strip_surrogate_fields(refreshed.head_bytes)
        purged = self.h.store.recent_purges.verdict(ex.key, refreshed)
        if purged == "soft":
            refreshed.stale_marked = True
        if purged == "hard":
            return refreshed
        if large is not None:
            self.h.store.refresh_large(ex.key, large, stored, refreshed)
        else:
            self.h.store.replace(ex.key, stored, refreshed)
        return refreshed

    async def _refresh_large(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        stored: StoredResponse,
        large: LargeEntry,
        response: OriginResponse,
        timing: _Timing,
    ) -> None:
        """A 304 for a large disk entry (RFC 9111 §4.3.4): its refreshed head is written to the
        disk (the file rewritten from itself, every chunk verified, in the background) and the
        answer streams from the verified file."""
        if not is_refreshable_by(stored, response.headers):
            close_opened(fetch.opened)
            await self._forward(conn, ex, Fetch(fetch.outcome, None, fetch.store))
            return
        # Taken before the rewrite starts: the old inode stays readable through it after the
        # rename, and it holds the body this 304 validated.
        body_fd = fetch.opened.pop() if fetch.opened else None
        refreshed = self._apply_refresh(ex, stored, large, response, timing)
        outcome = _revalidated(fetch)
        entry = large.with_variants(tuple(refreshed if v is stored else v for v in large.variants))
        await self.h.disk_path.serve_large(
            conn, ex, entry, refreshed, outcome, time.time(), fwd_status=304, body_fd=body_fd
        )

    def _update_from_head(
        self,
        ex: Exchange,
        fetch: Fetch,
        stored: StoredResponse,
        response: OriginResponse,
        timing: _Timing,
    ) -> StoredResponse | None:
        """RFC 9111 §4.3.5: a 200 to a HEAD updates the stored GET response the request could
        have been answered from (its fields, as a 304's would, §3.2): the updated response,
        kept unless a hard purge ran meanwhile. None when the HEAD shows another
        representation, which makes the stored one stale: a memory entry is marked stale
        (still there for stale-if-error), a large disk entry is dropped."""
        large = fetch.large
        length = large.body_of(stored)[1] if large is not None else len(stored.body)
        if not is_freshened_by_head(stored, response.headers, length):
            if large is None:
                stored.stale_marked = True
            else:
                self.h.store.invalidate(ex.key)
            return None
        return self._apply_refresh(ex, stored, large, response, timing)

    def _refresh_large_quietly(
        self,
        ex: Exchange,
        stored: StoredResponse,
        large: LargeEntry,
        response: OriginResponse,
        timing: _Timing,
    ) -> None:
        """A background revalidation of a large disk entry (RFC 5861 §3), which has nobody to
        stream a body to: a 304 refreshes the stored head (RFC 9111 §4.3.4); a full answer
        (§4.3.3) invalidates the entry without downloading the body for nobody, so the next
        request fetches and stores it; an error keeps the stale entry (tried again by a later
        stale hit)."""
        if response.status == 304 and is_refreshable_by(stored, response.headers):
            self._apply_refresh(ex, stored, large, response, timing)
            return
        if response.status < 500:
            self.h.store.invalidate(ex.key)
        else:
            self.stats.origin_errors["status"] += 1
        response.close()

    def _may_serve_stale(self, ex: Exchange, stored: StoredResponse, now: float = 0.0) -> bool:
        return may_serve_stale_on_error(
            stored, ex.directives, now or time.time(), self.settings.stale_if_error_default_s
        )

    async def _served_stale(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        fwd_status: int | None,
        detail: str,
    ) -> bool:
        """RFC 5861 §4: answer with the stale copy when the origin failed and it may serve (a
        large disk entry's streamed from its file)."""
        stored = fetch.stored
        assert stored is not None
        now = time.time()
        if not self._may_serve_stale(ex, stored, now):
            return False
        if fetch.large is not None:
            await self.h.disk_path.serve_large(
                conn,
                ex,
                fetch.large,
                stored,
                outcomes.STALE_IF_ERROR,
                now,
                fwd_status=fwd_status,
                detail=detail,
            )
            return True
        self.h.write_stored(
            conn, ex, stored, outcomes.STALE_IF_ERROR, now, fwd_status=fwd_status, detail=detail
        )
        return True

    def _storable(
        self, ex: Exchange, fetch: Fetch, response: OriginResponse, headers: Headers
    ) -> bool:
        if not fetch.store or ex.method != "GET":
            return False
        directives = effective_directives(headers, self.settings.admission.targeted_fields)
        reason = reason_not_storable(
            ex.method,
            ex.head.headers,
            ex.directives,
            response.status,
            headers,
            directives,
            self.settings.storage,
        )
        if reason is not None:
            self.stats.not_stored[reason] += 1
            return False
        return True

    async def _relay_response(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        response: OriginResponse,
        timing: _Timing,
    ) -> None:
        headers = strip_hop_by_hop(response.headers)
        self._invalidate_after_unsafe(ex, response.status, headers)
        # Shareable: the cache could keep it, so collapsed clients may have it too. Stored:
        # also small enough; a larger body is shared from a file (Fill.spill), never stored.
        shareable = self._storable(ex, fetch, response, headers)
        too_large = (
            response.content_length is not None and response.content_length > self._storable_bytes()
        )
        if (
            shareable
            and too_large
            and response.content_length is not None
            and response.content_length > self.h.store.disk_storable_bytes()
        ):
            self.stats.not_stored["too-large"] += 1
        will_store = shareable and not too_large
        fill = fetch.fill
        whole_for_range = _fills_for_range(ex, fetch) and response.status != 206
        detach = whole_for_range and self._fills_disk_for_range(ex, fetch, response, shareable)
        if (
            whole_for_range
            and not detach
            and not (
                will_store
                and response.content_length is not None
                and response.content_length <= self.settings.range_fill_max_bytes
            )
        ):
            # Too large (or of unknown length) to buffer for a range, or not storable: ask the
            # origin for the range itself and pass its answer through (a 206 is never stored;
            # one the origin sent unasked is passed through as it is).
            response.close()
            if fill is not None:
                fill.release()
                self.h.fills.mark_uncacheable(ex.key, time.time())
            await self._forward(conn, ex, Fetch(fetch.outcome, None, store=False))
            return
        if fill is not None:
            if shareable and too_large and not self._spill(ex.key, fill):
                shareable = False  # no room for the spool: the others fetch for themselves
            if shareable:
                fill.publish(
                    FillHead(
                        response.status,
                        response.reason,
                        headers,
                        response.content_length,
                        vary_key(vary_names(headers), ex.head.headers),
                    )
                )
            else:
                fill.release()
                self.h.fills.mark_uncacheable(ex.key, time.time())
        if detach:
            if fill is not None and shareable:
                self._fill_detached(ex, fetch, fill, response, headers, will_store, timing)
            else:
                response.close()  # no room for the spool: as for any range too large to fill
            # This client's range goes to the origin on its own, at once, passed through.
            await self._forward(conn, ex, Fetch(fetch.outcome, None, store=False))
            return
        if will_store and (whole_for_range or _has_client_validators(ex)):
            # Fill the cache, then answer the client's own conditional or range from what was
            # stored.
            body = await self._read_whole(response)
            if body is None:
                if fill is not None:
                    fill.fail(OriginError("garbage", "short body"))
                conn.abort()
                return
            if fill is not None:
                fill.push(body)
                fill.finish()
            candidate = self.h.attribution_candidate(ex, headers, response.status)
            digest = hashlib.sha256(body).hexdigest() if candidate is not None else None
            attribution = self.h.verified_attribution(ex, candidate, digest)
            if fill is not None:
                fill.attribution = attribution
            stored = self._store(ex, response, headers, body, timing, attribution)
            if stored is not None:
                self.h.write_stored(conn, ex, stored, fetch.outcome, time.time(), stored_flag=True)
                return
            await self._write_forwarded(conn, ex, fetch, response, headers, False, timing, [body])
            return
        await self._write_forwarded(
            conn, ex, fetch, response, headers, will_store, timing, None, shareable
        )

    def _fills_disk_for_range(
        self, ex: Exchange, fetch: Fetch, response: OriginResponse, shareable: bool
    ) -> bool:
        """Does this Range miss's whole-object answer, too large to wait for, still fill the
        cache (on disk, in the background, as a large GET's fill does)? Only a storable 200 of
        known length that the disk takes, and a fill others may join."""
        fill = fetch.fill
        length = response.content_length
        return (
            shareable
            and response.status == 200
            and fill is not None
            and fill.joinable
            and length is not None
            and self.settings.range_fill_max_bytes < length <= self.h.store.disk_storable_bytes()
        )

    def _fill_detached(
        self,
        ex: Exchange,
        fetch: Fetch,
        fill: Fill,
        response: OriginResponse,
        headers: Headers,
        will_store: bool,
        timing: _Timing,
    ) -> None:
        """Go on with ``fill`` in a task of its own, with nobody to write to, as a fill whose
        client left goes on: collapsed GETs read it, and it is stored as it would have been.
        The task owns the response and ends the fill. Shutdown does not wait for it (a large
        body could hold the process for minutes): like a connection's fill past the grace
        period, it is cancelled with the loop, and nothing half-written is stored."""
        fill.detached = True

        async def drive() -> None:
            try:
                await self._write_forwarded(
                    NullConnection(closed=True), ex, fetch, response, headers, will_store,
                    timing, None, shareable=True, client=False,
                )  # fmt: skip
            except Exception:
                log.exception("background fill of %s failed", ex.key)
            finally:
                response.release()
                self._end_fill(ex.key, fill)

        task = asyncio.get_running_loop().create_task(drive())
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    def _storable_bytes(self) -> int:
        """The largest body worth buffering for the store: the object limit, or less when no
        tier could take it (the memory tier's budget, the disk's write queue)."""
        return min(self.settings.max_object_bytes, self.h.store.max_storable_bytes())

    def _store_spilled(
        self,
        ex: Exchange,
        response: OriginResponse,
        headers: Headers,
        fill: Fill,
        timing: _Timing,
    ) -> None:
        """A shared fill too large for memory has its whole body in its spill file: store it on
        disk from there (a copy in a thread, never the body in memory), while the fill stays
        joinable; the next wave of requests is a disk hit."""
        size = fill.size_bytes
        spool = fill.spool
        if spool is None or not fill.shared or size > self.h.store.disk_storable_bytes():
            return  # counted as too large as it passed the limit (FillStreamer)
        stored = make_stored_response(
            response.status,
            response.reason,
            headers,
            b"",
            ex.head.headers,
            timing.request_time,
            timing.response_time,
            self.settings.admission,
        )
        try:
            stored = _with_body_length(stored, size)
        except ValueError as err:
            log.warning("cannot store %s from its spill file: %s", ex.key, err)
            return
        stored = with_attribution(stored, fill.attribution)
        stored.head_bytes = strip_surrogate_fields(stored.head_bytes)
        purged = self.h.store.recent_purges.verdict(ex.key, stored)
        if purged == "hard":
            self.stats.not_stored["purged"] += 1
            return
        if purged == "soft":
            stored.stale_marked = True
        try:
            source = os.dup(spool.fileno())  # the spool may close before the copy is done
        except OSError as err:
            log.warning("cannot store %s from its spill file: %s", ex.key, err)
            return
        fill.storing = self.h.store.put_spilled(ex.key, stored, source, size)

    def _spill(self, key: str, fill: Fill) -> bool:
        """Move a fill too large for the cache to a file, next to the disk tier (a real disk,
        not a tmpfs in RAM) when there is one. False when no file can be made: the fill is
        then released (its waiters fetch for themselves) and the key marked hit-for-miss."""
        disk = self.h.store.disk
        try:
            fill.spill(str(disk.directory) if disk is not None else None)
        except OSError as err:
            log.warning("cannot spill the body of %s to a file: %s", key, err)
            fill.release()
            self.h.fills.mark_uncacheable(key, time.time())
            return False
        return True

    async def _read_whole(self, response: OriginResponse) -> bytes | None:
        parts: list[bytes] = []
        try:
            async for chunk in response.chunks():
                parts.append(chunk)
                self.stats.origin_bytes += len(chunk)
        except OriginError as error:
            self.stats.origin_errors[error.kind] += 1
            return None
        body = b"".join(parts)
        if response.content_length is not None and len(body) != response.content_length:
            return None
        return body

    def _store(
        self,
        ex: Exchange,
        response: OriginResponse,
        headers: Headers,
        body: bytes,
        timing: _Timing,
        attribution: Attribution | None = None,
    ) -> StoredResponse | None:
        stored = make_stored_response(
            response.status,
            response.reason,
            headers,
            body,
            ex.head.headers,
            timing.request_time,
            timing.response_time,
            self.settings.admission,
        )
        stored = with_attribution(stored, attribution)
        stored.head_bytes = strip_surrogate_fields(stored.head_bytes)
        purged = self.h.store.recent_purges.verdict(ex.key, stored)
        if purged == "hard":  # purged while it was on its way: as if stored, then purged
            self.stats.not_stored["purged"] += 1
            return None
        if purged == "soft":
            stored.stale_marked = True
        if not self.h.store.put(ex.key, stored):
            self.stats.not_stored["too-large"] += 1
            return None
        return stored

    def _invalidate_after_unsafe(self, ex: Exchange, status: int, headers: Headers) -> None:
        for key in keys_to_invalidate(
            ex.method, status, ex.route.scheme, ex.host or ex.route.authority, ex.target, headers
        ):
            if self.h.store.invalidate(key):
                self.stats.invalidations += 1

    def _client_head(
        self,
        ex: Exchange,
        status: int,
        reason: str,
        headers: Headers,
        content_length: int | None,
        outcome: Outcome,
        *,
        age_s: float | None,
        stored: bool,
        collapsed: bool = False,
    ) -> tuple[bytes, bool, bool]:
        """The head for a forwarded response, and (chunked?, keep_alive?) for its body."""
        out = [(n, v) for n, v in headers if n.lower() not in SURROGATE_FIELDS]
        if not any(n.lower() == "date" for n, _ in out):
            out = [*out, ("Date", format_http_date(time.time()))]
        if age_s is not None:
            out = [(n, v) for n, v in out if n.lower() != "age"]
            out.append(("Age", str(int(age_s))))
        via = get_values(out, "via")
        out = [(n, v) for n, v in out if n.lower() != "via"]
        out.append(("Via", ", ".join([*via, self.settings.via])))
        has_body = ex.method != "HEAD" and status_allows_body(status)
        chunked = False
        keep_alive = ex.keep_alive
        if has_body and content_length is None:
            if ex.http10:
                keep_alive = False  # RFC 9112 §6.3: the end of the body is the close
            else:
                chunked = True
                out.append(("Transfer-Encoding", "chunked"))
        status_text = cache_status(
            self.settings.cache_name,
            outcome,
            fwd_status=None if collapsed else status,
            stored=stored,
            collapsed=collapsed,
        )
        trailer = render_trailer(status_text, outcome.x_cache, ex.request_id, keep_alive, ex.http10)
        return forwarded_head(status, reason, out, trailer), chunked, keep_alive

    async def _write_forwarded(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        response: OriginResponse,
        headers: Headers,
        will_store: bool,
        timing: _Timing,
        prefetched: list[bytes] | None,
        shareable: bool = False,
        client: bool = True,
    ) -> None:
        """Stream the origin's answer to the client through the fill. Without a ``client``
        (a detached fill) nothing is recorded: nobody was served these bytes."""
        age = None
        to_disk = (
            shareable
            and not will_store
            and fetch.fill is not None
            and response.content_length is not None
            and response.content_length <= self.h.store.disk_storable_bytes()
        )
        if will_store or to_disk:
            age = corrected_initial_age(
                headers,
                timing.request_time,
                timing.response_time,
                date_value(headers, timing.response_time),
            )
        head, chunked, keep_alive = self._client_head(
            ex,
            response.status,
            response.reason,
            headers,
            response.content_length,
            fetch.outcome,
            age_s=age,
            stored=will_store or to_disk,
        )
        outcome, status = fetch.outcome, response.status
        if ex.method == "HEAD" or not status_allows_body(status):
            if will_store and ex.method == "GET":  # a 204 is storable like any final response
                self._store(ex, response, headers, b"", timing, None)
            self.h.finish(ex, outcome, status, 0, "origin")
            conn.write(head)
            conn.keep_alive = conn.keep_alive and keep_alive
            return
        conn.write(head)
        body = _iterate(prefetched) if prefetched is not None else response.chunks()
        fill = fetch.fill if (will_store or shareable) else None
        if will_store and fill is None:
            fill = Fill.private()  # nobody to share with: it is only the cache's buffer
        candidate = self.h.attribution_candidate(ex, headers, status)
        attributed: list[Attribution | None] = []  # checked once, when the body is complete

        def attribute(digest: str | None) -> Attribution | None:
            if not attributed:
                attributed.append(self.h.verified_attribution(ex, candidate, digest))
                if fill is not None:
                    fill.attribution = attributed[0]  # collapsed waiters served the same bytes
            return attributed[0]

        def record(sent: int, origin_bytes: int, digest: str | None) -> None:
            attribution = attribute(digest)
            if client:
                self.h.finish(ex, outcome, status, sent, "origin", origin_bytes, attribution)

        completion = Completion(record, response.content_length, hashing=candidate is not None)

        async def body_complete(whole: Fill | None) -> None:
            """The origin's body is all in, the fill not yet finished: attribute it (before any
            collapsed client can be recorded) and store a spilled body that fits."""
            hasher = completion.hasher
            attribute(hasher.hexdigest() if hasher is not None else None)
            if not (will_store and whole is not None and whole.spilled and whole.shared):
                return
            # Only a body of unknown length is spilled and still storable (a known one is
            # spilled only when too large), and then this runs after its last chunk went in.
            if response.content_length is None and whole.size_bytes <= self._storable_bytes():
                kept = await whole.read_back()  # small enough after all
                if kept is not None:
                    self._store(ex, response, headers, kept, timing, whole.attribution)

        def spilled_complete(whole: Fill) -> None:
            if not shareable or whole is not fetch.fill:
                return
            if response.content_length is None and whole.size_bytes <= self._storable_bytes():
                return  # read back and stored in memory (body_complete)
            self._store_spilled(ex, response, headers, whole, timing)

        sent = await self.streamer.stream_fill(
            conn,
            fill,
            body,
            chunked,
            prefetched is None,
            completion,
            response.content_length,
            ex.key,
            body_complete,
            spilled_complete,
        )
        if sent is None:
            if client:
                completion.fail(self.h, ex, outcome, status)
            return  # (a detached spilled fill is stored by spilled_complete)
        completion(sent)
        if chunked:
            conn.write(b"0\r\n\r\n")
        if will_store and fill is not None and fill.shared and not fill.spilled:
            self._store(ex, response, headers, b"".join(fill.chunks), timing, fill.attribution)
        conn.keep_alive = conn.keep_alive and keep_alive

    # -- collapsed waiters -----------------------------------------------------------------------

    async def join(self, conn: Connection, ex: Exchange, fill: Fill, fallback: Fetch) -> None:
        """Answer from a fill another request started; fetch alone if it can't be shared."""
        fill.waiters += 1
        try:
            head = await fill.wait_head()
            if head is None or (head.vary and not is_vary_match(head.vary, ex.head.headers)):
                await self.forward(conn, ex, fallback)
                return
            if (
                ex.ranged
                and ex.method == "GET"
                and (
                    await self._answer_range_from_fill(conn, ex, fill, fallback.outcome)
                    or await self._answer_range_from_large_fill(conn, ex, fill, head, fallback)
                )
            ):
                return
            out_head, chunked, keep_alive = self._client_head(
                ex,
                head.status,
                head.reason,
                head.headers,
                head.content_length,
                fallback.outcome,
                age_s=None,
                stored=False,
                collapsed=True,
            )
            outcome, status = fallback.outcome, head.status
            if ex.method == "HEAD" or not status_allows_body(status):
                self.h.finish(ex, outcome, status, 0, "origin")
                conn.write(out_head)
                return
            conn.write(out_head)
            completion = Completion(
                lambda sent, origin, _: self.h.finish(
                    ex, outcome, status, sent, "origin", origin, fill.attribution
                ),
                head.content_length,
            )
            sent = await self.streamer.send(
                conn, fill.stream(), chunked, completion, count_errors=True
            )
            if sent is None:
                completion.fail(self.h, ex, outcome, status)
                return
            completion(sent)
            if chunked:
                conn.write(b"0\r\n\r\n")
            conn.keep_alive = conn.keep_alive and keep_alive
        finally:
            fill.waiters -= 1
            fill.close_if_unused()

    async def _answer_range_from_fill(
        self, conn: Connection, ex: Exchange, fill: Fill, outcome: Outcome
    ) -> bool:
        """A collapsed Range request: wait for the whole object, then cut the range from what
        the leader stored. False (nothing written) when it was not stored."""
        head = fill.head
        if head is None or head.status != 200 or head.content_length is None:
            return False
        if head.content_length > self.settings.range_fill_max_bytes:
            return False
        try:
            await fill.wait_done()
        except OriginError:
            self.h.finish(ex, outcome, head.status, 0, "origin", failed=True)
            conn.abort()
            return True
        stored, _any = self.h.store.select(ex.key, ex.head.headers)
        if stored is None:
            return False
        self.h.write_stored(conn, ex, stored, outcome, time.time())
        return True

    async def _answer_range_from_large_fill(
        self, conn: Connection, ex: Exchange, fill: Fill, head: FillHead, fallback: Fetch
    ) -> bool:
        """A collapsed Range request on a 200 too large to wait for whole, evaluated against
        the fill's head as against a stored response (RFC 9110 §14.2, §13.1.5): one range
        that starts at or near what has arrived is streamed from the fill as a 206; one further
        ahead goes to the origin on its own, passed through; nothing satisfiable is a 416.
        False (nothing written) to send the whole 200 as to any joiner: several ranges (not
        worth a multipart cut from a moving fill), or a Range ignored (If-Range, syntax)."""
        length = head.content_length
        if head.status != 200 or length is None or length <= self.settings.range_fill_max_bytes:
            return False
        selection = select_ranges_in(
            head.status,
            head.headers,
            length,
            get_values(ex.head.headers, "range"),
            get_values(ex.head.headers, "if-range"),
        )
        if selection is None or (selection != "unsatisfiable" and len(selection) != 1):
            self.stats.range_requests["ignored"] += 1
            return False
        outcome = fallback.outcome
        if selection == "unsatisfiable":
            self.stats.range_requests["unsatisfiable"] += 1
            out_head, _chunked, keep_alive = self._client_head(
                ex,
                416,
                "Range Not Satisfiable",
                unsatisfied_fields(head.headers, length),
                0,
                outcome,
                age_s=None,
                stored=False,
                collapsed=True,
            )
            self.h.finish(ex, outcome, 416, 0, "origin", 0, fill.attribution)
            conn.write(out_head)
            conn.keep_alive = conn.keep_alive and keep_alive
            return True
        part = selection[0]
        if part.first > fill.size_bytes + RANGE_JOIN_AHEAD_BYTES:
            # As the leader of a large fill does with its own range: asked of the origin at
            # once, its 206 passed through and not stored (RFC 9111 §3.3).
            await self._forward(conn, ex, Fetch(outcome, None, store=False))
            return True
        self.stats.range_requests["single"] += 1
        out_head, _chunked, keep_alive = self._client_head(
            ex,
            206,
            "Partial Content",
            partial_fields(head.headers, part, length),
            part.size_bytes,
            outcome,
            age_s=None,
            stored=False,
            collapsed=True,
        )
        conn.write(out_head)
        completion = Completion(
            lambda sent, origin, _: self.h.finish(
                ex, outcome, 206, sent, "origin", origin, fill.attribution
            ),
            part.size_bytes,
        )
        pieces = _cut(fill.stream(part.first), part.size_bytes)
        sent = await self.streamer.send(conn, pieces, False, completion, count_errors=True)
        if sent is None:  # the fill failed (the connection is dropped) or the client left
            completion.fail(self.h, ex, outcome, 206)
            return True
        completion(sent)
        conn.keep_alive = conn.keep_alive and keep_alive
        return True


class NullConnection:
    """Where work without a client writes: nowhere. A background revalidation's is open; a
    detached fill's is ``closed``, so the fill never reads its spool back for it."""

    peer_ip = "127.0.0.1"

    def __init__(self, *, closed: bool = False) -> None:
        self.closed = closed
        self.keep_alive = not closed

    def write(self, data: bytes) -> None:
        pass

    def write_recorded(self, data: bytes) -> None:
        pass

    def write_parts(self, parts: tuple[bytes, ...], recorded: bool) -> None:
        pass

    async def drain(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def request_body(self) -> None:
        return None


def close_opened(opened: list[int] | None) -> None:
    """Close what is left in ``opened``: a large entry's file opened for an answer that did not
    stream from it (`Fetch.opened` when the answer is not a 304's, `DiskPath.serve_large`'s when
    no body was sent). The list ends empty, so a second call closes nothing twice."""
    while opened:
        os.close(opened.pop())


def _revalidated(fetch: Fetch) -> Outcome:
    """The outcome of an answer a 304 refreshed: forced by the client's no-cache, or not."""
    if fetch.outcome is outcomes.REQUEST_MISS:
        return Outcome("revalidated", "REVALIDATED", False, fwd="request")
    return outcomes.REVALIDATED


def _fills_for_range(ex: Exchange, fetch: Fetch) -> bool:
    """Does this request go forward without its Range, to fetch the whole object for the cache
    and cut the range from it? Only a GET that leads a fill or refreshes a stored copy."""
    return (
        ex.ranged
        and ex.method == "GET"
        and fetch.store
        and (fetch.fill is not None or fetch.stored is not None)
    )


def _with_body_length(stored: StoredResponse, body_len: int) -> StoredResponse:
    """``stored`` built with an empty body, given the length of the body kept elsewhere (a
    spill file): the Content-Length admission wrote in its head, and its size."""
    empty = b"\r\nContent-Length: 0\r\n"
    if stored.head_bytes.count(empty) != 1:
        raise ValueError("stored head without its one Content-Length")
    head = stored.head_bytes.replace(empty, b"\r\nContent-Length: %d\r\n" % body_len)
    return replace(
        stored,
        head_bytes=head,
        size_bytes=stored.size_bytes + body_len + len(head) - len(stored.head_bytes),
    )


def _has_client_validators(ex: Exchange) -> bool:
    return any(n.lower() in _CLIENT_VALIDATORS for n, _ in ex.head.headers)


async def _iterate(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _cut(pieces: AsyncGenerator[bytes, None], size: int) -> AsyncGenerator[bytes, None]:
    """The first ``size`` bytes of ``pieces``; OriginError if they end before (the reader
    then drops its connection: never a short 206 that looks complete)."""
    left = size
    async with contextlib.aclosing(pieces):
        async for piece in pieces:
            if len(piece) >= left:
                yield piece[:left] if len(piece) > left else piece
                return
            left -= len(piece)
            yield piece
    if left > 0:
        raise OriginError("garbage", "fill ended before the range did")
