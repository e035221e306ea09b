"""Batches: records sealed under one RFC 9162 Merkle root and one Ed25519 signature.

Header fields (the Batch contract): ``edge``, ``key_id`` (8 hex, the C2SP key id of the edge's
key), ``seq`` (0, 1, 2, ... per edge), ``prev`` (hex SHA-256 of the previous header's canonical
bytes; 64 zeros for seq 0), ``count``, ``root`` (hex Merkle root of the records' leaf hashes, in
batch order), ``first_ts`` and ``last_ts`` (the earliest and latest record ``ts``; records need
not be sorted, since concurrent requests complete out of order).

The signature is Ed25519 over ``b"cachet batch header v1\\n" || canonical header bytes``: the
prefix separates these signatures from every other use of an edge key. The signing key's name
must equal ``edge``. The global log's leaf for a batch is the RFC 9162 leaf hash of the canonical
bytes of ``{"header": ..., "signature": <base64>}`` (``batch_log_leaf_hash``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import repeat

import msgspec
from msgspec.structs import astuple

from provenance import fastrecords
from provenance.canonical_json import MAX_SAFE_INTEGER, canonicalize, parse
from provenance.errors import ChainError, FormatError, RootMismatchError
from provenance.keys import SIGNATURE_SIZE, KeyRing, SigningKey
from provenance.merkle import leaf_hash, leaf_hashes, root_from_leaf_hashes
from provenance.records import (
    CANONICAL_RECORD_PATTERN,
    Record,
    RecordFields,
    is_name,
    is_timestamp,
    record_fields,
    record_from_obj,
    record_to_canonical_bytes,
)

BATCH_SIGNATURE_PREFIX = b"cachet batch header v1\n"
ZERO_HASH_HEX = "0" * 64  # prev of the first batch (seq 0) of an edge
MAX_BATCH_RECORDS = 100_000
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX8 = re.compile(r"[0-9a-f]{8}")
_SIGNATURE_TAIL = re.compile(rb'\],"signature":"([A-Za-z0-9+/=]{1,100})"\}')
_HEADER_FIELDS = ("edge", "key_id", "seq", "prev", "count", "root", "first_ts", "last_ts")


@dataclass(frozen=True, slots=True)
class BatchHeader:
    edge: str
    key_id: str
    seq: int
    prev: str
    count: int
    root: str
    first_ts: str
    last_ts: str

    def __post_init__(self) -> None:
        try:
            _validate_header(self)
        except FormatError as exc:
            raise ValueError(str(exc)) from None


def _validate_header(h: BatchHeader) -> None:
    if not is_name(h.edge):
        raise FormatError("batch header 'edge' is not an edge id")
    if not isinstance(h.key_id, str) or not _HEX8.fullmatch(h.key_id):
        raise FormatError("batch header 'key_id' must be 8 lowercase hex digits")
    if type(h.seq) is not int or not 0 <= h.seq <= MAX_SAFE_INTEGER:
        raise FormatError("batch header 'seq' must be an integer >= 0")
    for name in ("prev", "root"):
        if not isinstance(getattr(h, name), str) or not _HEX64.fullmatch(getattr(h, name)):
            raise FormatError(f"batch header {name!r} must be 64 lowercase hex digits")
    if type(h.count) is not int or not 1 <= h.count <= MAX_BATCH_RECORDS:
        raise FormatError(f"batch header 'count' must be in 1..{MAX_BATCH_RECORDS}")
    if not is_timestamp(h.first_ts) or not is_timestamp(h.last_ts):
        raise FormatError("batch header 'first_ts'/'last_ts' must be RFC 3339 UTC ms")
    if h.first_ts > h.last_ts:
        raise FormatError("batch header 'first_ts' is after 'last_ts'")


@dataclass(frozen=True)
class SealedBatch:
    header: BatchHeader
    signature: bytes
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class ChainHead:
    """What a verifier remembers of an edge's chain: its last accepted seq and header hash."""

    edge: str
    seq: int
    header_hash: str


def header_to_obj(header: BatchHeader) -> dict[str, object]:
    return asdict(header)


def header_from_obj(obj: object) -> BatchHeader:
    """A BatchHeader from a parsed JSON value; FormatError naming the bad field."""
    if not isinstance(obj, dict) or set(obj) != set(_HEADER_FIELDS):
        raise FormatError(
            f"batch header must be an object with exactly {', '.join(_HEADER_FIELDS)}"
        )
    try:
        return BatchHeader(**obj)
    except ValueError as exc:
        raise FormatError(str(exc)) from None


def header_canonical_bytes(header: BatchHeader) -> bytes:
    return canonicalize(header_to_obj(header))


def header_hash(header: BatchHeader) -> str:
    """Hex SHA-256 of the header's canonical bytes: the next header's ``prev``."""
    return hashlib.sha256(header_canonical_bytes(header)).hexdigest()


def chain_head(header: BatchHeader) -> ChainHead:
    return ChainHead(header.edge, header.seq, header_hash(header))


def _signed_message(header: BatchHeader) -> bytes:
    return BATCH_SIGNATURE_PREFIX + header_canonical_bytes(header)


def seal_header(
    root: bytes,
    count: int,
    first_ts: str,
    last_ts: str,
    edge: str,
    seq: int,
    prev: str,
    signing_key: SigningKey,
) -> tuple[BatchHeader, bytes]:
    """Build and sign a header over the Merkle root of ``count`` records' leaf hashes
    (``root_from_leaf_hashes``; the sealer reading its spool computes it from the hashes laid
    end to end, ``provenance.merkle.root_from_leaf_blob``). Misuse raises ValueError."""
    if signing_key.name != edge:
        raise ValueError("the signing key's name must be the edge id")
    header = BatchHeader(
        edge=edge,
        key_id=signing_key.key_id.hex(),
        seq=seq,
        prev=prev,
        count=count,
        root=root.hex(),
        first_ts=first_ts,
        last_ts=last_ts,
    )
    return header, signing_key.sign(_signed_message(header))


def seal_batch(
    records: Sequence[Record], edge: str, seq: int, prev: str, signing_key: SigningKey
) -> SealedBatch:
    """Seal records (in this order) into a signed batch. Misuse raises ValueError."""
    if not records:
        raise ValueError("a batch holds at least one record")
    if any(record.edge != edge for record in records):
        raise ValueError("every record of a batch must come from the batch's edge")
    encode = record_to_canonical_bytes
    leaves = leaf_hashes([encode(record) for record in records])
    stamps = [record.ts for record in records]
    header, signature = seal_header(
        root_from_leaf_hashes(leaves), len(leaves), min(stamps), max(stamps), edge, seq, prev,
        signing_key,
    )  # fmt: skip
    return SealedBatch(header, signature, tuple(records))


def verify_header_signature(header: BatchHeader, signature: bytes, keyring: KeyRing) -> None:
    """Return None or raise UnknownKeyError / SignatureError."""
    keyring.verify(header.edge, bytes.fromhex(header.key_id), _signed_message(header), signature)


def verify_batch(sealed: SealedBatch, keyring: KeyRing) -> None:
    """Check key, signature, count, records' edge, root and timestamp span; raise if wrong."""
    records = sealed.records
    verify_batch_leaves(
        sealed.header,
        sealed.signature,
        leaf_hashes([record_to_canonical_bytes(record) for record in records]),
        [record.edge for record in records],
        [record.ts for record in records],
        keyring,
    )


def verify_batch_leaves(
    header: BatchHeader,
    signature: bytes,
    leaf_hashes: Sequence[bytes],
    edges: Sequence[str],
    stamps: Sequence[str],
    keyring: KeyRing,
) -> None:
    """``verify_batch`` over the records' leaf hashes, edges and ``ts`` (batch order), so a
    caller holding the records' canonical bytes never re-encodes them; raise if wrong."""
    if not len(edges) == len(stamps) == len(leaf_hashes):
        raise ValueError("verify_batch_leaves() needs one edge and one ts per leaf hash")
    verify_header_signature(header, signature, keyring)
    if len(leaf_hashes) != header.count:
        raise RootMismatchError(
            f"batch holds {len(leaf_hashes)} records, header says {header.count}"
        )
    if any(edge != header.edge for edge in edges):
        raise RootMismatchError("batch holds a record of another edge")
    if root_from_leaf_hashes(leaf_hashes).hex() != header.root:
        raise RootMismatchError("batch records do not hash to the header's root")
    if min(stamps) != header.first_ts or max(stamps) != header.last_ts:
        raise RootMismatchError("batch first_ts/last_ts differ from its records' timestamps")


def verify_chain(head: ChainHead | None, header: BatchHeader) -> None:
    """Check that ``header`` directly follows ``head`` (None: the edge's first batch)."""
    if head is None:
        if header.seq != 0 or header.prev != ZERO_HASH_HEX:
            raise ChainError(f"edge {header.edge}: first batch must have seq 0 and prev of zeros")
        return
    if head.edge != header.edge:
        raise ValueError("verify_chain() given the chain head of another edge")
    if header.seq > head.seq + 1:
        raise ChainError(f"edge {header.edge}: gap, seq {header.seq} after {head.seq}")
    if header.seq <= head.seq:
        raise ChainError(
            f"edge {header.edge}: seq {header.seq} replayed or forked (head {head.seq})"
        )
    if header.prev != head.header_hash:
        raise ChainError(f"edge {header.edge}: fork, seq {header.seq} does not link to head")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64_signature(value: object) -> bytes:
    try:
        raw = (
            base64.b64decode(str(value).encode("ascii"), validate=True)
            if isinstance(value, str)
            else b""
        )
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != SIGNATURE_SIZE:
        raise FormatError("batch 'signature' must be base64 of a 64-byte Ed25519 signature")
    return raw


def signed_header_to_obj(header: BatchHeader, signature: bytes) -> dict[str, object]:
    return {"header": header_to_obj(header), "signature": _b64(signature)}


def signed_header_from_obj(obj: object) -> tuple[BatchHeader, bytes]:
    if not isinstance(obj, dict) or set(obj) != {"header", "signature"}:
        raise FormatError("signed batch header must be an object with header and signature")
    return header_from_obj(obj["header"]), _unb64_signature(obj["signature"])


def batch_log_leaf_hash(header: BatchHeader, signature: bytes) -> bytes:
    """The global log's leaf hash for a batch (RFC 9162 §2.1.1 over the signed header)."""
    return leaf_hash(canonicalize(signed_header_to_obj(header, signature)))


def format_sealed_batch(sealed: SealedBatch) -> bytes:
    """Canonical JSON ``{"header": ..., "records": [...], "signature": ...}``."""
    records = b",".join(record_to_canonical_bytes(record) for record in sealed.records)
    header = header_canonical_bytes(sealed.header)
    signature = _b64(sealed.signature).encode("ascii")
    return (
        b'{"header":' + header + b',"records":[' + records + b'],"signature":"' + signature + b'"}'
    )


def parse_sealed_batch(data: bytes) -> SealedBatch:
    """Parse (not verify) a sealed batch; FormatError on malformed input."""
    obj = parse(data)
    if not isinstance(obj, dict) or set(obj) != {"header", "records", "signature"}:
        raise FormatError("sealed batch must be an object with header, records and signature")
    header, signature = signed_header_from_obj(
        {"header": obj["header"], "signature": obj["signature"]}
    )
    items = obj["records"]
    if not isinstance(items, list) or len(items) > MAX_BATCH_RECORDS:
        raise FormatError(f"sealed batch 'records' must be a list of at most {MAX_BATCH_RECORDS}")
    records: list[Record] = []
    for index, item in enumerate(items):
        try:
            records.append(record_from_obj(item))
        except FormatError as exc:
            raise FormatError(f"record {index}: {exc}") from None
    return SealedBatch(header, signature, tuple(records))


# -- the coordinator's fast path: a canonical batch read without building Records ------------


@dataclass(frozen=True, slots=True)
class CanonicalBatch:
    """A sealed batch reduced to what the coordinator verifies and stores."""

    header: BatchHeader
    signature: bytes
    records: tuple[RecordFields, ...]
    leaf_hashes: tuple[bytes, ...]  # RFC 9162 leaf hash of each record's canonical bytes
    records_json: str  # the records' canonical bytes as one JSON array


def canonical_batch_of(sealed: SealedBatch) -> CanonicalBatch:
    """The CanonicalBatch of a batch parsed the generic way (records re-encoded)."""
    encoded = [record_to_canonical_bytes(record) for record in sealed.records]
    return CanonicalBatch(
        sealed.header,
        sealed.signature,
        tuple(record_fields(record) for record in sealed.records),
        tuple(leaf_hashes(encoded)),
        "[" + ",".join(data.decode() for data in encoded) + "]",
    )


def parse_canonical_batch(data: bytes) -> CanonicalBatch:
    """Parse (not verify) a sealed batch; FormatError on malformed input. The result equals
    ``canonical_batch_of(parse_sealed_batch(data))``; the canonical form an edge sends takes
    ``parse_canonical_batch_fast`` (property-tested to agree), anything else the generic path."""
    fast = parse_canonical_batch_fast(data)
    return fast if fast is not None else canonical_batch_of(parse_sealed_batch(data))


def parse_canonical_batch_fast(data: bytes) -> CanonicalBatch | None:
    """The batch if ``data`` is exactly ``format_sealed_batch``'s layout and every record
    matches ``match_canonical_record``; None for anything else, valid or not (never raises
    FormatError: the generic parser decides those)."""
    if not data.startswith(b'{"header":{'):
        return None
    split = data.find(b'},"records":[')
    header = _canonical_header(data[10 : split + 1]) if split > 0 else None
    if header is None:
        return None
    # The signature's base64 holds no "]", so a valid tail starts at the last '],"signature":"'.
    end = data.rfind(b'],"signature":"')
    tail = _SIGNATURE_TAIL.fullmatch(data, end) if end > split + 13 else None
    if tail is None:
        return None
    records = _canonical_records(data, split + 12, end + 1)
    if records is None:
        return None
    try:
        signature = _unb64_signature(tail[1].decode("ascii"))
    except FormatError:
        return None
    # ASCII (all the array regex admits), decoded from a view: a bytes slice first would be one
    # more array-sized allocation, which glibc maps and unmaps afresh each batch (page faults).
    records_json = str(memoryview(data)[split + 12 : end + 1], "ascii")
    return CanonicalBatch(header, signature, *records, records_json)


def _canonical_header(data: bytes) -> BatchHeader | None:
    try:
        header = header_from_obj(parse(data))
    except FormatError:
        return None
    return header if header_canonical_bytes(header) == data else None


# The records array as one match of canonical records (non-capturing: the fields come from
# msgspec, and sre is faster without groups). The repetition is possessive: a record's match is
# unique where it starts, so nothing is lost, and sre keeps no backtracking state per record.
_RECORD_NO_GROUPS = re.sub(r"(?<!\\)\((?!\?)", "(?:", CANONICAL_RECORD_PATTERN)
_CANONICAL_ARRAY = re.compile(
    (r"\[(?:" + _RECORD_NO_GROUPS + r",)*+" + _RECORD_NO_GROUPS + r"\]").encode("ascii")
)
# Every record of a matched array starts with this and no field it admits holds a '"', so a
# comma and this occur in a matched batch exactly between two records (the header and the
# signature hold no '{' after the header's own). RFC 9162 §2.1.1: a leaf hash is over 0x00 and
# the record's bytes, here as received.
_RECORD_START = b'{"bytes":'
_RECORD_SEPARATOR = b"," + _RECORD_START
_LEAF_PREFIX = b"\x00" + _RECORD_START


class _CanonicalRecord(msgspec.Struct, gc=False):
    """A record's stored fields, in RecordFields order (``astuple`` is then a RecordFields).
    Types only: the array regex has validated every value (no msgspec constraints, which cost
    more than the regex), and ``v``, ``trace_id`` and ``cache_key_hash`` are skipped."""

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


if _CanonicalRecord.__struct_fields__ != RecordFields._fields:  # astuple below relies on it
    raise ImportError("_CanonicalRecord's fields must be RecordFields', in order")
_decode_records = msgspec.json.Decoder(list[_CanonicalRecord]).decode


_COMMA = ord(",")
_FIELDS_AND_LEAVES = fastrecords.WANT_FIELDS | fastrecords.WANT_LEAVES


def _canonical_records(
    data: bytes, start: int, end: int
) -> tuple[tuple[RecordFields, ...], tuple[bytes, ...]] | None:
    """(fields, leaf hashes) of the records array ``data[start:end]``, or None unless every
    record is canonical and valid. ``provenance/_fastrecords.c`` when it is built (one pass
    that checks and makes the fields), else the regular expression and msgspec."""
    scan = fastrecords.scan_records
    if scan is None:
        return _canonical_records_by_regex(data, start, end)
    if end - start < 2 or data[start] != 0x5B or data[end - 1] != 0x5D:  # [ ... ]
        return None
    scanned = scan(data, start + 1, end - 1, _COMMA, None, _FIELDS_AND_LEAVES, RecordFields)
    if scanned is None:
        return None
    _, _, seconds, fields, leaves = scanned
    assert fields is not None and leaves is not None
    if len(fields) > MAX_BATCH_RECORDS:
        return None
    if not all(is_timestamp(second.decode() + ".000Z") for second in set(seconds)):
        return None
    return tuple(fields), tuple(leaves)


def _canonical_records_by_regex(
    data: bytes, start: int, end: int
) -> tuple[tuple[RecordFields, ...], tuple[bytes, ...]] | None:
    """``_canonical_records`` without the compiled module (the reference it is tested
    against)."""
    if _CANONICAL_ARRAY.fullmatch(data, start, end) is None:
        return None
    # Split the whole body (no copy of the array), then cut the header and the tail off.
    parts = data.split(_RECORD_SEPARATOR)
    if len(parts) > MAX_BATCH_RECORDS:
        return None
    parts[0] = parts[0][start + 1 + len(_RECORD_START) :]
    parts[-1] = parts[-1][: end - 1 - len(data)]
    try:
        decoded = _decode_records(memoryview(data)[start:end])
    except msgspec.MsgspecError:  # not expected after the regex: the generic path decides
        return None
    if len(decoded) != len(parts):
        return None
    # What the regex leaves over (records.is_valid_canonical_fields), once per batch.
    if [
        r for r in decoded if r.manifest is not None and (r.creator is None or r.content_id is None)
    ]:
        return None
    if not all(is_timestamp(second + ".000Z") for second in {r.ts[:19] for r in decoded}):
        return None
    sha256, prefix, new = hashlib.sha256, _LEAF_PREFIX, tuple.__new__
    leaves = tuple([sha256(prefix + part).digest() for part in parts])
    fields = tuple(map(new, repeat(RecordFields), map(astuple, decoded)))
    return fields, leaves


def stored_record_fields(records_json: str | bytes) -> tuple[RecordFields, ...]:
    """The fields of every record of a records JSON array as ingest stored it
    (``CanonicalBatch.records_json``), in order; FormatError if it is not a valid one.

    The coordinator keeps a batch's records once, as this array: billing, receipts and the
    admin read their fields from it. The canonical layout takes the compiled scanner (fields
    only, no leaf hashes: they were checked at ingest), anything else the generic parser."""
    data = records_json.encode() if isinstance(records_json, str) else records_json
    scan = fastrecords.scan_records
    if scan is not None and len(data) > 2 and data[0] == 0x5B and data[-1] == 0x5D:
        scanned = scan(data, 1, len(data) - 1, _COMMA, None, fastrecords.WANT_FIELDS, RecordFields)
        if scanned is not None and scanned[3] is not None:
            return tuple(scanned[3])
    elif scan is None:
        found = _canonical_records_by_regex(data, 0, len(data))
        if found is not None:
            return found[0]
    items = parse(data)
    if not isinstance(items, list):
        raise FormatError("stored records are not a JSON array")
    return tuple(record_fields(record_from_obj(item)) for item in items)


def verify_canonical_batch(batch: CanonicalBatch, keyring: KeyRing) -> None:
    """``verify_batch`` for a CanonicalBatch (its leaf hashes, no re-encoding)."""
    records = batch.records
    verify_batch_leaves(
        batch.header,
        batch.signature,
        batch.leaf_hashes,
        [record.edge for record in records],
        [record.ts for record in records],
        keyring,
    )
