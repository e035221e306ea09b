"""Answering a memory miss from the disk tier: one verified read per key however many clients
miss at once, promotion into memory, attribution checked again (the disk keeps none), then the
same answer a memory entry would give. The async half of the handler's lookup, as proxy.fetch is
the origin's.

A disk entry whose body is larger than memory admits is not read whole and never promoted: its
verified prefix (a LargeEntry) is shared by the clients that missed together, and each streams
the body from the file a chunk at a time, verifying every chunk before its bytes leave and
waiting on its socket's drain (memory stays flat whatever the size). A chunk that fails cuts
the connection short (never a short 200 that looks whole), and the entry is dropped."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import TYPE_CHECKING

from proxy.cache.admission import provenance_header, with_attribution
from proxy.cache.entry import StoredResponse
from proxy.cache.reuse import Verdict, decide_reuse
from proxy.cache.store import Variants, select_variant
from proxy.cache.surrogate import strip_head_fields
from proxy.cache.tiers.disk import LargeEntry
from proxy.cache.tiers.disk_format import EntryFormatError
from proxy.fetch import Fetch, close_opened
from proxy.http import cache_status as outcomes
from proxy.http.cache_status import Outcome, cache_status
from proxy.http.fields import Headers, get_values
from proxy.http.wire import status_allows_body
from proxy.partial import partial_head, plan_multipart, render_unsatisfiable, select_ranges_of
from proxy.responses import render_trailer, stored_head

if TYPE_CHECKING:
    from proxy.handler import Connection, Exchange, ProxyHandler
    from proxy.records.emit import Attribution

log = logging.getLogger("cachet.proxy")

_PROVENANCE_FIELD = frozenset({"x-provenance"})
Loaded = Variants | LargeEntry
_INLINE_HASH_BYTES = 64 * 1024  # larger bodies are hashed in a thread


class DiskPath:
    def __init__(self, handler: ProxyHandler) -> None:
        self.h = handler
        self._reads: dict[str, asyncio.Future[Loaded | None]] = {}
        # A stream's read of its next chunk, by the stream's descriptor, while it writes one.
        self._reads_ahead: dict[int, asyncio.Future[bytearray]] = {}

    async def answer(self, conn: Connection, ex: Exchange) -> None:
        """A memory miss the disk tier may answer: read (verified), promote, then as begin()."""
        promoted = self.h.store.variants(ex.key)
        tier = "memory"  # another request's read finished before this task started
        found: Loaded | None = promoted
        if promoted is None:
            tier = "disk"
            found = await self._load(ex)
        if isinstance(found, LargeEntry):
            await self._answer_large(conn, ex, found)
            return
        variants = found
        now = time.time()
        stored, any_variant = select_variant(variants, ex.head.headers)
        if stored is None:
            pending = self.h.answer_missing(conn, ex, any_variant, now)
        else:
            if tier == "disk":
                self.h.stats.disk_hits += 1
            verdict = decide_reuse(stored, ex.directives, ex.pragma_no_cache, now)
            pending = self.h.answer_stored(conn, ex, stored, verdict, now, tier)
        if pending is not None:
            await pending

    async def _load(self, ex: Exchange) -> Loaded | None:
        """One disk read per key however many requests miss memory at once (a hot object after
        a restart must not be read, and held, once per client); the result is promoted, unless
        it is a large entry (only its prefix was read: each client streams the body)."""
        reads = self._reads
        pending = reads.get(ex.key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Loaded | None] = asyncio.get_running_loop().create_future()
        reads[ex.key] = future
        found: Loaded | None = None
        try:
            self.h.stats.disk_reads += 1
            loaded = await self.h.store.load_or_stream(ex.key)
            if isinstance(loaded, LargeEntry):
                found = self._large_after_purges(ex.key, self._attribute_large(ex, loaded))
            elif loaded is not None:
                variants = await self._attribute(ex, loaded)
                found = self._after_purges(ex.key, variants)
                if found is not None:
                    self.h.store.promote(ex.key, found)
        finally:
            del reads[ex.key]
            future.set_result(found)  # None if this read failed: the others go forward
        return found

    def _large_after_purges(self, key: str, entry: LargeEntry) -> LargeEntry | None:
        """`_after_purges` for a large entry: a hard purge since its request drops it whole."""
        marks = self.h.store.recent_purges
        for stored in entry.variants:
            purged = marks.verdict(key, stored)
            if purged == "hard":
                return None
            if purged == "soft":
                stored.stale_marked = True
        return entry

    def _attribute_large(self, ex: Exchange, entry: LargeEntry) -> LargeEntry:
        """`_attribute` without reading the body: a chunked entry's metadata keeps each body's
        SHA-256, and every chunk is checked against the table as it is sent."""
        attributed: list[StoredResponse] = []
        for stored, digest in zip(entry.variants, entry.body_hashes, strict=True):
            plain = _without_attribution(stored)
            candidate = self.h.attribution_candidate(ex, stored.headers, stored.status)
            if candidate is None:
                attributed.append(plain)
                continue
            verified = self.h.verified_attribution(ex, candidate, digest)
            attributed.append(with_attribution(plain, verified))
        return entry.with_variants(tuple(attributed))

    # -- large entries, streamed from their file ---------------------------------------------

    async def _answer_large(self, conn: Connection, ex: Exchange, entry: LargeEntry) -> None:
        h = self.h
        now = time.time()
        stored, any_variant = select_variant(entry.variants, ex.head.headers)
        if stored is None:
            pending = h.answer_missing(conn, ex, any_variant, now)
            if pending is not None:
                await pending
            return
        verdict = decide_reuse(stored, ex.directives, ex.pragma_no_cache, now)
        body_fd: int | None = None
        if verdict is Verdict.FRESH:
            outcome = outcomes.HIT
        elif verdict is Verdict.STALE_ACCEPTED:
            outcome = outcomes.STALE_ACCEPTED
        elif verdict is Verdict.STALE_WHILE_REVALIDATE and (
            stored.etag is not None or stored.last_modified is not None
        ):
            # RFC 5861 §3: the stale body streams at once and a conditional request refreshes
            # the entry in the background. Without a validator the refresh would download the
            # whole object for nobody: that entry is fetched again in the foreground, below.
            # The file is opened before the refresh starts: its full answer drops the entry
            # (RFC 9111 §4.3.3) and its 304 rewrites it (§4.3.4), and either may land before a
            # later open by path, which would find no file and fetch the object again in full.
            if self._streams_body(ex, stored):
                body_fd = await self._open_body(conn, ex, entry)
                if body_fd is None:
                    return
            outcome = outcomes.UPDATING
            h.revalidate_in_background(ex, stored, entry)
        else:
            if ex.directives.has("only-if-cached"):
                h.write_local_error(conn, ex.head, 504, "stale in cache (only-if-cached)", ex)
                return
            forced = ex.directives.has("no-cache") or ex.pragma_no_cache
            miss = outcomes.REQUEST_MISS if forced else outcomes.EXPIRED
            if stored.etag is None and stored.last_modified is None:
                # Nothing to validate with: fetched whole again (collapsed, stored anew).
                await h._fetch_missing(conn, ex, Fetch(miss), now)
                return
            # A 304 answers with the stored body (RFC 9111 §4.3.4), but rewrites the file with
            # the new head (temp file, rename), as may another request's revalidation while
            # this one waits: opened now, the body stays readable whichever rename lands first.
            opened: list[int] = []
            if self._streams_body(ex, stored):
                fd = await self._open_body(conn, ex, entry)
                if fd is None:
                    return
                opened.append(fd)
            try:
                await h.origin_path.forward(
                    conn, ex, Fetch(miss, stored, large=entry, opened=opened)
                )
            finally:
                close_opened(opened)  # not streamed from (the answer was not a 304's)
            return
        h.stats.disk_hits += 1
        await self.serve_large(conn, ex, entry, stored, outcome, now, body_fd=body_fd)

    async def _open_body(self, conn: Connection, ex: Exchange, entry: LargeEntry) -> int | None:
        """``entry``'s file, opened (`LargeEntry.open_body`); None once the object has been
        fetched instead, the file being removed or replaced since its prefix was read (as if
        it had never been found)."""
        try:
            return await asyncio.to_thread(entry.open_body)
        except OSError:
            await self.h._fetch_missing(conn, ex, Fetch(outcomes.URI_MISS), time.time())
            return None

    def _streams_body(self, ex: Exchange, stored: StoredResponse) -> bool:
        """Does an answer with ``stored`` carry its body (not HEAD, a 304 or a bodiless status)?"""
        return (
            ex.method == "GET"
            and status_allows_body(stored.status)
            and not (ex.conditional and self.h._client_not_modified(ex, stored))
        )

    async def serve_large(
        self,
        conn: Connection,
        ex: Exchange,
        entry: LargeEntry,
        stored: StoredResponse,
        outcome: Outcome,
        now: float,
        *,
        fwd_status: int | None = None,
        detail: str | None = None,
        body_fd: int | None = None,
    ) -> None:
        """Answer with ``stored`` (one of ``entry``'s variants) whose body streams from the
        entry's file: HEAD and 304 read no body, ranges only their chunks (RFC 9110 §14).
        ``body_fd``: the file already opened (`LargeEntry.open_body`), taken over by this call;
        None opens it when the body is needed."""
        opened = [] if body_fd is None else [body_fd]  # `_stream` takes it out if it streams
        try:
            await self._serve_large(
                conn, ex, entry, stored, outcome, now, fwd_status, detail, opened
            )
        finally:
            close_opened(opened)  # no body was sent (a 416), or it failed before the stream

    async def _serve_large(
        self,
        conn: Connection,
        ex: Exchange,
        entry: LargeEntry,
        stored: StoredResponse,
        outcome: Outcome,
        now: float,
        fwd_status: int | None,
        detail: str | None,
        opened: list[int],
    ) -> None:
        h = self.h
        if not self._streams_body(ex, stored):
            h.write_stored(
                conn, ex, stored, outcome, now, fwd_status=fwd_status, detail=detail, tier="disk"
            )  # HEAD, 304: no body
            return
        offset, length, _digest = entry.body_of(stored)
        age = int(stored.current_age(now))
        trailer = self._trailer(ex, stored, outcome, now, fwd_status, detail)
        head = stored_head(stored, age, trailer)
        first, end, status = 0, length, stored.status
        if ex.ranged:
            selection = select_ranges_of(
                stored,
                length,
                get_values(ex.head.headers, "range"),
                get_values(ex.head.headers, "if-range"),
            )
            if selection == "unsatisfiable":
                h.stats.range_requests["unsatisfiable"] += 1
                answer = render_unsatisfiable(stored, h.settings.via, length)
                h.finish(ex, outcome, 416, 0, "disk", 0, stored.attribution)
                conn.write(answer.head + b"Age: %d\r\n" % age + trailer)
                return
            if selection is not None and len(selection) == 1:
                h.stats.range_requests["single"] += 1
                part = selection[0]
                extra = _provenance(stored)
                head = partial_head(stored, part, length, h.settings.via, extra)
                head += b"Age: %d\r\n" % age + trailer
                first, end, status = part.first, part.last + 1, 206
            elif selection is not None:
                h.stats.range_requests["multipart"] += 1
                # 96 random bits (RFC 2046 §5.1.1): it can't be checked against a body never
                # read whole, so each part is checked as it streams (a hit cuts it short).
                plan = plan_multipart(
                    stored,
                    selection,
                    length,
                    h.settings.via,
                    os.urandom(12).hex(),
                    _provenance(stored),
                )
                segments: list[bytes | tuple[int, int]] = []
                for part_head, part in plan.parts:
                    segments += [part_head, (offset + part.first, offset + part.last + 1), b"\r\n"]
                segments.append(plan.tail)
                head = plan.head + b"Age: %d\r\n" % age + trailer
                await self._stream(
                    conn,
                    ex,
                    entry,
                    outcome,
                    206,
                    head,
                    segments,
                    stored.attribution,
                    plan.delimiter,
                    opened,
                )
                return
            else:
                h.stats.range_requests["ignored"] += 1
        span = (offset + first, offset + end)
        await self._stream(
            conn, ex, entry, outcome, status, head, [span], stored.attribution, opened=opened
        )

    def _trailer(
        self,
        ex: Exchange,
        stored: StoredResponse,
        outcome: Outcome,
        now: float,
        fwd_status: int | None = None,
        detail: str | None = None,
    ) -> bytes:
        """Cache-Status and the per-response fields, as `ProxyHandler.write_stored` writes them."""
        name = self.h.settings.cache_name
        ttl = stored.freshness_lifetime_s - stored.current_age(now)
        if outcome is outcomes.HIT and ttl >= 0:
            status_text = f"{name}; hit; ttl={int(ttl)}"
        else:
            status_text = cache_status(
                name, outcome, ttl_s=ttl, fwd_status=fwd_status, detail=detail
            )
        return render_trailer(status_text, outcome.x_cache, ex.request_id, ex.keep_alive, ex.http10)

    async def _stream(
        self,
        conn: Connection,
        ex: Exchange,
        entry: LargeEntry,
        outcome: Outcome,
        status: int,
        head: bytes,
        segments: list[bytes | tuple[int, int]],
        attribution: Attribution | None,
        delimiter: bytes | None = None,
        opened: list[int] | None = None,
    ) -> None:
        """``head``, then ``segments`` in order: literal bytes (a multipart part's fields), or a
        span (start, end) of the entry's bodies, each chunk read and verified in a thread (the
        next one read while this one drains), written, drained. The record is made before the
        bytes that complete the answer; a chunk that fails its check drops the entry and the
        connection (the client sees a short body, never a whole one), as does a span holding
        ``delimiter`` (a multipart boundary drawn without the body)."""
        h = self.h
        if opened:
            fd = opened.pop()  # ours to close from here on
        else:
            opened_now = await self._open_body(conn, ex, entry)
            if opened_now is None:
                return
            fd = opened_now
        chunk_bytes = entry.header.chunk_bytes
        total = sum(len(s) if isinstance(s, bytes) else s[1] - s[0] for s in segments)
        sent = 0
        recorded = False
        try:
            conn.write(head)
            if total == 0:
                h.finish(ex, outcome, status, 0, "disk", 0, attribution)
                recorded = True
                return
            for segment in segments:
                if isinstance(segment, bytes):
                    pieces: AsyncGenerator[bytes | bytearray, None] = _literal(segment)
                else:
                    pieces = self._span(entry, fd, chunk_bytes, segment, delimiter)
                async with contextlib.aclosing(pieces):
                    async for piece in pieces:
                        if conn.closed:  # the client went away: recorded with what it got
                            return
                        sent += len(piece)
                        if sent >= total:
                            h.finish(ex, outcome, status, sent, "disk", 0, attribution)
                            recorded = True
                        conn.write(piece)  # type: ignore[arg-type]  # the transport takes bytearray
                        await conn.drain()
        except EntryFormatError as error:
            log.warning("disk tier: %s failed while streaming: %s", entry.name, error)
            h.store.drop_corrupt_large(entry, error)
            conn.abort()
        except (OSError, _BoundaryInBody) as error:  # EIO; a boundary we can't draw again
            log.warning("disk tier: cannot stream %s: %s", entry.name, error)
            conn.abort()
        finally:
            if not recorded:
                h.finish(ex, outcome, status, sent, "disk", 0, attribution, failed=True)
            _close_after(fd, self._reads_ahead.pop(fd, None))

    async def _span(
        self,
        entry: LargeEntry,
        fd: int,
        chunk_bytes: int,
        span: tuple[int, int],
        delimiter: bytes | None,
    ) -> AsyncGenerator[bytearray, None]:
        """The verified bytes of ``span``, a chunk (or its part) at a time; the read of the next
        chunk is left in ``_reads_ahead`` while the caller writes this one."""
        start, end = span
        if end <= start:
            return
        keep = len(delimiter) - 1 if delimiter is not None else 0
        seen = bytearray(b"\r\n")  # the part's fields end with CRLF: a body starting "--b" counts
        first, last = start // chunk_bytes, (end - 1) // chunk_bytes
        for index in range(first, last + 1):
            ahead = self._reads_ahead.pop(fd, None)
            data = await (ahead if ahead is not None else _read_chunk(entry, fd, index))
            if index < last:  # read and verified while this one drains
                self._reads_ahead[fd] = _read_chunk(entry, fd, index + 1)
            at = index * chunk_bytes
            low, high = max(start, at) - at, min(end, at + len(data)) - at
            piece = data if (low, high) == (0, len(data)) else data[low:high]
            if delimiter is not None:
                if delimiter in piece or delimiter in seen + piece[:keep]:
                    raise _BoundaryInBody("the multipart boundary occurs in the body")
                seen = (seen + piece[-keep:])[-keep:]
            yield piece

    def _after_purges(self, key: str, variants: Variants) -> Variants | None:
        """A purge that ran while the read was awaited removed the file but found nothing in
        memory yet; promoting what was read would undo it. Apply it here as a fill does."""
        return self.h.store.recent_purges.surviving(key, variants) or None

    async def _attribute(self, ex: Exchange, variants: Variants) -> Variants:
        """The disk does not keep attribution: check the bytes against today's manifests again,
        as a fill does, so a disk hit is recorded for its creator, and a claim that no longer
        holds loses its X-Provenance."""
        attributed: list[StoredResponse] = []
        for stored in variants:
            plain = _without_attribution(stored)
            candidate = self.h.attribution_candidate(ex, stored.headers, stored.status)
            if candidate is None:
                attributed.append(plain)
                continue
            body = stored.body
            if len(body) <= _INLINE_HASH_BYTES:
                digest = hashlib.sha256(body).hexdigest()
            else:
                digest = await asyncio.to_thread(_sha256_hex, body)
            verified = self.h.verified_attribution(ex, candidate, digest)
            attributed.append(with_attribution(plain, verified))
        return tuple(attributed)


def _without_attribution(stored: StoredResponse) -> StoredResponse:
    head = strip_head_fields(stored.head_bytes, _PROVENANCE_FIELD)
    return replace(
        stored,
        head_bytes=head,
        size_bytes=stored.size_bytes - (len(stored.head_bytes) - len(head)),
        attribution=None,
        record_template=None,
    )


def _provenance(stored: StoredResponse) -> Headers | None:
    """The X-Provenance field a hit on ``stored`` carries, as the handler's ranges add it."""
    attribution = stored.attribution
    if attribution is None or attribution.manifest_id is None:
        return None
    value = provenance_header(attribution.content_id, attribution.creator, attribution.manifest_id)
    return [("X-Provenance", value)]


class _BoundaryInBody(Exception):
    """A streamed multipart part holds its own delimiter."""


async def _literal(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


def _read_chunk(entry: LargeEntry, fd: int, index: int) -> asyncio.Future[bytearray]:
    buffer = entry.chunk_buffer(index)  # allocated here, on the loop's thread
    return asyncio.ensure_future(asyncio.to_thread(entry.read_chunk_into, fd, index, buffer))


def _close_after(fd: int, pending: asyncio.Future[bytearray] | None) -> None:
    """Close ``fd`` once no read of it is left in a worker thread (a thread can't be cancelled:
    closing under it could hand its descriptor number to another file)."""
    if pending is None or pending.done():
        if pending is not None and not pending.cancelled():
            pending.exception()  # retrieved: a read that failed after we stopped is no news
        os.close(fd)
        return

    def close(done: asyncio.Future[bytearray]) -> None:
        if not done.cancelled():
            done.exception()
        os.close(fd)

    pending.add_done_callback(close)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
