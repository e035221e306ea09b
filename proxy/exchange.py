"""What the cache needs to know about one client request (``Exchange``), read from its parsed
head: the cache key and route, the request's directives, and the ids a record carries. Split
from proxy.handler, which decides and answers; this runs for every request, so the analysis of a
repeated head is memoised.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass
from time import time_ns
from typing import Any

from proxy.http.cache_control import Directives, parse_cache_control, parse_pragma_no_cache
from proxy.http.request_parser import NO_BODY, RequestHead
from proxy.routing import OriginRoute, Router

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
# Request fields that a cache lookup never answers: preconditions for the origin (RFC 9111
# §4.3.2 says a cache must not evaluate If-Match / If-Unmodified-Since). Ranges are answered
# from a stored full response (proxy.partial).
_LOOKUP_BYPASS_FIELDS = frozenset({"if-match", "if-unmodified-since", "authorization"})
(_HOST, _CACHE_CONTROL, _PRAGMA, _REQUEST_ID, _CONDITIONAL, _BYPASS, _EDGE, _TRACE, _USE,
 _RANGE) = range(10)  # fmt: skip
EDGE_HEADER = "X-Cachet-Edge"  # a cachet proxy names itself to its upstream (issue 4)
_EDGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# W3C Trace Context §3.2: version 00 is exactly this; a later version may append "-..." fields.
_TRACEPARENT = re.compile(
    r"(?!ff)([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
)
_MAX_METHOD_CHARS = 32  # a record's method is at most 32 characters
_ID_BLOCK = 256  # request ids' random parts drawn from os.urandom this many at a time
_ID_RANDOM_BYTES = 10  # 80 random bits after an id's 48-bit millisecond prefix
_ANALYSED_HEADS = 4096
_Analysis = tuple[tuple[Any, ...], str, tuple[Any, ...]]
_INTERESTING_FIELDS = {
    "host": _HOST,
    "cache-control": _CACHE_CONTROL,
    "pragma": _PRAGMA,
    "x-request-id": _REQUEST_ID,
    "if-none-match": _CONDITIONAL,
    "if-modified-since": _CONDITIONAL,
    **{name: _BYPASS for name in _LOOKUP_BYPASS_FIELDS},
    "x-cachet-edge": _EDGE,
    "range": _RANGE,
    "traceparent": _TRACE,
}
NO_DIRECTIVES = Directives({})


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
    use: str = "view"  # record vocabulary: view | training
    upstream_of: str | None = None  # the edge id of the cachet proxy that is our client
    trace_id: str | None = None  # W3C trace id from the client's traceparent
    ranged: bool = False  # does it carry Range? (RFC 9110 §14.2; only GET honours it)
    parent_span_id: str | None = None  # the client's span (its traceparent's parent-id)
    trace_flags: int = 1  # the client's trace-flags (sampled unless it said otherwise)
    span_id: str | None = None  # this edge's span, when traces are exported (proxy.tracing)
    span_started_ns: int = 0


class RejectRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ExchangeReader:
    """Builds an Exchange per request: routing, the memoised analysis of its head, and its
    request id (the client's own, once, or a fresh time-ordered one: see new_request_id)."""

    def __init__(self, router: Router, training_use_header: str) -> None:
        self.router = router
        self._fresh_tails: list[str] = []
        # Formatting the time prefix costs more than the rest of an id: kept for its millisecond.
        self._id_ms = -1
        self._id_prefix = ""
        self._analysed: dict[int, tuple[RequestHead, _Analysis]] = {}
        self._client_ids = RecentIds(_RECENT_CLIENT_IDS)
        self._interesting_fields = {
            **_INTERESTING_FIELDS,
            training_use_header.lower(): _USE,
        }

    def read(self, head: RequestHead) -> Exchange:
        """What the cache needs to know about a request. Repeated heads are shared objects
        (proxy.connection memoises the parse), so the analysis of one is kept too, keyed by the
        head's identity (the memo holds the head, so the identity can't be reused meanwhile)."""
        known = self._analysed.get(id(head))
        if known is None or known[0] is not head:
            known = (head, self._analyse(head))
            if len(self._analysed) >= _ANALYSED_HEADS:
                self._analysed.clear()
            self._analysed[id(head)] = known
        before, client_id, after = known[1]
        # A client's id is kept once: records are deduplicated by request id at the coordinator,
        # so an id sent again (by mistake or to have requests left unbilled) gets a fresh one.
        if client_id and not self._client_ids.first_time(client_id):
            client_id = ""
        # The two tuples are Exchange's fields in order around request_id (see _analyse).
        return Exchange(*before, client_id or self.new_request_id(), *after)  # type: ignore[call-arg]

    def _analyse(self, head: RequestHead) -> _Analysis:
        """The request's fields for an Exchange, split around its request id: those before it,
        the client's own sane X-Request-ID (or "" for a fresh one per request), those after."""
        method = head.method
        if method == "CONNECT":
            raise RejectRequest(405, "CONNECT is not supported by a reverse proxy")
        if len(method) > _MAX_METHOD_CHARS:
            raise RejectRequest(501, "method name too long")
        host = ""
        lookup_bypass = False
        conditional = False
        request_id = ""
        cache_control: list[str] | None = None
        pragma: list[str] | None = None
        upstream_of: str | None = None
        trace_id: str | None = None
        parent_span_id: str | None = None
        trace_flags = 1
        use = "view"
        ranged = False
        # One pass over the fields, comparing lowercase names against a small table: this runs
        # for every hit.
        interesting = self._interesting_fields
        for name, value in head.headers:
            kind = interesting.get(name.lower())
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
            elif kind == _BYPASS:
                lookup_bypass = True
            elif kind == _EDGE:
                upstream_of = value if _EDGE_NAME.fullmatch(value) else None
            elif kind == _RANGE:
                ranged = True
            elif kind == _TRACE:
                traced = _TRACEPARENT.fullmatch(value.strip())
                if (
                    traced is not None
                    and (traced.group(1) != "00" or traced.group(5) is None)
                    and traced.group(2) != "0" * 32
                    and traced.group(3) != "0" * 16
                ):
                    trace_id, parent_span_id = traced.group(2), traced.group(3)
                    trace_flags = int(traced.group(4), 16)
            elif value.strip().lower() == "training":
                use = "training"
        target = head.target
        if target[0] != "/":
            host, target = self._absolute_form(target, host, method)
        routed = self.router.route(host)
        if routed is None:
            raise RejectRequest(421, "no origin is configured for this host")
        route, key_prefix = routed
        if request_id and not _SANE_REQUEST_ID.fullmatch(request_id):
            request_id = ""
        return (
            (head, method, host, target, route, key_prefix + target),
            request_id,
            (
                parse_cache_control(cache_control) if cache_control else NO_DIRECTIVES,
                pragma is not None and parse_pragma_no_cache(pragma),
                head.keep_alive,
                head.version == (1, 0),
                (method == "GET" or method == "HEAD")
                and not lookup_bypass
                and head.body is NO_BODY,
                conditional,
                use,
                upstream_of,
                trace_id,
                ranged,
                parent_span_id,
                trace_flags,
            ),
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

    def new_request_id(self) -> str:
        """A time-ordered id, the idea of UUIDv7 (RFC 9562 §5.7) in the same 32 lowercase hex
        digits as before: 48 bits of Unix time in milliseconds, then 80 random bits.

        The random part, drawn from the OS in blocks (one syscall per 256 ids), is what nobody
        can guess, so nobody can pre-empt an id (records are deduplicated by request id at the
        coordinator; RFC 9562 §8). The time prefix makes the ids an edge draws ascend with its
        clock, so the coordinator's dedup index appends rather than writing to a random page;
        the time it reveals is already in the record's ts and the response's Date. Within one
        millisecond ids follow their random tails, not the order drawn (§6.2 lets them)."""
        tails = self._fresh_tails
        if not tails:
            block = os.urandom(_ID_RANDOM_BYTES * _ID_BLOCK).hex()
            step = 2 * _ID_RANDOM_BYTES
            tails.extend(block[i : i + step] for i in range(0, len(block), step))
        ms = time_ns() // 1_000_000
        if ms != self._id_ms:
            self._id_ms, self._id_prefix = ms, f"{ms:012x}"
        return self._id_prefix + tails.pop()


_RECENT_CLIENT_IDS = 1 << 16


class RecentIds:
    """The last ``capacity`` distinct ids seen (first in, first out): O(1) per id."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._seen: set[str] = set()

    def first_time(self, value: str) -> bool:
        """True (and remember it) if ``value`` is not among the recent ids."""
        if value in self._seen:
            return False
        self._seen.add(value)
        self._order.append(value)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
        return True
