"""Answering a memory miss from the disk tier: one verified read per key however many clients
miss at once, promotion into memory, attribution checked again (the disk keeps none), then the
same answer a memory entry would give. The async half of the handler's lookup, as proxy.fetch is
the origin's."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from proxy.cache.admission import with_attribution
from proxy.cache.entry import StoredResponse
from proxy.cache.reuse import decide_reuse
from proxy.cache.store import Variants, select_variant
from proxy.cache.surrogate import strip_head_fields

if TYPE_CHECKING:
    from proxy.handler import Connection, Exchange, ProxyHandler

_PROVENANCE_FIELD = frozenset({"x-provenance"})
_INLINE_HASH_BYTES = 64 * 1024  # larger bodies are hashed in a thread


class DiskPath:
    def __init__(self, handler: ProxyHandler) -> None:
        self.h = handler
        self._reads: dict[str, asyncio.Future[Variants | None]] = {}

    async def answer(self, conn: Connection, ex: Exchange) -> None:
        """A memory miss the disk tier may answer: read (verified), promote, then as begin()."""
        promoted = self.h.store.variants(ex.key)
        tier = "memory"  # another request's read finished before this task started
        variants = promoted
        if promoted is None:
            tier = "disk"
            variants = await self._load(ex)
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

    async def _load(self, ex: Exchange) -> Variants | None:
        """One disk read per key however many requests miss memory at once (a hot object after
        a restart must not be read, and held, once per client); the result is promoted."""
        reads = self._reads
        pending = reads.get(ex.key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Variants | None] = asyncio.get_running_loop().create_future()
        reads[ex.key] = future
        variants: Variants | None = None
        try:
            self.h.stats.disk_reads += 1
            variants = await self.h.store.load(ex.key)
            if variants is not None:
                variants = await self._attribute(ex, variants)
                variants = self._after_purges(ex.key, variants)
                if variants is not None:
                    self.h.store.promote(ex.key, variants)
        finally:
            del reads[ex.key]
            future.set_result(variants)  # None if this read failed: the others go forward
        return variants

    def _after_purges(self, key: str, variants: Variants) -> Variants | None:
        """A purge that ran while the read was awaited removed the file but found nothing in
        memory yet; promoting what was read would undo it. Apply it here as a fill does."""
        marks = self.h.store.recent_purges
        kept: list[StoredResponse] = []
        for stored in variants:
            purged = marks.verdict(key, stored)
            if purged == "hard":
                continue
            if purged == "soft":
                stored.stale_marked = True
            kept.append(stored)
        return tuple(kept) if kept else None

    async def _attribute(self, ex: Exchange, variants: Variants) -> Variants:
        """The disk does not keep attribution: check the bytes against today's manifests again,
        as a fill does, so a disk hit is recorded for its creator, and a claim that no longer
        holds loses its X-Provenance."""
        attributed: list[StoredResponse] = []
        for stored in variants:
            head = strip_head_fields(stored.head_bytes, _PROVENANCE_FIELD)
            plain = replace(
                stored,
                head_bytes=head,
                size_bytes=stored.size_bytes - (len(stored.head_bytes) - len(head)),
                attribution=None,
                record_template=None,
            )
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


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
