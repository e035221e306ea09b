"""The shell that drives the pure cache policy for one client request.

`ProxyHandler.begin()` runs synchronously inside the connection's `data_received`: when the cache
can answer on its own (a fresh hit, a 304 from the cache, stale-while-revalidate) the response is
written there and then, with no task, no await and no allocation beyond the response bytes. Every
other request returns a coroutine that the connection runs as a task: it goes forward to the
origin, streams the answer back and stores it when it may.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.cache.admission import (
    AdmissionPolicy,
    is_refreshable_by,
    make_stored_response,
    refresh_stored_response,
)
from proxy.cache.entry import StoredResponse
from proxy.cache.freshness import corrected_initial_age, date_value
from proxy.cache.invalidation import keys_to_invalidate
from proxy.cache.reuse import Verdict, decide_reuse, may_serve_stale_on_error
from proxy.cache.storability import StoragePolicy, effective_directives, reason_not_storable
from proxy.cache.store import ResponseStore
from proxy.http import cache_status as outcomes
from proxy.http.cache_control import Directives, parse_cache_control, parse_pragma_no_cache
from proxy.http.cache_status import Outcome, cache_status
from proxy.http.dates import format_http_date
from proxy.http.etags import if_modified_since_passes, if_none_match_passes
from proxy.http.fields import Headers, get_values, without_fields
from proxy.http.hop_by_hop import strip_hop_by_hop, strip_request_hop_by_hop
from proxy.http.request_parser import NO_BODY, RequestHead
from proxy.http.wire import status_allows_body
from proxy.metrics import ProxyStats
from proxy.origin import OriginClient, OriginError, OriginResponse
from proxy.responses import (
    error_response,
    forwarded_head,
    not_modified_head,
    render_trailer,
    stored_head,
)
from proxy.routing import OriginRoute, Router

log = logging.getLogger("cachet.proxy")
access_log = logging.getLogger("cachet.access")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
# Request fields that a cache lookup never answers: preconditions for the origin (RFC 9111
# §4.3.2 says a cache must not evaluate If-Match / If-Unmodified-Since) and ranges.
_LOOKUP_BYPASS_FIELDS = frozenset({"if-match", "if-unmodified-since", "range", "authorization"})
_HOST, _CACHE_CONTROL, _PRAGMA, _REQUEST_ID, _CONDITIONAL, _BYPASS = range(6)
_INTERESTING_FIELDS = {
    "host": _HOST,
    "cache-control": _CACHE_CONTROL,
    "pragma": _PRAGMA,
    "x-request-id": _REQUEST_ID,
    "if-none-match": _CONDITIONAL,
    "if-modified-since": _CONDITIONAL,
    **{name: _BYPASS for name in _LOOKUP_BYPASS_FIELDS},
}
NO_DIRECTIVES = Directives({})
_KEEP_ALIVE_11 = b"\r\n"
_KEEP_ALIVE_10 = b"Connection: keep-alive\r\n\r\n"
_CLOSE = b"Connection: close\r\n\r\n"
_CONDITIONAL_FIELDS = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"}
)
_FORWARDED_FIELDS = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "expect"}
)


class Connection(Protocol):
    """What the handler needs from a client connection (proxy.server.ClientConnection)."""

    peer_ip: str
    closed: bool
    keep_alive: bool  # the handler clears it when the response's end is the connection's close

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def abort(self) -> None: ...
    def request_body(self) -> Any: ...


@dataclass(slots=True)
class Exchange:
    head: RequestHead
    method: str
    host: str
    target: str
    route: OriginRoute
    key: str
    request_id: str
    directives: Directives
    pragma_no_cache: bool
    keep_alive: bool
    http10: bool
    lookup: bool  # may the cache answer this request?
    conditional: bool  # does it carry If-None-Match or If-Modified-Since?


@dataclass(frozen=True, slots=True)
class Fetch:
    outcome: Outcome
    stored: StoredResponse | None = None  # a stored response being revalidated
    store: bool = True


class RejectRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    storage: StoragePolicy
    admission: AdmissionPolicy
    via: str
    cache_name: str
    max_object_bytes: int
    stale_if_error_default_s: int
    trust_forwarded_from: frozenset[str]


class ProxyHandler:
    def __init__(
        self,
        settings: HandlerSettings,
        router: Router,
        store: ResponseStore,
        origin: OriginClient,
        stats: ProxyStats,
        observe_origin_latency: Any = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.store = store
        self.origin = origin
        self.stats = stats
        self._observe_latency = observe_origin_latency
        self._request_id_prefix = os.urandom(8).hex()
        self._request_counter = 0
        self._revalidating: set[str] = set()
        self._hit_status_prefix = f"Cache-Status: {settings.cache_name}; hit; ttl=".encode()
        self._log_access = access_log.isEnabledFor(logging.INFO)
        self._background: set[asyncio.Task[None]] = set()

    # -- entry point -------------------------------------------------------------------------

    def begin(self, conn: Connection, head: RequestHead) -> Coroutine[Any, Any, None] | None:
        """Answer from the cache now, or return the coroutine that will answer."""
        try:
            ex = self._exchange(head)
        except RejectRequest as rejected:
            self._write_local_error(conn, head, rejected.status, rejected.message)
            return None
        if not ex.lookup:
            outcome = outcomes.METHOD if ex.method not in ("GET", "HEAD") else outcomes.BYPASS
            return self._forward(conn, ex, Fetch(outcome, store=ex.method == "GET"))
        now = time.time()
        stored, any_variant = self.store.select(ex.key, head.headers)
        if stored is None:
            if ex.directives.has("only-if-cached"):
                self._write_local_error(conn, head, 504, "not in cache (only-if-cached)", ex)
                return None  # RFC 9111 §5.2.1.7
            miss = outcomes.VARY_MISS if any_variant else outcomes.URI_MISS
            return self._forward(conn, ex, Fetch(miss))
        verdict = decide_reuse(stored, ex.directives, ex.pragma_no_cache, now)
        if verdict is Verdict.FRESH:
            if ex.conditional or ex.method != "GET" or not status_allows_body(stored.status):
                self._write_stored(conn, ex, stored, outcomes.HIT, now)
            else:
                self._write_fresh_hit(conn, ex, stored, now)
            return None
        if verdict is Verdict.STALE_ACCEPTED:
            self._write_stored(conn, ex, stored, outcomes.STALE_ACCEPTED, now)
            return None
        if verdict is Verdict.STALE_WHILE_REVALIDATE:
            self._write_stored(conn, ex, stored, outcomes.UPDATING, now)
            self._revalidate_in_background(ex, stored)
            return None
        if ex.directives.has("only-if-cached"):
            self._write_local_error(conn, head, 504, "stale in cache (only-if-cached)", ex)
            return None
        forced = ex.directives.has("no-cache") or ex.pragma_no_cache
        return self._forward(
            conn, ex, Fetch(outcomes.REQUEST_MISS if forced else outcomes.EXPIRED, stored)
        )

    # -- request analysis --------------------------------------------------------------------

    def _exchange(self, head: RequestHead) -> Exchange:
        method = head.method
        if method == "CONNECT":
            raise RejectRequest(405, "CONNECT is not supported by a reverse proxy")
        host = ""
        lookup_bypass = False
        conditional = False
        request_id = ""
        cache_control: list[str] | None = None
        pragma: list[str] | None = None
        # One pass over the fields, comparing lowercase names against a small table: this runs
        # for every hit.
        for name, value in head.headers:
            kind = _INTERESTING_FIELDS.get(name.lower())
            if kind is None:
                continue
            if kind == _HOST:
                host = value
            elif kind == _CACHE_CONTROL:
                cache_control = [*cache_control, value] if cache_control else [value]
            elif kind == _PRAGMA:
                pragma = [*pragma, value] if pragma else [value]
            elif kind == _REQUEST_ID:
                request_id = value
            elif kind == _CONDITIONAL:
                conditional = True
            else:
                lookup_bypass = True
        target = head.target
        if target[0] != "/":
            host, target = self._absolute_form(target, host, method)
        routed = self.router.route(host)
        if routed is None:
            raise RejectRequest(421, "no origin is configured for this host")
        route, key_prefix = routed
        if not request_id or not _SANE_REQUEST_ID.fullmatch(request_id):
            self._request_counter += 1
            request_id = f"{self._request_id_prefix}-{self._request_counter:x}"
        return Exchange(
            head,
            method,
            host,
            target,
            route,
            key_prefix + target,
            request_id,
            parse_cache_control(cache_control) if cache_control else NO_DIRECTIVES,
            pragma is not None and parse_pragma_no_cache(pragma),
            head.keep_alive,
            head.version == (1, 0),
            (method == "GET" or method == "HEAD") and not lookup_bypass and head.body is NO_BODY,
            conditional,
        )

    @staticmethod
    def _absolute_form(target: str, host: str, method: str) -> tuple[str, str]:
        """RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host. A reverse
        proxy is not an open forward proxy: a target naming another authority than Host is
        refused rather than fetched."""
        if method == "OPTIONS" and target == "*":
            raise RejectRequest(501, "OPTIONS * is not forwarded")
        scheme_end = target.find("://")
        rest = target[scheme_end + 3 :]
        slash = len(rest)
        for sep in "/?":
            found = rest.find(sep)
            if found != -1:
                slash = min(slash, found)
        authority, path = rest[:slash], rest[slash:] or "/"
        if path.startswith("?"):
            path = "/" + path
        if host and authority.lower() != host.lower():
            raise RejectRequest(400, "absolute-form target does not match Host")
        return authority, path

    # -- answering from the cache --------------------------------------------------------------

    def _write_stored(
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
        if ex.conditional and self._client_not_modified(ex, stored):
            conn.write(not_modified_head(stored, age, self.settings.via, trailer))
            sent = 0
        elif ex.method == "HEAD" or not status_allows_body(stored.status):
            conn.write(stored_head(stored, age, trailer))
            sent = 0
        else:
            conn.write(stored_head(stored, age, trailer) + stored.body)
            sent = len(stored.body)
        self._account(ex, outcome, stored.status, sent, "memory")

    def _write_fresh_hit(
        self, conn: Connection, ex: Exchange, stored: StoredResponse, now: float
    ) -> None:
        """The most common answer, written with one formatting operation (see
        bench/hit_path_micro.py): same bytes as _write_stored would produce for a plain HIT."""
        age = stored.current_age(now)
        ttl = stored.freshness_lifetime_s - age
        connection = (_KEEP_ALIVE_10 if ex.http10 else _KEEP_ALIVE_11) if ex.keep_alive else _CLOSE
        conn.write(
            b"%bAge: %d\r\n%b%d\r\nX-Cache-Status: HIT\r\nX-Request-ID: %b\r\n%b%b"
            % (
                stored.head_bytes,
                age,
                self._hit_status_prefix,
                ttl,
                ex.request_id.encode("latin-1"),
                connection,
                stored.body,
            )
        )
        stats = self.stats
        stats.fresh_hits += 1
        stats.fresh_hit_bytes += len(stored.body)
        if self._log_access:
            self._account_log(ex, outcomes.HIT, stored.status, len(stored.body))

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

    def _revalidate_in_background(self, ex: Exchange, stored: StoredResponse) -> None:
        """RFC 5861 §3: one background revalidation per URL, however many stale hits."""
        if ex.key in self._revalidating:
            return
        self._revalidating.add(ex.key)
        task = asyncio.get_running_loop().create_task(self._background_refresh(ex, stored))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _background_refresh(self, ex: Exchange, stored: StoredResponse) -> None:
        try:
            sink = _NullConnection()
            await self._forward(sink, ex, Fetch(outcomes.EXPIRED, stored), background=True)
        except Exception:
            log.exception("background revalidation of %s failed", ex.key)
        finally:
            self._revalidating.discard(ex.key)

    async def drain_background(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- going forward -------------------------------------------------------------------------

    def _upstream_headers(self, conn: Connection, ex: Exchange, fetch: Fetch) -> Headers:
        drop = set(_FORWARDED_FIELDS)
        if fetch.store and ex.method == "GET":
            drop |= (
                _CONDITIONAL_FIELDS
                if fetch.stored is not None
                else {
                    "if-none-match",
                    "if-modified-since",
                }
            )
        # Host is part of the cache key, so it is always sent as the key has it: a client can't
        # list it in Connection to have the origin answer for another host under this key.
        drop.add("host")
        headers = without_fields(strip_request_hop_by_hop(ex.head.headers), drop)
        headers.insert(0, ("Host", ex.host or ex.route.authority))
        if fetch.stored is not None:
            if fetch.stored.etag is not None:
                headers.append(("If-None-Match", fetch.stored.etag))
            if fetch.stored.last_modified is not None:
                headers.append(("If-Modified-Since", format_http_date(fetch.stored.last_modified)))
        forwarded_for = conn.peer_ip
        if conn.peer_ip in self.settings.trust_forwarded_from:
            previous = get_values(ex.head.headers, "x-forwarded-for")
            if previous:
                forwarded_for = ", ".join([*previous, conn.peer_ip])
        headers.append(("X-Forwarded-For", forwarded_for))
        headers.append(("X-Forwarded-Proto", "http"))
        if ex.host:
            headers.append(("X-Forwarded-Host", ex.host))
        via = get_values(ex.head.headers, "via")
        headers = [(n, v) for n, v in headers if n.lower() != "via"]
        headers.append(("Via", ", ".join([*via, self.settings.via])))
        headers.append(("X-Request-ID", ex.request_id))
        return headers

    async def _forward(
        self, conn: Connection, ex: Exchange, fetch: Fetch, *, background: bool = False
    ) -> None:
        headers = self._upstream_headers(conn, ex, fetch)
        body = conn.request_body() if ex.head.body is not NO_BODY else None
        request_time = time.time()
        started = time.monotonic()
        self.stats.origin_requests += 1
        try:
            response = await self.origin.request(
                ex.method, ex.route.base_url + ex.target, headers, body
            )
        except OriginError as error:
            self.stats.origin_errors[error.kind] += 1
            self._answer_origin_failure(conn, ex, fetch, error.status, f"origin-{error.kind}")
            return
        if self._observe_latency is not None:
            self._observe_latency(time.monotonic() - started)
        response_time = time.time()
        try:
            await self._relay(conn, ex, fetch, response, request_time, response_time)
        finally:
            response.release()

    def _answer_origin_failure(
        self, conn: Connection, ex: Exchange, fetch: Fetch, status: int, detail: str
    ) -> None:
        now = time.time()
        stored = fetch.stored
        if stored is not None and may_serve_stale_on_error(
            stored, ex.directives, now, self.settings.stale_if_error_default_s
        ):
            self._write_stored(conn, ex, stored, outcomes.STALE_IF_ERROR, now, detail=detail)
            return
        message = "origin timed out" if status == 504 else "origin unavailable"
        self._write_local_error(conn, ex.head, status, message, ex, fetch.outcome, detail)

    async def _relay(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        response: OriginResponse,
        request_time: float,
        response_time: float,
    ) -> None:
        stored = fetch.stored
        if stored is not None and response.status == 304:
            if is_refreshable_by(stored, response.headers):
                refreshed = refresh_stored_response(
                    stored,
                    response.headers,
                    request_time,
                    response_time,
                    self.settings.admission,
                )
                self.store.replace(ex.key, stored, refreshed)
                outcome = outcomes.REVALIDATED
                if fetch.outcome is outcomes.REQUEST_MISS:
                    outcome = Outcome("revalidated", "REVALIDATED", False, fwd="request")
                self._write_stored(conn, ex, refreshed, outcome, time.time(), fwd_status=304)
                return
            # The 304 names another representation: fetch it whole instead.
            await self._forward(conn, ex, Fetch(fetch.outcome, None, fetch.store))
            return
        if stored is not None and response.status >= 500:
            self.stats.origin_errors["status"] += 1
            now = time.time()
            if may_serve_stale_on_error(
                stored, ex.directives, now, self.settings.stale_if_error_default_s
            ):
                response.close()
                self._write_stored(
                    conn,
                    ex,
                    stored,
                    outcomes.STALE_IF_ERROR,
                    now,
                    fwd_status=response.status,
                    detail="stale-if-error",
                )
                return
        await self._relay_response(conn, ex, fetch, response, request_time, response_time)

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
        if reason is None and (
            response.content_length is not None
            and response.content_length > self.settings.max_object_bytes
        ):
            reason = "too-large"
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
        request_time: float,
        response_time: float,
    ) -> None:
        headers = strip_hop_by_hop(response.headers)
        self._invalidate_after_unsafe(ex, response.status, headers)
        will_store = self._storable(ex, fetch, response, headers)
        if will_store and self._has_client_conditionals(ex):
            # Fill the cache, then answer the client's own conditional from what was stored.
            body = await self._read_whole(response)
            if body is None:
                conn.abort()
                return
            stored = self._store(ex, response, headers, body, request_time, response_time)
            if stored is not None:
                self._write_stored(conn, ex, stored, fetch.outcome, time.time(), stored_flag=True)
                return
            will_store = False
            await self._write_forwarded(conn, ex, fetch, response, headers, False, [body])
            return
        await self._write_forwarded(
            conn,
            ex,
            fetch,
            response,
            headers,
            will_store,
            None,
            request_time=request_time,
            response_time=response_time,
        )

    @staticmethod
    def _has_client_conditionals(ex: Exchange) -> bool:
        return any(n.lower() in ("if-none-match", "if-modified-since") for n, _ in ex.head.headers)

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
        request_time: float,
        response_time: float,
    ) -> StoredResponse | None:
        stored = make_stored_response(
            response.status,
            response.reason,
            headers,
            body,
            ex.head.headers,
            request_time,
            response_time,
            self.settings.admission,
        )
        if not self.store.put(ex.key, stored):
            self.stats.not_stored["too-large"] += 1
            return None
        return stored

    def _invalidate_after_unsafe(self, ex: Exchange, status: int, headers: Headers) -> None:
        for key in keys_to_invalidate(
            ex.method, status, ex.route.scheme, ex.host or ex.route.authority, ex.target, headers
        ):
            if self.store.invalidate(key):
                self.stats.invalidations += 1

    async def _write_forwarded(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        response: OriginResponse,
        headers: Headers,
        will_store: bool,
        prefetched: list[bytes] | None,
        *,
        request_time: float = 0.0,
        response_time: float = 0.0,
    ) -> None:
        status = response.status
        out = headers
        if not any(n.lower() == "date" for n, _ in out):
            out = [*out, ("Date", format_http_date(response_time or time.time()))]
        if will_store:
            age = corrected_initial_age(
                headers, request_time, response_time, date_value(headers, response_time)
            )
            out = [(n, v) for n, v in out if n.lower() != "age"]
            out.append(("Age", str(int(age))))
        via = get_values(out, "via")
        out = [(n, v) for n, v in out if n.lower() != "via"]
        out.append(("Via", ", ".join([*via, self.settings.via])))
        has_body = ex.method != "HEAD" and status_allows_body(status)
        length = response.content_length
        chunked = False
        keep_alive = ex.keep_alive
        if has_body and length is None:
            if ex.http10:
                keep_alive = False  # RFC 9112 §6.3: the end of the body is the close
            else:
                chunked = True
                out.append(("Transfer-Encoding", "chunked"))
        outcome = fetch.outcome
        status_text = cache_status(
            self.settings.cache_name, outcome, fwd_status=status, stored=will_store
        )
        trailer = render_trailer(status_text, outcome.x_cache, ex.request_id, keep_alive, ex.http10)
        conn.write(forwarded_head(status, response.reason, out, trailer))
        if not has_body:
            self._account(ex, outcome, status, 0, "origin")
            if not keep_alive:
                conn.keep_alive = False
            return
        await self._stream_body(
            conn,
            ex,
            fetch,
            response,
            headers,
            will_store,
            prefetched,
            chunked,
            keep_alive,
            request_time,
            response_time,
        )

    async def _stream_body(
        self,
        conn: Connection,
        ex: Exchange,
        fetch: Fetch,
        response: OriginResponse,
        headers: Headers,
        will_store: bool,
        prefetched: list[bytes] | None,
        chunked: bool,
        keep_alive: bool,
        request_time: float,
        response_time: float,
    ) -> None:
        buffered: list[bytes] | None = [] if will_store else None
        buffered_bytes = 0
        sent = 0
        limit = self.settings.max_object_bytes
        chunks = _iterate(prefetched) if prefetched is not None else response.chunks()
        try:
            async for chunk in chunks:
                if prefetched is None:
                    self.stats.origin_bytes += len(chunk)
                if buffered is not None:
                    buffered_bytes += len(chunk)
                    if buffered_bytes > limit:
                        buffered = None  # too big for the cache: keep streaming, stop keeping
                        self.stats.not_stored["too-large"] += 1
                    else:
                        buffered.append(chunk)
                if not chunk:
                    continue
                conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
                await conn.drain()
                if conn.closed:
                    response.close()
                    return
        except OriginError as error:
            # Never a short response that looks complete: the client sees the connection drop.
            self.stats.origin_errors[error.kind] += 1
            conn.abort()
            return
        if response.content_length is not None and sent != response.content_length:
            self.stats.origin_errors["short-body"] += 1
            conn.abort()
            return
        if chunked:
            conn.write(b"0\r\n\r\n")
        self._account(ex, fetch.outcome, response.status, sent, "origin")
        if buffered is not None:
            self._store(ex, response, headers, b"".join(buffered), request_time, response_time)
        if not keep_alive:
            conn.keep_alive = False

    # -- errors and accounting -------------------------------------------------------------------

    def _write_local_error(
        self,
        conn: Connection,
        head: RequestHead,
        status: int,
        message: str,
        ex: Exchange | None = None,
        outcome: Outcome = outcomes.BYPASS,
        detail: str | None = None,
    ) -> None:
        request_id = ex.request_id if ex is not None else self._new_request_id()
        status_text = cache_status(self.settings.cache_name, outcome, detail=detail)
        trailer = render_trailer(
            status_text, outcome.x_cache, request_id, head.keep_alive, head.version == (1, 0)
        )
        conn.write(
            error_response(
                status, message, self.settings.via, format_http_date(time.time()), trailer
            )
        )
        self.stats.requests_by_outcome["ERROR"] += 1
        if ex is not None and access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request_id=%s method=%s url=%s status=%d cache=ERROR detail=%s",
                request_id,
                head.method,
                ex.key,
                status,
                detail or message,
            )

    def _new_request_id(self) -> str:
        self._request_counter += 1
        return f"{self._request_id_prefix}-{self._request_counter:x}"

    def _account(self, ex: Exchange, outcome: Outcome, status: int, sent: int, tier: str) -> None:
        stats = self.stats
        stats.requests_by_outcome[outcome.x_cache] += 1
        stats.bytes_by_tier[tier] += sent
        if self._log_access:
            self._account_log(ex, outcome, status, sent)

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


async def _iterate(parts: list[bytes]) -> Any:
    for part in parts:
        yield part


class _NullConnection:
    """Where a background revalidation writes: nowhere."""

    peer_ip = "127.0.0.1"
    closed = False
    keep_alive = True

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def request_body(self) -> None:
        return None
