"""The edge's record, in canonical bytes, built once per answered request (pure).

The Record contract lives in `provenance.records`; building a validated `Record` and running the
generic RFC 8785 encoder costs more than the rest of a cache hit. Every value here comes from
places that already constrain it (a sane request id, a token method, enum outcomes, validated
names), so the canonical form is written directly, with the keys in RFC 8785 order.
tests/unit/test_record_emit.py proves it byte-identical to `record_to_canonical_bytes`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from provenance.records import should_sample

MAX_METHOD_CHARS = 32  # provenance.records: a record's method is 1-32 tchars
_escape = json.encoder.encode_basestring  # RFC 8785 §3.2.2.2 string form (tested upstream)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose bytes these are: from the manifest index, or a trusted origin's headers."""

    content_id: str
    creator: str
    manifest_id: str | None


def _str(value: str | None) -> str:
    return "null" if value is None else _escape(value)


class RecordEncoder:
    """Canonical record bytes for one edge. Holds the last formatted millisecond, so a busy
    edge formats its timestamp once per millisecond instead of once per request."""

    def __init__(self, edge: str, sample_rate: str) -> None:
        self.edge = edge
        self.sample_rate = sample_rate
        self._edge_json = _escape(edge)
        self._rate_json = _escape(sample_rate)
        self._ts_ms = -1
        self._ts_json = ""
        self._ts_bytes = b""
        self._key_hashes: dict[str, str] = {}

    def samples(self, request_id: str) -> bool:
        """Is a hit with this request id recorded? (misses always are)"""
        return self.sample_rate == "1" or should_sample(request_id, self.sample_rate)

    def timestamp_json(self, now_s: float) -> str:
        now_ms = int(now_s * 1000)
        if now_ms != self._ts_ms:
            self._ts_ms = now_ms
            seconds, millis = divmod(now_ms, 1000)
            self._ts_json = time.strftime('"%Y-%m-%dT%H:%M:%S', time.gmtime(seconds)) + (
                f'.{millis:03d}Z"'
            )
            self._ts_bytes = self._ts_json.encode()
        return self._ts_json

    def key_hash(self, cache_key: str) -> str:
        """The cache key only ever leaves the edge as a hash (privacy: no query strings)."""
        known = self._key_hashes.get(cache_key)
        if known is None:
            if len(self._key_hashes) >= 65536:
                self._key_hashes.clear()
            known = "sha256:" + hashlib.sha256(cache_key.encode("utf-8", "replace")).hexdigest()
            self._key_hashes[cache_key] = known
        return known

    def hit_template(
        self, status: int, sent_bytes: int, attribution: Attribution | None, cache_key: str
    ) -> tuple[bytes, bytes, bytes]:
        """The constant parts of a plain hit's record on one stored response (GET, view, no
        upstream edge, no trace): the record is then `a + request_id + b + ts + c` (the quotes
        around the request id belong to a and b), the same bytes `encode` produces (tested)."""
        whole = self.encode(0.0, "\x00", "GET", status, "hit", "memory", sent_bytes, 0,
                            attribution, cache_key=cache_key)  # fmt: skip
        a, rest = whole.split(b'"\\u0000"', 1)
        b, c = rest.split(self.timestamp_json(0.0).encode(), 1)
        self._ts_ms = -1
        return a + b'"', b'"' + b, c

    def encode_hit(
        self, template: tuple[bytes, bytes, bytes], now_s: float, request_id: str
    ) -> bytes:
        """A plain hit's record from its template; `request_id` must need no JSON escaping
        (the handler only keeps client ids made of URL-safe characters)."""
        if int(now_s * 1000) != self._ts_ms:
            self.timestamp_json(now_s)
        return b"".join(
            (template[0], request_id.encode(), template[1], self._ts_bytes, template[2])
        )

    def encode(
        self,
        now_s: float,
        request_id: str,
        method: str,
        status: int,
        cache: str,
        tier: str,
        sent_bytes: int,
        origin_bytes: int,
        attribution: Attribution | None = None,
        use: str = "view",
        upstream_of: str | None = None,
        trace_id: str | None = None,
        cache_key: str | None = None,
    ) -> bytes:
        if attribution is None:
            content = creator = manifest = "null"
        else:
            content = _escape(attribution.content_id)
            creator = _escape(attribution.creator)
            manifest = _str(attribution.manifest_id)
        key_part = f'"cache_key_hash":"{self.key_hash(cache_key)}",' if cache_key else ""
        trace_part = f'"trace_id":"{trace_id}",' if trace_id else ""
        return (
            f'{{"bytes":{sent_bytes},"cache":"{cache}",{key_part}"content_id":{content},'
            f'"creator":{creator},"edge":{self._edge_json},"manifest":{manifest},'
            f'"method":{_escape(method)},"origin_bytes":{origin_bytes},'
            f'"request_id":{_escape(request_id)},"sample_rate":{self._rate_json},'
            f'"status":{status},"tier":"{tier}",{trace_part}"ts":{self.timestamp_json(now_s)},'
            f'"upstream_of":{_str(upstream_of)},"use":"{use}","v":1}}'
        ).encode()
