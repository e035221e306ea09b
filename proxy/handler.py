"""The shell that drives the pure cache policy for one client request.

`ProxyHandler.begin()` runs synchronously inside the connection's `data_received`: when the cache
can answer on its own (a fresh hit, a 304 from the cache, stale-while-revalidate) the response is
written there and then, with no task, no await and no allocation beyond the response bytes. Every
other request returns a coroutine that the connection runs as a task: it goes forward to the
origin, streams the answer back and stores it when it may.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from provenance.content_id import is_content_id
from provenance.records import is_name
from proxy.cache.admission import AdmissionPolicy, provenance_header
from proxy.cache.entry import StoredResponse
from proxy.cache.reuse import Verdict, decide_reuse
from proxy.cache.storability import StoragePolicy
from proxy.cache.store import ResponseStore
from proxy.collapse import FillRegistry
from proxy.disk_path import DiskPath
from proxy.exchange import Exchange, ExchangeReader, RejectRequest
from proxy.fetch import Fetch, NullConnection, OriginPath
from proxy.http import cache_status as outcomes
from proxy.http.cache_status import Outcome, cache_status
from proxy.http.dates import format_http_date
from proxy.http.etags import if_modified_since_passes, if_none_match_passes
from proxy.http.fields import Headers, get_first, get_values, without_fields
from proxy.http.request_parser import RequestHead
from proxy.http.wire import status_allows_body
from proxy.metrics import ProxyStats
from proxy.origin import OriginClient
from proxy.partial import PartialAnswer, render_partial, render_unsatisfiable, select_ranges
from proxy.records.emit import Attribution
from proxy.responses import (
    error_response,
    not_modified_head,
    render_trailer,
    stored_head,
)
from proxy.routing import Router

if TYPE_CHECKING:
    from proxy.cache.tiers.disk import LargeEntry
    from proxy.recorder import Recorder
    from proxy.registry_client import ManifestIndex
    from proxy.tracing import Tracer

__all__ = [
    "SEPARATE_BODY_BYTES",
    "Connection",
    "Exchange",
    "HandlerSettings",
    "ProxyHandler",
    "RejectRequest",
]  # fmt: skip

log = logging.getLogger("cachet.proxy")
access_log = logging.getLogger("cachet.access")

_BOUNDARY_ATTEMPTS = 4
_RANGE_FIELDS = ("range", "if-range")
SPOOL_FULL_RETRY_AFTER_S = 1  # a full spool drains as fast as the records process seals
_KEEP_ALIVE_11 = b"\r\n"
_KEEP_ALIVE_10 = b"Connection: keep-alive\r\n\r\n"
_CLOSE = b"Connection: close\r\n\r\n"


class Connection(Protocol):
    """What the handler needs from a client connection (proxy.server.ClientConnection)."""

    peer_ip: str
    closed: bool
    keep_alive: bool  # the handler clears it when the response's end is the connection's close

    def write(self, data: bytes) -> None: ...
    def write_recorded(self, data: bytes) -> None: ...
    def write_parts(self, parts: tuple[bytes, ...], recorded: bool) -> None: ...
    async def drain(self) -> None: ...
    def abort(self) -> None: ...
    def request_body(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    storage: StoragePolicy
    admission: AdmissionPolicy
    via: str
    cache_name: str
    max_object_bytes: int
    stale_if_error_default_s: int
    trust_forwarded_from: frozenset[str]
    training_use_header: str = "X-Cachet-Use"
    range_fill_max_bytes: int = 16 * 1024 * 1024


class ProxyHandler:
    def __init__(
        self,
        settings: HandlerSettings,
        router: Router,
        store: ResponseStore,
        origin: OriginClient,
        stats: ProxyStats,
        observe_origin_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.store = store
        self.origin = origin
        self.stats = stats
        self.observe_origin_latency: Callable[[float], None] = (
            observe_origin_latency or _ignore_latency
        )
        self.fills = FillRegistry()
        self.origin_path = OriginPath(self)
        self.disk_path = DiskPath(self)
        self.exchanges = ExchangeReader(router, settings.training_use_header)
        # Bound once: they run for every request.
        self._exchange = self.exchanges.read
        self._new_request_id = self.exchanges.new_request_id
        self._trusted_networks = [
            ipaddress.ip_network(entry, strict=False) for entry in settings.trust_forwarded_from
        ]
        self._trusted_peers: dict[str, bool] = {}
        self._revalidating: set[str] = set()
        # Request ids of exchanges a background revalidation goes on with: their client was
        # answered (and recorded) already, so what the revalidation 'answers' is neither
        # counted nor recorded (one record per client request answered).
        self._answering_nobody: set[str] = set()
        self._hit_status_prefix = f"Cache-Status: {settings.cache_name}; hit; ttl=".encode()
        self.recorder: Recorder | None = None
        self.tracer: Tracer | None = None  # OpenTelemetry export (proxy.tracing); None: off
        self.manifest_indexes: list[ManifestIndex] = []
        self._log_access = access_log.isEnabledFor(logging.INFO)
        self._background: set[asyncio.Task[None]] = set()

    # -- entry point -------------------------------------------------------------------------

    def begin(self, conn: Connection, head: RequestHead) -> Coroutine[Any, Any, None] | None:
        """Answer from the cache now, or return the coroutine that will answer."""
        try:
            ex = self._exchange(head)
        except RejectRequest as rejected:
            self.write_local_error(conn, head, rejected.status, rejected.message)
            return None
        if self.tracer is not None:
            self.tracer.start(ex)
        recorder = self.recorder
        if recorder is not None and recorder.reject_when_full and recorder.refusing:
            # spool_full_policy = "reject": no answer the edge could not record. The 503 itself
            # has no record either (none would fit): it is counted in cachet_spool_full_refusals,
            # not as a dropped record.
            self.stats.spool_full_refusals += 1
            self.write_local_error(
                conn, head, 503, "the record spool is full", ex,
                retry_after_s=SPOOL_FULL_RETRY_AFTER_S, record=False,
            )  # fmt: skip
            return None
        if ex.upstream_of is not None and not self.trusts_forwarding_from(conn.peer_ip):
            # Only a downstream proxy the operator trusts may say the client was served (and is
            # billed) elsewhere; from anyone else the claim would just drop their requests.
            ex.upstream_of = None
        if not ex.lookup:
            outcome = outcomes.METHOD if ex.method not in ("GET", "HEAD") else outcomes.BYPASS
            return self.origin_path.forward(conn, ex, Fetch(outcome, store=ex.method == "GET"))
        now = time.time()
        stored, any_variant = self.store.select(ex.key, head.headers)
        if stored is None:
            if not any_variant and self.store.is_on_disk(ex.key):
                return self.disk_path.answer(conn, ex)
            return self.answer_missing(conn, ex, any_variant, now)
        verdict = decide_reuse(stored, ex.directives, ex.pragma_no_cache, now)
        if verdict is Verdict.FRESH and not (
            ex.conditional
            or ex.ranged
            or ex.method != "GET"
            or not status_allows_body(stored.status)
        ):
            self._write_fresh_hit(conn, ex, stored, now)
            return None
        return self.answer_stored(conn, ex, stored, verdict, now, "memory")

    def answer_missing(
        self, conn: Connection, ex: Exchange, any_variant: bool, now: float
    ) -> Coroutine[Any, Any, None] | None:
        if ex.directives.has("only-if-cached"):
            self.write_local_error(conn, ex.head, 504, "not in cache (only-if-cached)", ex)
            return None  # RFC 9111 §5.2.1.7
        miss = outcomes.VARY_MISS if any_variant else outcomes.URI_MISS
        return self._fetch_missing(conn, ex, Fetch(miss), now)

    def answer_stored(
        self,
        conn: Connection,
        ex: Exchange,
        stored: StoredResponse,
        verdict: Verdict,
        now: float,
        tier: str,
    ) -> Coroutine[Any, Any, None] | None:
        """Everything but the plain fresh hit from memory: conditionals, ranges, HEAD, stale
        answers, revalidation."""
        if verdict is Verdict.FRESH:
            self.write_stored(conn, ex, stored, outcomes.HIT, now, tier=tier)
            return None
        if verdict is Verdict.STALE_ACCEPTED:
            self.write_stored(conn, ex, stored, outcomes.STALE_ACCEPTED, now, tier=tier)
            return None
        if verdict is Verdict.STALE_WHILE_REVALIDATE:
            self.write_stored(conn, ex, stored, outcomes.UPDATING, now, tier=tier)
            self.revalidate_in_background(ex, stored)
            return None
        head = ex.head
        if ex.directives.has("only-if-cached"):
            self.write_local_error(conn, head, 504, "stale in cache (only-if-cached)", ex)
            return None
        forced = ex.directives.has("no-cache") or ex.pragma_no_cache
        outcome = outcomes.REQUEST_MISS if forced else outcomes.EXPIRED
        if stored.etag is None and stored.last_modified is None and not forced:
            # Nothing to validate with: a plain miss that may be collapsed; the stale copy is
            # kept in the plan for stale-if-error.
            return self._fetch_missing(conn, ex, Fetch(outcome, stored), now)
        return self.origin_path.forward(conn, ex, Fetch(outcome, stored))

    def _fetch_missing(
        self, conn: Connection, ex: Exchange, fetch: Fetch, now: float
    ) -> Coroutine[Any, Any, None]:
        """A miss: join the fill already on its way for this key, or start one that later
        misses can join (request collapsing)."""
        if ex.method != "GET" or ex.conditional or self.fills.is_uncacheable(ex.key, now):
            return self.origin_path.forward(conn, ex, fetch)
        fill = self.fills.get(ex.key)
        if fill is not None:
            return self.origin_path.join(conn, ex, fill, fetch)
        fill = self.fills.start(ex.key)
        return self.origin_path.forward(conn, ex, replace(fetch, fill=fill))

    # -- request analysis --------------------------------------------------------------------

    # -- answering from the cache --------------------------------------------------------------

    def write_stored(
        self,
        conn: Connection,
        ex: Exchange,
        stored: StoredResponse,
        outcome: Outcome,
        now: float,
        *,
        fwd_status: int | None = None,
        detail: str | None = None,
        stored_flag: bool = False,
        tier: str = "memory",
    ) -> None:
        age = stored.current_age(now)
        ttl = stored.freshness_lifetime_s - age
        if outcome is outcomes.HIT and ttl >= 0:
            status_text = f"{self.settings.cache_name}; hit; ttl={int(ttl)}"
        else:
            status_text = cache_status(
                self.settings.cache_name,
                outcome,
                ttl_s=ttl,
                fwd_status=fwd_status,
                stored=stored_flag,
                detail=detail,
            )
        trailer = render_trailer(
            status_text, outcome.x_cache, ex.request_id, ex.keep_alive, ex.http10
        )
        status = stored.status
        if ex.conditional and self._client_not_modified(ex, stored):
            data = not_modified_head(stored, age, self.settings.via, trailer)
            status, sent = 304, 0
        elif ex.method == "HEAD" or not status_allows_body(stored.status):
            data = stored_head(stored, age, trailer)
            sent = 0
        elif (
            ex.ranged
            and ex.method == "GET"
            and (partial := self._partial(ex.head.headers, stored)) is not None
        ):
            data = partial.head + b"Age: %d\r\n" % int(age) + trailer + partial.body
            status, sent = partial.status, len(partial.body)
        else:
            head = stored_head(stored, age, trailer)
            sent = len(stored.body)
            self.account(ex, outcome, status, sent, tier)
            recorded = self._record(ex, outcome.cache, status, sent, tier, 0, stored.attribution)
            _write_head_and_body(conn, recorded, head, stored.body)
            return
        self.account(ex, outcome, status, sent, tier)
        if self._record(ex, outcome.cache, status, sent, tier, 0, stored.attribution):
            conn.write_recorded(data)
        else:
            conn.write(data)

    def _write_fresh_hit(
        self, conn: Connection, ex: Exchange, stored: StoredResponse, now: float
    ) -> None:
        """The most common answer, written with one formatting operation (see
        bench/hit_path_micro.py): same bytes as _write_stored would produce for a plain HIT."""
        age = stored.current_age(now)
        ttl = stored.freshness_lifetime_s - age
        connection = (_KEEP_ALIVE_10 if ex.http10 else _KEEP_ALIVE_11) if ex.keep_alive else _CLOSE
        body = stored.body
        sent = len(body)
        recorded = self.recorder is not None and self._record_hit(ex, stored, now)
        if sent <= SEPARATE_BODY_BYTES:
            (conn.write_recorded if recorded else conn.write)(
                b"%bAge: %d\r\n%b%d\r\nX-Cache-Status: HIT\r\nX-Request-ID: %b\r\n%b%b"
                % (
                    stored.head_bytes,
                    age,
                    self._hit_status_prefix,
                    ttl,
                    ex.request_id.encode("latin-1"),
                    connection,
                    body,
                )
            )
        else:
            head = b"%bAge: %d\r\n%b%d\r\nX-Cache-Status: HIT\r\nX-Request-ID: %b\r\n%b" % (
                stored.head_bytes,
                age,
                self._hit_status_prefix,
                ttl,
                ex.request_id.encode("latin-1"),
                connection,
            )
            _write_head_and_body(conn, recorded, head, body)
        stats = self.stats
        stats.fresh_hits += 1
        stats.fresh_hit_bytes += sent
        if self._log_access:
            self._account_log(ex, outcomes.HIT, stored.status, sent)
        if self.tracer is not None:
            self.tracer.finish(ex, stored.status, "hit", "memory", sent)

    def _partial(self, ex_headers: Headers, stored: StoredResponse) -> PartialAnswer | None:
        """The 206/416 for the request's Range, or None to send the whole 200 (RFC 9110 §14)."""
        selection = select_ranges(
            stored, get_values(ex_headers, "range"), get_values(ex_headers, "if-range")
        )
        if selection is None:
            self.stats.range_requests["ignored"] += 1
            return None
        if selection == "unsatisfiable":
            self.stats.range_requests["unsatisfiable"] += 1
            return render_unsatisfiable(stored, self.settings.via)
        for _attempt in range(_BOUNDARY_ATTEMPTS):
            try:
                # A boundary the body can't contain, short of a 2^-96 chance (RFC 2046 §5.1.1).
                answer = render_partial(
                    stored, selection, self.settings.via, os.urandom(12).hex(), _provenance(stored)
                )
            except ValueError:
                continue
            self.stats.range_requests["multipart" if len(selection) > 1 else "single"] += 1
            return answer
        return None

    @staticmethod
    def _client_not_modified(ex: Exchange, stored: StoredResponse) -> bool:
        """RFC 9110 §13.2.2 as a cache applies it (RFC 9111 §4.3.2): If-None-Match, else
        If-Modified-Since, against the stored response; a malformed field is ignored."""
        if stored.status != 200:
            return False
        headers = ex.head.headers
        if_none_match = get_values(headers, "if-none-match")
        if if_none_match:
            passes = if_none_match_passes(if_none_match, stored.etag)
            if passes is not None:
                return not passes
        if_modified_since = get_values(headers, "if-modified-since")
        if if_modified_since:
            reference = stored.last_modified
            if reference is None:
                reference = stored.date_value
            passes = if_modified_since_passes(if_modified_since[0], reference)
            if passes is not None:
                return not passes
        return False

    def revalidate_in_background(
        self, ex: Exchange, stored: StoredResponse, large: LargeEntry | None = None
    ) -> None:
        """RFC 5861 §3: one background revalidation per URL, however many stale hits. It is
        the proxy's own request, with an id of its own: the client's answer stays the client's
        one record, however long it streams (a large entry's may take minutes)."""
        if ex.key in self._revalidating:
            return
        self._revalidating.add(ex.key)
        ex = replace(ex, request_id=self._new_request_id())
        self._answering_nobody.add(ex.request_id)
        if ex.ranged:  # refresh the whole object, whatever part the trigger asked for
            headers = without_fields(ex.head.headers, _RANGE_FIELDS)
            ex = replace(ex, head=replace(ex.head, headers=headers), ranged=False)
        task = asyncio.get_running_loop().create_task(self._background_refresh(ex, stored, large))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _background_refresh(
        self, ex: Exchange, stored: StoredResponse, large: LargeEntry | None
    ) -> None:
        try:
            sink = NullConnection()
            fetch = Fetch(outcomes.EXPIRED, stored, large=large, background=True)
            await self.origin_path.forward(sink, ex, fetch)
            # Not over until what it learnt is stored: a large entry's refresh (a rewrite of
            # its file) or new body lands in the background, and the stale hits meanwhile
            # would each start another revalidation of an entry still stale on disk.
            writer = self.store.writer
            writing = writer.file_writes(ex.key) if writer is not None else []
            if writing:
                await asyncio.wait(writing)
        except Exception:
            log.exception("background revalidation of %s failed", ex.key)
        finally:
            self._revalidating.discard(ex.key)
            self._answering_nobody.discard(ex.request_id)

    async def drain_background(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- errors and accounting -------------------------------------------------------------------

    def write_local_error(
        self,
        conn: Connection,
        head: RequestHead,
        status: int,
        message: str,
        ex: Exchange | None = None,
        outcome: Outcome = outcomes.BYPASS,
        detail: str | None = None,
        retry_after_s: int | None = None,
        record: bool = True,
    ) -> None:
        request_id = ex.request_id if ex is not None else self._new_request_id()
        status_text = cache_status(self.settings.cache_name, outcome, detail=detail)
        trailer = render_trailer(
            status_text, outcome.x_cache, request_id, head.keep_alive, head.version == (1, 0)
        )
        data = error_response(
            status, message, self.settings.via, format_http_date(time.time()), trailer,
            retry_after_s,
        )  # fmt: skip
        self.stats.requests_by_outcome["ERROR"] += 1
        # A request refused before it was understood (no exchange) served nothing to record.
        if record and ex is not None and self._record(ex, "error", status, 0, "none", 0, None):
            conn.write_recorded(data)
        else:
            conn.write(data)
        if ex is not None and self.tracer is not None:
            self.tracer.finish(ex, status, "error", "none", 0)
        if ex is not None and access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request_id=%s method=%s url=%s status=%d cache=ERROR detail=%s",
                request_id,
                head.method,
                ex.key,
                status,
                detail or message,
            )

    def _record(
        self,
        ex: Exchange,
        cache: str,
        status: int,
        sent: int,
        tier: str,
        origin_bytes: int,
        attribution: Attribution | None,
    ) -> bool:
        """Append this answer's record to the spool; False when nothing was recorded (records
        off, or a hit the sample left out: misses are always recorded)."""
        recorder = self.recorder
        if recorder is None or ex.request_id in self._answering_nobody:
            return False
        encoder = recorder.encoder
        if cache == "hit" and encoder.sample_rate != "1" and not encoder.samples(ex.request_id):
            recorder.skip()
            return False
        recorder.append(
            encoder.encode(
                time.time(),
                ex.request_id,
                ex.method,
                status,
                cache,
                tier,
                sent,
                origin_bytes,
                attribution,
                ex.use,
                ex.upstream_of,
                ex.trace_id,
                ex.key,
            )
        )
        return True

    def trusts_forwarding_from(self, peer_ip: str) -> bool:
        """Is this client one whose X-Forwarded-For we extend (config trust_forwarded_from:
        addresses or networks)?"""
        known = self._trusted_peers.get(peer_ip)
        if known is None:
            try:
                address = ipaddress.ip_address(peer_ip)
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self._trusted_networks)
            if len(self._trusted_peers) < 4096:
                self._trusted_peers[peer_ip] = known
        return known

    def attribution_candidate(
        self, ex: Exchange, headers: Headers, status: int = 200
    ) -> Attribution | None:
        """Whose content the answer claims to be: the manifest index by path, else, for an
        origin the config trusts, its X-Content-Id / X-Creator-Id / X-Manifest-Id headers (all
        three). Only a 200 carries the representation a manifest names (an error page at that
        path is not the creator's bytes). A claim only counts once the bytes hash to its content
        id (`verified_attribution`)."""
        if status != 200:
            return None
        path = ex.target.split("?", 1)[0]
        for index in self.manifest_indexes:
            found = index.lookup_path(ex.host, path)
            if found is not None:
                return found
        if ex.route.origin.trusted:
            content_id = get_first(headers, "x-content-id")
            creator = get_first(headers, "x-creator-id")
            manifest = get_first(headers, "x-manifest-id")
            if (
                content_id
                and creator
                and manifest
                and is_content_id(content_id)
                and is_name(creator)
                and is_content_id(manifest)
            ):
                return Attribution(content_id, creator, manifest)
        return None

    def verified_attribution(
        self, ex: Exchange, candidate: Attribution | None, digest_hex: str | None
    ) -> Attribution | None:
        if candidate is None or digest_hex is None:
            return None
        if candidate.content_id == "sha256:" + digest_hex:
            return candidate
        self.stats.hash_mismatches += 1
        log.warning(
            "content hash mismatch for %s: manifest says %s, bytes are sha256:%s; not attributed",
            ex.key, candidate.content_id, digest_hex,
        )  # fmt: skip
        # The record keeps the claim but no manifest: the edge does not vouch for these bytes,
        # and billing excludes the record as a hash mismatch (docs/billing.md).
        return Attribution(candidate.content_id, candidate.creator, None)

    def _record_hit(self, ex: Exchange, stored: StoredResponse, now: float) -> bool:
        """A plain hit's record, from a template kept on the stored response."""
        recorder = self.recorder
        assert recorder is not None
        if ex.method != "GET" or ex.use != "view" or ex.upstream_of or ex.trace_id:
            return self._record(ex, "hit", stored.status, len(stored.body), "memory", 0,
                                stored.attribution)  # fmt: skip
        encoder = recorder.encoder
        if encoder.sample_rate != "1" and not encoder.samples(ex.request_id):
            recorder.skip()
            return False
        template = stored.record_template
        if template is None:
            template = encoder.hit_template(
                stored.status, len(stored.body), stored.attribution, ex.key
            )
            stored.record_template = template
        recorder.append_hit(template, now, ex.request_id)
        return True

    def finish(
        self,
        ex: Exchange,
        outcome: Outcome,
        status: int,
        sent: int,
        tier: str,
        origin_bytes: int = 0,
        attribution: Attribution | None = None,
        *,
        failed: bool = False,
    ) -> None:
        """Account for a forwarded answer and put its record in the OS before the caller writes
        the bytes that complete the response."""
        self.account(ex, outcome, status, sent, tier, failed=failed)
        cache = "error" if failed else outcome.cache
        if self._record(ex, cache, status, sent, tier, origin_bytes, attribution):
            assert self.recorder is not None
            self.recorder.flush()

    def account(
        self,
        ex: Exchange,
        outcome: Outcome,
        status: int,
        sent: int,
        tier: str,
        *,
        failed: bool = False,
    ) -> None:
        if ex.request_id in self._answering_nobody:
            return
        stats = self.stats
        stats.requests_by_outcome[outcome.x_cache] += 1
        stats.bytes_by_tier[tier] += sent
        if self._log_access:
            self._account_log(ex, outcome, status, sent)
        if self.tracer is not None:
            self.tracer.finish(ex, status, "error" if failed else outcome.cache, tier, sent)

    @staticmethod
    def _account_log(ex: Exchange, outcome: Outcome, status: int, sent: int) -> None:
        access_log.info(
            "request_id=%s method=%s url=%s status=%d cache=%s bytes=%d",
            ex.request_id,
            ex.method,
            ex.key,
            status,
            outcome.x_cache,
            sent,
        )


def _provenance(stored: StoredResponse) -> Headers | None:
    """The X-Provenance field a hit on ``stored`` carries (proxy.cache.admission), if any."""
    attribution = stored.attribution
    if attribution is None or attribution.manifest_id is None:
        return None
    value = provenance_header(attribution.content_id, attribution.creator, attribution.manifest_id)
    return [("X-Provenance", value)]


def _ignore_latency(seconds: float) -> None:
    pass


# Above this size a cached body is handed to the transport as the stored object itself, after its
# head in one vectored write, rather than copied into one buffer with it: twenty clients of a
# 60 MiB hit held twenty copies (bench/stream_rss.py), and 64 KiB hits ran at 0.45x nginx with
# the copy, 0.64x without (bench/hits.py); below it, one buffer is cheaper.
SEPARATE_BODY_BYTES = 16 * 1024


def _write_head_and_body(conn: Connection, recorded: bool, head: bytes, body: bytes) -> None:
    if len(body) <= SEPARATE_BODY_BYTES:
        (conn.write_recorded if recorded else conn.write)(head + body)
        return
    # One vectored write of both; a recorded response waits in the cork like any other.
    conn.write_parts((head, body), recorded)
