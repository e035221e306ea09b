"""The Record contract: one canonical-JSON record per client request the proxy answers.

Fields (JSON names; the Python attributes carry the same names):

=================  =========================================================================
``v``              1
``request_id``     1-128 visible ASCII characters (0x21-0x7E)
``ts``             RFC 3339 UTC with milliseconds: ``2026-11-27T03:38:49.123Z``
``edge``           edge id: ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}`` (also its key name)
``method``         HTTP method token (RFC 9110 §9.1), 1-32 tchars
``status``         100-599
``cache``          hit | miss | stale | revalidated | bypass | error
``tier``           memory | disk | origin | none
``bytes``          body bytes actually sent to the client, 0..2**53-1
``origin_bytes``   body bytes fetched from the origin for this request, 0..2**53-1
``content_id``     ``sha256:<hex>`` or null
``creator``        account (same pattern as edge ids) or null
``manifest``       manifest id ``sha256:<hex>`` or null; if set, creator and content_id are set
``sample_rate``    decimal string in [0, 1], at most 6 decimals, canonical: "1", "0", "0.25"
``use``            view | training
``upstream_of``    null, or the edge id of the cachet proxy that is our client
``trace_id``       optional: W3C trace id, 32 lowercase hex, not all zero (absent when unknown)
``cache_key_hash`` optional: ``sha256:<hex>`` of the cache key (absent when unknown)
=================  =========================================================================

Required nullable fields are always present (as ``null``); the two optional ones are omitted
when None. Unknown fields are refused. The leaf hash of a record is RFC 9162's leaf hash of its
RFC 8785 canonical bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from provenance.canonical_json import MAX_SAFE_INTEGER, parse
from provenance.content_id import is_content_id
from provenance.errors import FormatError
from provenance.merkle import leaf_hash

RECORD_VERSION = 1
# The longest a record's canonical bytes can be: every field is bounded (a request id of 128
# characters, each escaped as two; names of 64; hashes; the longest enum values). The largest
# record _validate accepts is 1,046 bytes (tests/unit/provenance/test_records.py builds it);
# transports with a payload limit size batches by this (proxy/records/nats_forwarder.py).
MAX_RECORD_BYTES = 1100
CACHE_OUTCOMES = frozenset({"hit", "miss", "stale", "revalidated", "bypass", "error"})
TIERS = frozenset({"memory", "disk", "origin", "none"})
USES = frozenset({"view", "training"})
SAMPLE_RATE_SCALE = 1_000_000  # sample_rate has at most 6 decimals
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_SAMPLE_RATE = re.compile(r"0|1|0\.[0-9]{0,5}[1-9]")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SAMPLE_DOMAIN = b"cachet sample v1\n"
_encode_str = json.encoder.encode_basestring  # escapes exactly as RFC 8785 §3.2.2.2 (tested)
_H = r"[0-9a-f]{64}"
_N = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_I = r"(0|[1-9][0-9]{0,14})"  # < 2**53: larger valid values take the generic path
# The exact canonical (RFC 8785) form of a Record, keys in JCS order. A match implies that
# parse_record() accepts the bytes and re-encodes them identically (property-tested), except for
# the calendar validity of ts and the manifest => creator/content_id rule, which the caller checks
# (``check_record`` in proxy/records/sealer.py, the batch fast path in provenance/batches.py).
# Groups: see CANONICAL_GROUPS.
_CANONICAL_RECORD = (
    r'\{"bytes":' + _I + r',"cache":"(hit|miss|stale|revalidated|bypass|error)"'
    r'(?:,"cache_key_hash":"sha256:' + _H + r'")?'
    r',"content_id":(?:null|"(sha256:' + _H + r')"),"creator":(?:null|"(' + _N + r')")'
    r',"edge":"(' + _N + r')","manifest":(?:null|"(sha256:' + _H + r')")'
    r',"method":"([!#$%&\'*+.^_`|~0-9A-Za-z-]{1,32})","origin_bytes":' + _I +
    r',"request_id":"([\x21\x23-\x5b\x5d-\x7e]{1,128})"'  # ids with escapes: generic path
    r',"sample_rate":"(0|1|0\.[0-9]{0,5}[1-9])","status":([1-5][0-9]{2})'
    r',"tier":"(memory|disk|origin|none)"(?:,"trace_id":"(?!0{32})[0-9a-f]{32}")?'
    r',"ts":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z)"'
    r',"upstream_of":(?:null|"(' + _N + r')"),"use":"(view|training)","v":1\}'
)  # fmt: skip
_CANONICAL_RECORD_BYTES = re.compile(_CANONICAL_RECORD.encode("ascii"))
CANONICAL_GROUPS = (
    "bytes", "cache", "content_id", "creator", "edge", "manifest", "method", "origin_bytes",
    "request_id", "sample_rate", "status", "tier", "ts", "upstream_of", "use",
)  # fmt: skip
"""The groups of a canonical-record match, in order; a null field's group is None."""
CANONICAL_RECORD_PATTERN = _CANONICAL_RECORD
"""The canonical-record regex source, for callers that compose it (a whole records array)."""


def is_name(value: object) -> bool:
    """True for a valid edge id or creator account."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def is_request_id(value: object) -> bool:
    """True for a request id a record can carry (1-128 visible ASCII characters)."""
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def is_timestamp(value: object) -> bool:
    """True for an RFC 3339 UTC timestamp with exactly millisecond precision."""
    if not isinstance(value, str) or _TS.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value[:-1])
    except ValueError:
        return False
    return True


def format_timestamp(moment: datetime) -> str:
    """``moment`` (timezone-aware) as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC, truncated to ms."""
    if moment.tzinfo is None:
        raise ValueError("format_timestamp() needs a timezone-aware datetime")
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    """The aware UTC datetime of a record timestamp; FormatError if malformed."""
    if not is_timestamp(value):
        raise FormatError(f"not an RFC 3339 UTC millisecond timestamp: {value!r:.40}")
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


def sample_rate_ppm(sample_rate: str) -> int:
    """The sample rate as an exact integer in parts per million; FormatError if malformed."""
    if not isinstance(sample_rate, str) or not _SAMPLE_RATE.fullmatch(sample_rate):
        raise FormatError(f"sample_rate must be a decimal string in [0, 1]: {sample_rate!r:.20}")
    if sample_rate in ("0", "1"):
        return int(sample_rate) * SAMPLE_RATE_SCALE
    return int(sample_rate[2:].ljust(6, "0"))


def should_sample(request_id: str, sample_rate: str) -> bool:
    """Deterministic sampling: True for a fraction ``sample_rate`` of request ids.

    u = first 8 bytes of SHA-256("cachet sample v1\\n" || request_id) as an integer; sampled iff
    u / 2**64 < ppm / 10**6, compared exactly in integers.
    """
    ppm = sample_rate_ppm(sample_rate)
    digest = hashlib.sha256(_SAMPLE_DOMAIN + request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") * SAMPLE_RATE_SCALE < ppm << 64


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise FormatError(f"record field {name!r} must be an integer in {low}..{high}")


def _check_choice(name: str, value: object, choices: frozenset[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise FormatError(f"record field {name!r} must be one of {'|'.join(sorted(choices))}")


def _check_optional(name: str, value: object, is_valid: Any, what: str) -> None:
    if value is not None and not is_valid(value):
        raise FormatError(f"record field {name!r} must be null or {what}")


def _is_trace_id(value: object) -> bool:
    return isinstance(value, str) and bool(_TRACE_ID.fullmatch(value)) and value != "0" * 32


@dataclass(frozen=True, slots=True)
class Record:
    """One served request. Constructing a bad record raises ValueError (a bug in the caller)."""

    request_id: str
    ts: str
    edge: str
    method: str
    status: int
    cache: str
    tier: str
    bytes: int
    origin_bytes: int
    content_id: str | None = None
    creator: str | None = None
    manifest: str | None = None
    sample_rate: str = "1"
    use: str = "view"
    upstream_of: str | None = None
    trace_id: str | None = None
    cache_key_hash: str | None = None
    v: int = RECORD_VERSION

    def __post_init__(self) -> None:
        try:
            _validate(self)
        except FormatError as exc:
            raise ValueError(str(exc)) from None


def _validate(r: Record) -> None:
    _check_int("v", r.v, RECORD_VERSION, RECORD_VERSION)
    if not is_request_id(r.request_id):
        raise FormatError("record field 'request_id' must be 1-128 visible ASCII characters")
    if not is_timestamp(r.ts):
        raise FormatError(
            "record field 'ts' must be RFC 3339 UTC with ms, e.g. 2026-01-02T03:04:05.678Z"
        )
    if not is_name(r.edge):
        raise FormatError("record field 'edge' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    if not isinstance(r.method, str) or not _METHOD.fullmatch(r.method):
        raise FormatError("record field 'method' must be an HTTP method token")
    _check_int("status", r.status, 100, 599)
    _check_choice("cache", r.cache, CACHE_OUTCOMES)
    _check_choice("tier", r.tier, TIERS)
    _check_int("bytes", r.bytes, 0, MAX_SAFE_INTEGER)
    _check_int("origin_bytes", r.origin_bytes, 0, MAX_SAFE_INTEGER)
    _check_optional("content_id", r.content_id, is_content_id, "sha256:<64 hex>")
    _check_optional("creator", r.creator, is_name, "an account name")
    _check_optional("manifest", r.manifest, is_content_id, "sha256:<64 hex>")
    sample_rate_ppm(r.sample_rate)
    _check_choice("use", r.use, USES)
    _check_optional("upstream_of", r.upstream_of, is_name, "an edge id")
    _check_optional("trace_id", r.trace_id, _is_trace_id, "32 lowercase hex, not all zero")
    _check_optional("cache_key_hash", r.cache_key_hash, is_content_id, "sha256:<64 hex>")
    if r.manifest is not None and (r.creator is None or r.content_id is None):
        raise FormatError("record with a manifest must name its creator and content_id")


_REQUIRED = frozenset(
    {"v", "request_id", "ts", "edge", "method", "status", "cache", "tier", "bytes"}
    | {"origin_bytes", "content_id", "creator", "manifest", "sample_rate", "use", "upstream_of"}
)
_OPTIONAL = frozenset({"trace_id", "cache_key_hash"})
_ALL_FIELDS = _REQUIRED | _OPTIONAL


def record_to_obj(record: Record) -> dict[str, object]:
    """The record as a JSON object (optional fields omitted when None)."""
    obj: dict[str, object] = asdict(record)
    for name in _OPTIONAL:
        if obj[name] is None:
            del obj[name]
    return obj


def record_from_obj(obj: object) -> Record:
    """A Record from a parsed JSON value; FormatError naming the first bad field."""
    if not isinstance(obj, dict):
        raise FormatError("a record must be a JSON object")
    keys = obj.keys()
    if not (keys >= _REQUIRED and keys <= _ALL_FIELDS):
        missing = _REQUIRED - keys
        if missing:
            raise FormatError(f"record lacks field(s): {', '.join(sorted(missing))}")
        unknown = ", ".join(sorted(keys - _ALL_FIELDS))
        raise FormatError(f"record has unknown field(s): {unknown[:200]}")
    try:
        return Record(**obj)
    except ValueError as exc:
        raise FormatError(str(exc)) from None


def parse_record(data: bytes) -> Record:
    """Parse a record from JSON bytes; FormatError with the reason on any bad field."""
    return record_from_obj(parse(data))


def record_to_canonical_bytes(r: Record) -> bytes:
    """RFC 8785 canonical bytes of the record: a specialised encoder, proved equal to the generic
    one by tests. Keys are in JCS order; every string field but ``request_id`` is validated to a
    character set that JSON never escapes, so only ``request_id`` goes through the escaper.
    """
    content_id, creator, manifest, upstream_of = r.content_id, r.creator, r.manifest, r.upstream_of
    content_id = "null" if content_id is None else f'"{content_id}"'
    creator = "null" if creator is None else f'"{creator}"'
    manifest = "null" if manifest is None else f'"{manifest}"'
    upstream_of = "null" if upstream_of is None else f'"{upstream_of}"'
    key_hash = "" if r.cache_key_hash is None else f',"cache_key_hash":"{r.cache_key_hash}"'
    trace = "" if r.trace_id is None else f',"trace_id":"{r.trace_id}"'
    return (
        f'{{"bytes":{r.bytes},"cache":"{r.cache}"{key_hash},"content_id":{content_id}'
        f',"creator":{creator},"edge":"{r.edge}","manifest":{manifest},"method":"{r.method}"'
        f',"origin_bytes":{r.origin_bytes},"request_id":{_encode_str(r.request_id)}'
        f',"sample_rate":"{r.sample_rate}","status":{r.status},"tier":"{r.tier}"{trace}'
        f',"ts":"{r.ts}","upstream_of":{upstream_of},"use":"{r.use}","v":{r.v}}}'
    ).encode()


def record_leaf_hash(record: Record) -> bytes:
    """RFC 9162 §2.1.1 leaf hash of the record's canonical bytes."""
    return leaf_hash(record_to_canonical_bytes(record))


class RecordFields(NamedTuple):
    """The fields of a record the coordinator stores and bills (same names as Record's)."""

    request_id: str
    edge: str
    ts: str
    upstream_of: str | None
    method: str
    status: int
    cache: str
    tier: str
    bytes: int
    origin_bytes: int
    content_id: str | None
    creator: str | None
    manifest: str | None
    sample_rate: str
    use: str


def record_fields(r: Record) -> RecordFields:
    return RecordFields(
        r.request_id, r.edge, r.ts, r.upstream_of, r.method, r.status, r.cache, r.tier,
        r.bytes, r.origin_bytes, r.content_id, r.creator, r.manifest, r.sample_rate, r.use,
    )  # fmt: skip


def match_canonical_record(data: bytes, pos: int = 0) -> re.Match[bytes] | None:
    """Match the exact canonical bytes of a record at ``data[pos:]`` (groups: CANONICAL_GROUPS).

    A match is a valid record iff ``is_valid_canonical_fields`` holds for its fields; no match
    says nothing (valid records with escaped request ids or counts >= 10**15 never match).
    """
    return _CANONICAL_RECORD_BYTES.match(data, pos)
