"""The disk tier's entry file: one file per cache key holding all of that key's variants.

Layout (all integers big-endian)::

    header   28 bytes  magic "CACHETDK" | version u16 | flags u16 (0) | key_len u32 |
                       meta_len u32 | body_len u64 (all bodies together)
    key      key_len bytes, UTF-8
    meta     meta_len bytes, UTF-8 JSON: {"variants": [ {...one StoredResponse, body_len...}, ...]}
    bodies   body_len bytes: each variant's body in the order of "variants"
    digest   32 bytes: SHA-256 over everything before it (header, key, meta, bodies)

The fixed header plus the key is all ``DiskTier.open`` reads per file to rebuild its index: the
header alone gives the file's exact size, so a truncated or extended file is caught by a stat.
Every derived value of :class:`StoredResponse` is stored as computed at admission time, so a
decoded entry is equal to the stored one without re-running admission (and without knowing the
admission policy in force when it was stored).

Decoding anything that is not an intact entry file — truncated, extended, one bit flipped — raises
:class:`EntryFormatError` and nothing else. The digest is what guarantees it for bit flips; the
shape checks make sure no other exception escapes on the way to the digest.

Pure: no I/O, no clock. Bodies are never concatenated: :func:`encode_entry` returns the pieces to
write in order, and the reader hands :func:`verify_entry_digest` the pieces it read.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from provenance.errors import FormatError
from proxy.cache.entry import StoredResponse
from proxy.http.cache_control import Directives
from proxy.http.fields import Headers

MAGIC = b"CACHETDK"
VERSION = 1
HEADER = struct.Struct(">8sHHIIQ")
HEADER_BYTES = HEADER.size  # 28
DIGEST_BYTES = 32  # SHA-256
MAX_KEY_BYTES = 64 * 1024
MAX_META_BYTES = 16 * 1024 * 1024


class EntryFormatError(FormatError):
    """An entry file that is not intact: torn, truncated, corrupted, or of another version."""


@dataclass(frozen=True, slots=True)
class EntryHeader:
    key_len: int
    meta_len: int
    body_len: int

    @property
    def prefix_bytes(self) -> int:
        """Bytes from the start of the file to the first body byte."""
        return HEADER_BYTES + self.key_len + self.meta_len

    @property
    def file_bytes(self) -> int:
        """The exact size an intact file with this header has."""
        return self.prefix_bytes + self.body_len + DIGEST_BYTES


@dataclass(frozen=True, slots=True)
class EncodedEntry:
    chunks: tuple[bytes, ...]  # write these in order; bodies are the StoredResponses' own bytes
    file_bytes: int


def encode_entry(key: str, variants: tuple[StoredResponse, ...]) -> EncodedEntry:
    """The pieces of the entry file for ``key`` holding ``variants`` (newest first)."""
    if not variants:
        raise ValueError("an entry needs at least one variant")
    key_bytes = key.encode("utf-8")
    if len(key_bytes) > MAX_KEY_BYTES:
        raise ValueError(f"key longer than {MAX_KEY_BYTES} bytes")
    meta = json.dumps(
        {"variants": [_variant_meta(v) for v in variants]}, separators=(",", ":")
    ).encode("utf-8")
    body_len = sum(len(v.body) for v in variants)
    header = HEADER.pack(MAGIC, VERSION, 0, len(key_bytes), len(meta), body_len)
    prefix = header + key_bytes + meta
    bodies = tuple(v.body for v in variants)
    digest = digest_of((prefix, *bodies))
    return EncodedEntry((prefix, *bodies, digest), len(prefix) + body_len + DIGEST_BYTES)


def digest_of(chunks: Iterable[bytes]) -> bytes:
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.digest()


def parse_header(data: bytes) -> EntryHeader:
    """The fixed header at the start of ``data`` (which may hold more)."""
    if len(data) < HEADER_BYTES:
        raise EntryFormatError("shorter than the entry header")
    magic, version, flags, key_len, meta_len, body_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EntryFormatError("not an entry file (bad magic)")
    if version != VERSION or flags != 0:
        raise EntryFormatError(f"unsupported entry version {version} flags {flags}")
    if key_len > MAX_KEY_BYTES or meta_len > MAX_META_BYTES:
        raise EntryFormatError("key or metadata length out of range")
    return EntryHeader(key_len, meta_len, body_len)


def parse_key(header: EntryHeader, prefix: bytes) -> str:
    """The key, from the first ``HEADER_BYTES + key_len`` (or more) bytes of the file."""
    end = HEADER_BYTES + header.key_len
    if len(prefix) < end:
        raise EntryFormatError("truncated key")
    try:
        return prefix[HEADER_BYTES:end].decode("utf-8")
    except UnicodeDecodeError as err:
        raise EntryFormatError("key is not UTF-8") from err


def parse_body_lengths(header: EntryHeader, prefix: bytes) -> list[int]:
    """Each variant's body length, from the file's prefix (header, key, metadata)."""
    return [meta["body_len"] for meta in _parse_meta(header, prefix)]


def verify_entry_digest(chunks: Iterable[bytes], digest: bytes) -> None:
    """Raise EntryFormatError unless ``digest`` is the SHA-256 of the file's other bytes."""
    if digest_of(chunks) != digest:
        raise EntryFormatError("checksum mismatch")


def build_variants(
    header: EntryHeader, prefix: bytes, bodies: list[bytes]
) -> tuple[StoredResponse, ...]:
    """The StoredResponses of a file whose digest was verified."""
    metas = _parse_meta(header, prefix)
    if len(bodies) != len(metas):
        raise EntryFormatError("body count differs from the metadata")
    try:
        return tuple(_variant(meta, body) for meta, body in zip(metas, bodies, strict=True))
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise EntryFormatError(f"bad variant metadata: {err}") from err


def decode_entry(data: bytes) -> tuple[str, tuple[StoredResponse, ...]]:
    """Key and variants of a whole entry file; EntryFormatError if it is not intact."""
    header = parse_header(data)
    if len(data) != header.file_bytes:
        raise EntryFormatError(f"file is {len(data)} bytes, header says {header.file_bytes}")
    body_end = header.prefix_bytes + header.body_len
    verify_entry_digest((data[:body_end],), data[body_end:])
    prefix = data[: header.prefix_bytes]
    lengths = parse_body_lengths(header, prefix)
    bodies: list[bytes] = []
    offset = header.prefix_bytes
    for length in lengths:
        bodies.append(data[offset : offset + length])
        offset += length
    return parse_key(header, prefix), build_variants(header, prefix, bodies)


# -- metadata -------------------------------------------------------------------------------------


def _variant_meta(stored: StoredResponse) -> dict[str, Any]:
    return {
        "status": stored.status,
        "reason": stored.reason,
        "headers": [[name, value] for name, value in stored.headers],
        "request_time": stored.request_time,
        "response_time": stored.response_time,
        "vary": [[name, value] for name, value in stored.vary],
        "directives": dict(stored.directives.values),
        "freshness_lifetime_s": stored.freshness_lifetime_s,
        "corrected_initial_age_s": stored.corrected_initial_age_s,
        "etag": stored.etag,
        "last_modified": stored.last_modified,
        "date_value": stored.date_value,
        "no_cache_fields": list(stored.no_cache_fields),
        "head_bytes": stored.head_bytes.decode("latin-1"),
        "size_bytes": stored.size_bytes,
        "stale_marked": stored.stale_marked,
        # Only for purges by content id after a restart (proxy.cache.tiers.disk_labels); a disk
        # hit checks the bytes against the manifests again rather than trusting this.
        "content_id": content_id_of(stored),
        "body_len": len(stored.body),
    }


def content_id_of(stored: StoredResponse) -> str | None:
    """The content id ``stored`` was attributed to (a verified claim, or a mismatched one that
    a purge by that id must still reach, as the memory index does), if any."""
    attribution = stored.attribution
    content_id = getattr(attribution, "content_id", None)
    return content_id if isinstance(content_id, str) else None


def parse_labels(header: EntryHeader, prefix: bytes) -> tuple[Headers, frozenset[str]]:
    """What purges index an entry by, from its prefix alone (no bodies): the variants' stored
    fields and the content ids they were attributed to. EntryFormatError if the metadata is
    not what ``encode_entry`` writes (the digest is not checked: that needs the bodies)."""
    fields: Headers = []
    content_ids: set[str] = set()
    try:
        for meta in _parse_meta(header, prefix):
            fields += [(_str(name), _str(value)) for name, value in meta["headers"]]
            content_id = meta.get("content_id")  # absent in files written before it existed
            if content_id is not None:
                content_ids.add(_str(content_id))
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise EntryFormatError(f"bad variant metadata: {err}") from err
    return fields, frozenset(content_ids)


def _parse_meta(header: EntryHeader, prefix: bytes) -> list[dict[str, Any]]:
    if len(prefix) < header.prefix_bytes:
        raise EntryFormatError("truncated metadata")
    raw = prefix[HEADER_BYTES + header.key_len : header.prefix_bytes]
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise EntryFormatError("metadata is not JSON") from err
    variants = document.get("variants") if isinstance(document, dict) else None
    if not isinstance(variants, list) or not variants:
        raise EntryFormatError("metadata has no variants")
    total = 0
    for meta in variants:
        length = meta.get("body_len") if isinstance(meta, dict) else None
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise EntryFormatError("bad body_len")
        total += length
    if total != header.body_len:
        raise EntryFormatError("body lengths differ from the header")
    return variants


def _variant(meta: dict[str, Any], body: bytes) -> StoredResponse:
    return StoredResponse(
        status=_int(meta["status"]),
        reason=_str(meta["reason"]),
        headers=[(_str(n), _str(v)) for n, v in meta["headers"]],
        body=body,
        request_time=_float(meta["request_time"]),
        response_time=_float(meta["response_time"]),
        vary=tuple((_str(n), None if v is None else _str(v)) for n, v in meta["vary"]),
        directives=Directives(
            {_str(n): None if v is None else _str(v) for n, v in meta["directives"].items()}
        ),
        freshness_lifetime_s=_float(meta["freshness_lifetime_s"]),
        corrected_initial_age_s=_float(meta["corrected_initial_age_s"]),
        etag=None if meta["etag"] is None else _str(meta["etag"]),
        last_modified=None if meta["last_modified"] is None else _float(meta["last_modified"]),
        date_value=_float(meta["date_value"]),
        no_cache_fields=tuple(_str(n) for n in meta["no_cache_fields"]),
        head_bytes=_str(meta["head_bytes"]).encode("latin-1"),
        size_bytes=_int(meta["size_bytes"]),
        stale_marked=meta["stale_marked"] is True,
    )


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


# -- index snapshot -------------------------------------------------------------------------------
#
#   magic "CACHETIX" | version u16 | json_len u64 |
#   JSON {"entries": [[key, name, file_bytes, inode]...]} (least recently used first) |
#   SHA-256 over everything before it
#
# The inode lets the next owner notice a file another process replaced after the snapshot (a
# shared folder): such a file is read again rather than trusted. Snapshots written before it
# existed have three fields per entry; their inode reads as 0, "unknown".

SNAPSHOT_MAGIC = b"CACHETIX"
SNAPSHOT_HEADER = struct.Struct(">8sHQ")
SnapshotEntry = tuple[str, str, int, int]  # key, file name, file bytes, inode (0: unknown)


def encode_snapshot(entries: Iterable[SnapshotEntry]) -> bytes:
    """The index snapshot file for ``entries`` in LRU order (least recently used first)."""
    body = json.dumps({"entries": [list(e) for e in entries]}, separators=(",", ":")).encode()
    head = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, VERSION, len(body))
    return head + body + digest_of((head, body))


def decode_snapshot(data: bytes) -> list[SnapshotEntry]:
    """The entries of an intact snapshot file; EntryFormatError otherwise."""
    if len(data) < SNAPSHOT_HEADER.size + DIGEST_BYTES:
        raise EntryFormatError("snapshot too short")
    magic, version, body_len = SNAPSHOT_HEADER.unpack_from(data)
    if magic != SNAPSHOT_MAGIC or version != VERSION:
        raise EntryFormatError("not an index snapshot of this version")
    if len(data) != SNAPSHOT_HEADER.size + body_len + DIGEST_BYTES:
        raise EntryFormatError("snapshot size differs from its header")
    verify_entry_digest((data[:-DIGEST_BYTES],), data[-DIGEST_BYTES:])
    try:
        document = json.loads(data[SNAPSHOT_HEADER.size : -DIGEST_BYTES].decode("utf-8"))
        return [_snapshot_entry(entry) for entry in document["entries"]]
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, RecursionError) as err:
        raise EntryFormatError(f"bad snapshot: {err}") from err


def _snapshot_entry(entry: Any) -> SnapshotEntry:
    if not isinstance(entry, list) or len(entry) not in (3, 4):
        raise TypeError("a snapshot entry has 3 or 4 fields")
    inode = _int(entry[3]) if len(entry) == 4 else 0
    return _str(entry[0]), _str(entry[1]), _int(entry[2]), inode
