"""The disk tier's entry file: one file per cache key holding all of that key's variants.

Two layouts share the fixed header (all integers big-endian)::

    header   28 bytes  magic "CACHETDK" | version u16 | flags u16 | key_len u32 |
                       meta_len u32 | body_len u64 (all bodies together)

Version 1, whole-file digest (small entries: one read, one hash; the 1 KiB hit path)::

    key      key_len bytes, UTF-8
    meta     meta_len bytes, UTF-8 JSON: {"variants": [ {...one StoredResponse, body_len...}, ...]}
    bodies   body_len bytes: each variant's body in the order of "variants"
    digest   32 bytes: SHA-256 over everything before it (header, key, meta, bodies)

Version 2, chunked (bodies over LARGE_ENTRY_BYTES): verifiable while it streams, so a large
body is never read whole into memory and a byte range reads only the chunks it needs::

    key, meta   as in version 1 (each variant's meta also carries the body's SHA-256, so a hit
                can be attributed without reading the body)
    table       32 bytes per chunk: SHA-256 of each 2**flags-byte chunk of the bodies region
                (the bodies back to back; the last chunk may be shorter)
    digest      32 bytes: SHA-256 over header, key, meta and table
    bodies      body_len bytes

In version 2 ``flags`` is the chunk size's log2 (CHUNK_SHIFT, 1 MiB, in files this proxy
writes); in version 1 it is 0. The prefix (header to digest) is verified before any body byte
is used, then each chunk against its table entry as it is read: a torn or flipped chunk is
caught before its bytes leave, and the table binds every chunk to its place.

The fixed header plus the key is all ``DiskTier.open`` reads per file to rebuild its index: the
header alone gives the file's exact size, so a truncated or extended file is caught by a stat.
Every derived value of :class:`StoredResponse` is stored as computed at admission time, so a
decoded entry is equal to the stored one without re-running admission (and without knowing the
admission policy in force when it was stored).

Decoding anything that is not an intact entry file — truncated, extended, one bit flipped — raises
:class:`EntryFormatError` and nothing else. The digests are what guarantee it for bit flips; the
shape checks make sure no other exception escapes on the way to them.

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
VERSION = 1  # whole-file digest (and the index snapshot's version)
CHUNKED_VERSION = 2  # per-chunk digests
HEADER = struct.Struct(">8sHHIIQ")
HEADER_BYTES = HEADER.size  # 28
DIGEST_BYTES = 32  # SHA-256
MAX_KEY_BYTES = 64 * 1024
MAX_META_BYTES = 16 * 1024 * 1024
# 1 MiB chunks: a streaming client holds one chunk (two with read-ahead), so 20 clients of a
# large object cost ~40 MiB, well under issue 3's 100 MiB; hashing 1 MiB (~0.5 ms) dwarfs the
# hop to a worker thread that reads it; the table costs 32 bytes per MiB (128 KiB for 4 GiB);
# a Range reads at most two chunks it does not send. 64 KiB chunks would mean 16 times the
# thread hops and table; 8 MiB ones 160 MiB for 20 clients.
CHUNK_SHIFT = 20
MIN_CHUNK_SHIFT = 4  # 16 bytes: only tests write chunks this small
MAX_CHUNK_SHIFT = 26
LARGE_ENTRY_BYTES = 1 << CHUNK_SHIFT  # bodies over this are written chunked (version 2)
MAX_TABLE_BYTES = 64 * 1024 * 1024  # 2 Mi chunks: 2 TiB of bodies at 1 MiB


class EntryFormatError(FormatError):
    """An entry file that is not intact: torn, truncated, corrupted, or of another version."""


@dataclass(frozen=True, slots=True)
class EntryHeader:
    key_len: int
    meta_len: int
    body_len: int
    chunk_shift: int = 0  # 0: version 1 (whole-file digest); else version 2's chunk size log2

    @property
    def chunked(self) -> bool:
        return self.chunk_shift != 0

    @property
    def chunk_bytes(self) -> int:
        return 1 << self.chunk_shift if self.chunk_shift else 0

    @property
    def chunk_count(self) -> int:
        if not self.chunk_shift:
            return 0
        return -(-self.body_len // (1 << self.chunk_shift))

    @property
    def meta_end(self) -> int:
        """Bytes from the start of the file to the end of the metadata."""
        return HEADER_BYTES + self.key_len + self.meta_len

    @property
    def prefix_bytes(self) -> int:
        """Bytes from the start of the file to the first body byte."""
        if self.chunk_shift:
            return self.meta_end + DIGEST_BYTES * (self.chunk_count + 1)
        return self.meta_end

    @property
    def file_bytes(self) -> int:
        """The exact size an intact file with this header has."""
        if self.chunk_shift:
            return self.prefix_bytes + self.body_len
        return self.prefix_bytes + self.body_len + DIGEST_BYTES

    def chunk_span(self, index: int) -> tuple[int, int]:
        """Offset (within the bodies) and length of chunk ``index``."""
        size = 1 << self.chunk_shift
        start = index * size
        return start, min(size, self.body_len - start)


@dataclass(frozen=True, slots=True)
class EncodedEntry:
    chunks: tuple[bytes, ...]  # write these in order; bodies are the StoredResponses' own bytes
    file_bytes: int


def encode_entry(
    key: str, variants: tuple[StoredResponse, ...], *, chunk_shift: int | None = None
) -> EncodedEntry:
    """The pieces of the entry file for ``key`` holding ``variants`` (newest first): version 1,
    or version 2 with chunks of ``2**chunk_shift`` bytes (by default when the bodies pass
    LARGE_ENTRY_BYTES)."""
    if not variants:
        raise ValueError("an entry needs at least one variant")
    bodies = tuple(v.body for v in variants)
    body_len = sum(len(b) for b in bodies)
    if chunk_shift is None:
        chunk_shift = CHUNK_SHIFT if body_len > LARGE_ENTRY_BYTES else 0
    if not chunk_shift:
        metas = [_variant_meta(v, len(v.body)) for v in variants]
        head = entry_head(key, metas, body_len, 0)
        digest = digest_of((head, *bodies))
        return EncodedEntry((head, *bodies, digest), len(head) + body_len + DIGEST_BYTES)
    metas = [_variant_meta(v, len(v.body), hashlib.sha256(v.body).hexdigest()) for v in variants]
    head = entry_head(key, metas, body_len, chunk_shift)
    prefix = seal_prefix(head, chunk_digests(bodies, chunk_shift))
    return EncodedEntry((prefix, *bodies), len(prefix) + body_len)


def variant_meta(stored: StoredResponse, body_len: int, body_sha256: str | None) -> dict[str, Any]:
    """One variant's metadata, for a body known only by its length and hash (a chunked entry
    written from a file, whose ``stored.body`` is empty)."""
    return _variant_meta(stored, body_len, body_sha256)


def entry_head(key: str, metas: list[dict[str, Any]], body_len: int, chunk_shift: int) -> bytes:
    """Header, key and metadata: the start of an entry file (version 2 if ``chunk_shift``)."""
    key_bytes = key.encode("utf-8")
    if len(key_bytes) > MAX_KEY_BYTES:
        raise ValueError(f"key longer than {MAX_KEY_BYTES} bytes")
    if chunk_shift and not MIN_CHUNK_SHIFT <= chunk_shift <= MAX_CHUNK_SHIFT:
        raise ValueError(f"chunk shift {chunk_shift} out of range")
    meta = json.dumps({"variants": metas}, separators=(",", ":")).encode("utf-8")
    version = CHUNKED_VERSION if chunk_shift else VERSION
    header = HEADER.pack(MAGIC, version, chunk_shift, len(key_bytes), len(meta), body_len)
    return header + key_bytes + meta


def seal_prefix(head: bytes, digests: list[bytes]) -> bytes:
    """A version 2 prefix: ``entry_head``, the chunk table, and the digest over both."""
    table = b"".join(digests)
    return head + table + digest_of((head, table))


def chunk_digests(bodies: Iterable[bytes], chunk_shift: int) -> list[bytes]:
    """SHA-256 of each ``2**chunk_shift``-byte chunk of the bodies laid back to back."""
    size = 1 << chunk_shift
    digests: list[bytes] = []
    hasher = hashlib.sha256()
    filled = 0
    for body in bodies:
        view = memoryview(body)
        while view:
            take = min(size - filled, len(view))
            hasher.update(view[:take])
            view = view[take:]
            filled += take
            if filled == size:
                digests.append(hasher.digest())
                hasher = hashlib.sha256()
                filled = 0
    if filled:
        digests.append(hasher.digest())
    return digests


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
    if version == VERSION and flags == 0:
        chunk_shift = 0
    elif version == CHUNKED_VERSION and MIN_CHUNK_SHIFT <= flags <= MAX_CHUNK_SHIFT:
        chunk_shift = flags
    else:
        raise EntryFormatError(f"unsupported entry version {version} flags {flags}")
    if key_len > MAX_KEY_BYTES or meta_len > MAX_META_BYTES:
        raise EntryFormatError("key or metadata length out of range")
    header = EntryHeader(key_len, meta_len, body_len, chunk_shift)
    if chunk_shift and header.chunk_count * DIGEST_BYTES > MAX_TABLE_BYTES:
        raise EntryFormatError("chunk table too large")
    return header


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


def parse_body_hashes(header: EntryHeader, prefix: bytes) -> list[str | None]:
    """Each variant's body SHA-256 (hex) as a chunked entry records it (None in version 1)."""
    hashes: list[str | None] = []
    for meta in _parse_meta(header, prefix):
        value = meta.get("sha256")
        if value is not None and not (isinstance(value, str) and len(value) == 64):
            raise EntryFormatError("bad body sha256")
        hashes.append(value)
    return hashes


def verify_entry_digest(chunks: Iterable[bytes], digest: bytes) -> None:
    """Raise EntryFormatError unless ``digest`` is the SHA-256 of the file's other bytes."""
    if digest_of(chunks) != digest:
        raise EntryFormatError("checksum mismatch")


def verify_prefix(header: EntryHeader, prefix: bytes) -> tuple[bytes, ...]:
    """A version 2 prefix checked against its digest: the chunk table (one digest per chunk).
    Nothing of the metadata or table may be trusted before this."""
    if not header.chunked:
        raise EntryFormatError("not a chunked entry")
    if len(prefix) != header.prefix_bytes:
        raise EntryFormatError("truncated prefix")
    table_end = header.prefix_bytes - DIGEST_BYTES
    verify_entry_digest((prefix[:table_end],), prefix[table_end:])
    table = prefix[header.meta_end : table_end]
    return tuple(table[i : i + DIGEST_BYTES] for i in range(0, len(table), DIGEST_BYTES))


def verify_chunk(
    header: EntryHeader, table: tuple[bytes, ...], index: int, data: bytes | bytearray
) -> None:
    """Raise EntryFormatError unless ``data`` is chunk ``index`` as the table says."""
    if not 0 <= index < len(table):
        raise EntryFormatError("no such chunk")
    if len(data) != header.chunk_span(index)[1]:
        raise EntryFormatError("chunk is short")
    if hashlib.sha256(data).digest() != table[index]:
        raise EntryFormatError(f"chunk {index} checksum mismatch")


def verify_chunks(header: EntryHeader, table: tuple[bytes, ...], bodies: list[bytes]) -> None:
    """Every chunk of the bodies (read whole, back to back) against the table."""
    if chunk_digests(bodies, header.chunk_shift) != list(table):
        raise EntryFormatError("chunk checksum mismatch")


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


def build_bodiless_variants(header: EntryHeader, prefix: bytes) -> tuple[StoredResponse, ...]:
    """A verified chunked entry's StoredResponses without their bodies (``body`` is empty; the
    head and sizes are the stored ones): what streaming a large body from the file needs."""
    return build_variants(header, prefix, [b""] * len(_parse_meta(header, prefix)))


def decode_entry(data: bytes) -> tuple[str, tuple[StoredResponse, ...]]:
    """Key and variants of a whole entry file; EntryFormatError if it is not intact."""
    header = parse_header(data)
    if len(data) != header.file_bytes:
        raise EntryFormatError(f"file is {len(data)} bytes, header says {header.file_bytes}")
    prefix = data[: header.prefix_bytes]
    if header.chunked:
        table = verify_prefix(header, prefix)
        verify_chunks(header, table, [data[header.prefix_bytes :]])
    else:
        body_end = header.prefix_bytes + header.body_len
        verify_entry_digest((data[:body_end],), data[body_end:])
    lengths = parse_body_lengths(header, prefix)
    bodies: list[bytes] = []
    offset = header.prefix_bytes
    for length in lengths:
        bodies.append(data[offset : offset + length])
        offset += length
    return parse_key(header, prefix), build_variants(header, prefix, bodies)


# -- metadata -------------------------------------------------------------------------------------


def _variant_meta(
    stored: StoredResponse, body_len: int, body_sha256: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
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
        "body_len": body_len,
    }
    if body_sha256 is not None:
        meta["sha256"] = body_sha256
    return meta


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
    raw = prefix[HEADER_BYTES + header.key_len : header.meta_end]
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
